"""ParaDrop's own chute shapes (tests/fixtures/paradrop-chutes): the legacy single-service form converted to
service 'main', the multi-service keys of ParaDrop's chute schema, and the clear refusals of what this node
does not give (python2, legacy net objects, unknown keys)."""
import io
import shutil
import tarfile
from pathlib import Path

import pytest

from pdserver.chutes.source import thd_unpack_project
from pdserver.chutes.spec import DhcpSpec, SpecError, build, convert_legacy
from pdtools.project import ProjectError, check_project, read_description

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "paradrop-chutes"


def fixture(name):
    return read_description(FIXTURES / name)


def refused(description):
    with pytest.raises(SpecError) as info:
        build(description)
    return info.value


def test_the_legacy_dockerfile_hello_world_is_one_normal_service_built_from_the_root():
    spec = check_project(FIXTURES / "legacy-hello-world")
    [main] = spec.services
    assert (main.name, main.type, main.source, main.dockerfile, main.image) == ("main", "normal", ".", "Dockerfile",
                                                                              None)
    assert spec.version == "0.1.0" and spec.description.startswith("The smallest Dockerfile chute")
    assert (spec.web_service, spec.web_port) == ("main", 80)


def test_without_its_dockerfile_the_legacy_project_names_the_missing_file(tmp_path):
    project = shutil.copytree(FIXTURES / "legacy-hello-world", tmp_path / "p")
    (project / "Dockerfile").unlink()
    with pytest.raises(ProjectError) as info:
        check_project(project)
    assert info.value.field == "services.main.dockerfile" and "Dockerfile is missing" in info.value.message


def test_an_upload_without_the_dockerfile_is_refused_naming_it_and_leaves_nothing(tmp_path):
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(FIXTURES / "legacy-hello-world" / "paradrop.yaml", "paradrop.yaml")
    archive.seek(0)
    with pytest.raises(SpecError) as info:
        thd_unpack_project(archive, tmp_path / "upload", 10 ** 6)
    assert info.value.field == "services.main.dockerfile" and info.value.status == 400
    assert not (tmp_path / "upload").exists()


def test_summary_is_the_description_when_there_is_none():
    description = {k: v for k, v in fixture("legacy-hello-world").items() if k != "description"}
    assert build(description).description == "A web page saying hello"


def test_legacy_environment_port_bindings_and_dns_become_the_service_s():
    spec = build(fixture("legacy-light-env-ports"))
    main = spec.service("main")
    assert (main.type, main.image, main.command) == ("light", "python3", "python3 -m http.server 5000")
    assert dict(main.environment) == {"GREETING": "hello", "RETRIES": "3", "VERBOSE": "true"}
    assert {(b.external, b.internal, b.protocol) for b in main.port_bindings} == {(8080, 5000, "tcp"),
                                                                                (5353, 53, "udp")}
    assert main.dns == ("8.8.8.8", "1.1.1.1")
    assert spec.description == "Serves its folder" and spec.web_port == 5000


@pytest.mark.parametrize("bindings", [{"80/tcp": 8080}, {"80": 8080}, {80: "8080"}])
def test_both_ways_paradrop_wrote_port_bindings_are_accepted(bindings):
    description = {"name": "x", "version": 1, "config": {"host_config": {"port_bindings": bindings}}}
    [binding] = build(description).service("main").port_bindings
    assert (binding.external, binding.internal, binding.protocol) == (8080, 80, "tcp")


def test_the_conversion_is_the_multi_service_form():
    assert convert_legacy(fixture("legacy-light-env-ports"))["services"]["main"]["requests"] == {
        "port-bindings": [{"internal": 5000, "external": 8080, "protocol": "tcp"},
                          {"internal": 53, "external": 5353, "protocol": "udp"}]}
    assert "services" in convert_legacy({"name": "x", "version": 1})


def test_the_multi_service_form_takes_every_key_of_paradrop_s_schema():
    spec = check_project(FIXTURES / "multi-service")
    light, db = spec.service("light"), spec.service("db")
    assert spec.version == "1.5"
    assert (light.source, light.command, light.dns, light.as_root) == (
        "web", ("python3", "-m", "http.server", "8000"), ("9.9.9.9",), True)
    assert dict(light.environment) == {"DEBUG": "false", "WORKERS": "4", "RATIO": "0.5", "NAME": "light"}
    [wlan0] = db.interfaces
    assert db.command == "sleep 3600"
    assert (wlan0.name, wlan0.type, wlan0.dhcp, wlan0.dns, wlan0.hwmode) == (
        "wlan0", "wifi-ap", DhcpSpec(start=4, limit=250, leasetime="12h"), ("192.168.128.1",), "11g")
    assert wlan0.wireless_options() == {"ssid": "ParaDrop", "key": "password", "hidden": False, "isolate": True,
                                        "maxassoc": 100}


def test_python2_and_other_bases_we_do_not_build_name_the_field_and_our_bases():
    error = refused(fixture("legacy-python2"))
    assert error.field == "use" and error.status == 400
    assert all(base in error.message for base in ("'python2'", "python3", "node", "busybox"))
    multi = fixture("multi-service")
    multi["services"]["light"]["image"] = "node6"
    error = refused(multi)
    assert error.field == "services.light.image" and "'node6'" in error.message and "busybox" in error.message
    assert refused({"name": "x", "version": 1, "type": "light", "image": "ruby", "command": "c"}).field == "image"


def test_legacy_net_objects_become_the_interfaces_of_service_main():
    spec = check_project(FIXTURES / "legacy-net")
    [wlan0] = spec.service("main").interfaces
    assert (wlan0.name, wlan0.type, wlan0.dhcp) == ("wlan0", "wifi-ap", DhcpSpec(100, 50, "12h"))
    assert wlan0.wireless_options() == {"ssid": "ParaDrop"}
    converted = convert_legacy({"name": "x", "version": 1, "use": "busybox", "command": "c", "config": {"net": {
        "wifi": {"type": "wifi", "intfName": "wlan0", "ssid": "S", "key": "12345678", "ipv4_network": "10.9.0.0/24",
        "options": {"hidden": True, "maxassoc": 5}, "requests": {"hwmode": "11a"}, "dns": ["1.1.1.1"]},
        "tag": {"type": "vlan", "intfName": "lan1", "vlan_id": 42, "dhcp": {"leasetime": "1h", "start": 3}},
        "mon": {"type": "wifi", "mode": "monitor", "intfName": "mon0"}}}})
    assert converted["services"]["main"]["interfaces"] == {
        "wlan0": {"type": "wifi-ap", "wireless": {"ssid": "S", "key": "12345678", "hidden": True, "maxassoc": 5},
                  "requirements": {"hwmode": "11a", "ipv4_network": "10.9.0.0/24"}, "dns": ["1.1.1.1"]},
        "lan1": {"type": "vlan", "vlan-id": 42, "dhcp": {"leasetime": "1h", "start": 3}},
        "mon0": {"type": "monitor"}}


@pytest.mark.parametrize("net, field", [
    ({"wifi": {"type": "wifi", "mode": "sta", "intfName": "wlan0"}}, "config.net.wifi.type"),
    ({"wifi": {"type": "wan", "intfName": "eth1"}}, "config.net.wifi.type"),
    ({"wifi": {"type": "wifi"}}, "config.net.wifi.intfName"),
    ({"wifi": {"type": "wifi", "intfName": "wlan0", "colour": 1}}, "config.net.wifi.colour"),
    ({"wifi": {"type": "wifi", "intfName": "wlan0", "dhcp": {"relay": "10.0.0.1"}}}, "config.net.wifi.dhcp.relay"),
    ({"a": {"type": "vlan", "vlan_id": 2, "intfName": "v0"}, "b": {"type": "vlan", "vlan_id": 3, "intfName": "v0"}},
     "config.net.b.intfName"),
    ({"wifi": {"type": "wifi", "intfName": "wlan0", "l3bridge": "wan"}},
     "services.main.interfaces.wlan0.l3bridge"),
    ({"wifi": {"type": "wifi", "intfName": "wlan0", "ipv4_network": "10.0.0.0/8"}},
     "services.main.interfaces.wlan0.requirements.ipv4_network"),
    ({"wifi": {"type": "wifi", "intfName": "wlan0", "ipv4_network": "10.0.0.7/24"}},
     "services.main.interfaces.wlan0.requirements.ipv4_network"),
    ({"wifi": {"type": "wifi", "intfName": "eth0"}}, "services.main.interfaces.eth0"),
    ({"v": {"type": "vlan", "intfName": "v0"}}, "services.main.interfaces.v0.vlan-id"),
])
def test_legacy_net_objects_we_cannot_give_name_their_field(net, field):
    error = refused({"name": "x", "version": 1, "use": "busybox", "command": "c", "config": {"net": net}})
    assert (error.field, error.status) == (field, 400), error.message


@pytest.mark.parametrize("mutate, field", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d.update(summary=["a"]), "summary"),
    (lambda d: d.update(summary="s" * 5000), "summary"),
    (lambda d: d["config"].update(volumes={}), "config.volumes"),
    (lambda d: d["config"]["host_config"].update(privileged=True), "config.host_config.privileged"),
    (lambda d: d["config"]["web"].update(path="/"), "config.web.path"),
    (lambda d: d["config"].update(environment="A=b"), "services.main.environment"),
    (lambda d: d["config"]["host_config"].update(dns="8.8.8.8"), "services.main.dns"),
    (lambda d: d["config"]["host_config"].update(dns=["nameserver; rm"]), "services.main.dns[0]"),
    (lambda d: d["config"].update(host_config=[1]), "config.host_config"),
])
def test_unknown_or_bad_legacy_keys_are_refused_naming_the_field(mutate, field):
    description = fixture("legacy-light-env-ports")
    mutate(description)
    assert refused(description).field == field


@pytest.mark.parametrize("mutate, field", [
    (lambda s: s.update(ports=[80]), "services.light.ports"),
    (lambda s: s["requests"].update(privileged=True), "services.light.requests.privileged"),
    (lambda s: s["requests"].update({"as-root": "yes"}), "services.light.requests.as-root"),
    (lambda s: s.update(dns=["9.9.9.9"] * 9), "services.light.dns"),
])
def test_unknown_or_bad_multi_service_keys_are_refused_naming_the_field(mutate, field):
    description = fixture("multi-service")
    mutate(description["services"]["light"])
    assert refused(description).field == field
