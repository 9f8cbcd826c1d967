"""`pdserver doctor`'s checks without the machine: each check passes, warns or fails on what an injected probe
found, with the fix a person needs; a probe that raises becomes its check's detail; only failures make the exit
status non-zero; the file readers (kernel config, cgroups, state dir, port) on files and sockets the test made."""
import gzip
import io
import json
import os
import socket
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from twisted.internet import defer

from pdserver import settings as settings_module
from pdserver.execution.chute_plans import BASE_IMAGES
from pdserver.ops import doctor, machine
from pdserver.ops.doctor import FAIL, OK, SKIP, WARN, Check


# --- each check ---------------------------------------------------------------------------------------------


def test_settings_valid_or_naming_the_setting_and_where_to_correct_it():
    assert doctor.check_settings(None, None).status == OK
    bad = doctor.check_settings(settings_module.SettingsError("log_level", "must be one of ..."), Path("/etc/pd.yaml"))
    assert bad.status == FAIL and "log_level" in bad.detail
    assert "/etc/pd.yaml" in bad.fix and "PARADROP_LOG_LEVEL" in bad.fix
    unreadable = doctor.check_settings(settings_module.SettingsError("config", "cannot read"), Path("/etc/pd.yaml"))
    assert unreadable.status == FAIL and "YAML mapping" in unreadable.fix


def state(exists=True, writable=True, mode=0o700, open_secrets=None):
    return {"exists": exists, "writable": writable, "mode": mode, "open_secrets": open_secrets or {}}


def test_state_dir_writable_and_private_passes_and_a_missing_one_will_be_created():
    assert doctor.check_state_dir(state(), Path("/s")).status == OK
    created = doctor.check_state_dir(state(exists=False, mode=None), Path("/s"))
    assert created.status == OK and "will create" in created.detail


def test_a_world_writable_state_dir_or_open_secrets_are_warnings_with_the_chmod_that_fixes_them():
    world = doctor.check_state_dir(state(mode=0o777), Path("/s"))
    assert world.status == WARN and "world-writable" in world.detail and "chmod 700 /s" in world.fix
    secrets = doctor.check_state_dir(state(open_secrets={"node-secret": 0o644}), Path("/s"))
    assert secrets.status == WARN and "node-secret (0644)" in secrets.detail
    assert "chmod 600 /s/node-secret" in secrets.fix


def test_a_state_dir_the_node_cannot_write_fails():
    denied = doctor.check_state_dir(state(writable=False), Path("/s"))
    assert denied.status == FAIL and "not writable" in denied.detail and "--state-dir" in denied.fix
    broken = doctor.check_state_dir(NotADirectoryError("/s is not a directory"), Path("/s"))
    assert broken.status == FAIL and "not a directory" in broken.detail


def test_api_port_free_or_held_by_this_node_passes_else_fails_naming_the_holder():
    assert doctor.check_port({"free": True}, "127.0.0.1", 8080).status == OK
    ours = doctor.check_port({"free": False, "pid": 42, "process": "python3", "ours": True}, "127.0.0.1", 8080)
    assert ours.status == OK and "running node of this state dir" in ours.detail
    taken = doctor.check_port({"free": False, "pid": 42, "process": "nginx", "ours": False}, "127.0.0.1", 8080)
    assert taken.status == FAIL and "nginx (pid 42)" in taken.detail and "--port" in taken.fix
    refused = doctor.check_port({"free": False, "error": "Cannot assign requested address"}, "10.9.9.9", 8080)
    assert refused.status == FAIL and "Cannot assign" in refused.detail


def test_engine_version_and_api_or_the_way_to_start_it():
    up = doctor.check_engine({"version": "24.0.5", "api_version": "1.43"}, "unix:///var/run/docker.sock")
    assert up.status == OK and "24.0.5" in up.detail and "API 1.43" in up.detail
    down = doctor.check_engine(ConnectionRefusedError("refused"), "unix:///dead.sock")
    assert down.status == FAIL and "/dead.sock" in down.detail and "start the Docker engine" in down.fix
    denied = doctor.check_engine(OSError("('Connection aborted.', PermissionError(13, 'Permission denied'))"),
                                 "unix:///var/run/docker.sock")
    assert denied.status == FAIL and "docker group" in denied.fix


def test_missing_base_images_are_a_warning_naming_the_build_command_with_the_names_the_code_uses():
    found = {base: True for base in BASE_IMAGES}
    assert doctor.check_base_images(found, BASE_IMAGES).status == OK
    found["python3"] = False
    missing = doctor.check_base_images(found, BASE_IMAGES)
    assert missing.status == WARN and BASE_IMAGES["python3"] in missing.detail
    assert missing.fix.startswith("tools/build-base-images python3")
    assert doctor.check_base_images(None, BASE_IMAGES).status == SKIP


@pytest.mark.parametrize("name, missing_status", [("dnsmasq", FAIL), ("nft", FAIL), ("hostapd", WARN),
                                                  ("ip", WARN)])
def test_programs_found_with_their_version_or_the_package_that_brings_them(name, missing_status):
    found = doctor.check_program(name, {"path": f"/usr/sbin/{name}", "version": "2.90"})
    assert found.status == OK and "2.90" in found.detail
    missing = doctor.check_program(name, None)
    assert missing.status == missing_status and "not found on PATH" in missing.detail
    assert "apt-get install" in missing.fix
    broken = doctor.check_program(name, OSError("exec format error"))
    assert broken.status == missing_status and "exec format error" in broken.detail


def test_no_radio_is_a_warning_not_an_error():
    assert doctor.check_radios(["phy0", "phy1"]) == Check("radios", OK, "phy0, phy1")
    none = doctor.check_radios([])
    assert none.status == WARN and "wifi-ap" in none.detail and "driver: wired" in none.fix
    assert doctor.check_radios(RuntimeError("netlink")).status == WARN


def test_networkmanager_present_or_absent_both_pass_and_say_the_node_works_without_it():
    assert doctor.check_networkmanager((True, "")).status == OK
    absent = doctor.check_networkmanager((False, "no system bus at /run/dbus/system_bus_socket"))
    assert absent.status == OK and "works without it" in absent.detail and "/run/dbus" in absent.detail
    assert doctor.check_networkmanager(TimeoutError("bus")).status == OK


def test_cgroup_v2_or_v1_controllers_give_usage_stats_else_a_warning():
    assert doctor.check_cgroup({"v2_controllers": ["cpuset", "cpu", "memory"], "v1_controllers": []}).status == OK
    v1 = doctor.check_cgroup({"v2_controllers": None, "v1_controllers": ["cpu", "cpuacct", "memory"]})
    assert v1.status == OK and "v1" in v1.detail
    none = doctor.check_cgroup({"v2_controllers": ["cpu"], "v1_controllers": []})
    assert none.status == WARN and "unified_cgroup_hierarchy" in none.fix


def kernel(config=None, loaded=(), modules=None):
    return {"config": config, "loaded": list(loaded), "modules": modules, "release": "6.1.0-test"}


@pytest.mark.parametrize("feature", ["nftables", "veth", "bridge"])
def test_kernel_features_the_node_needs_fail_when_missing(feature):
    option = doctor.KERNEL_FEATURES[feature][0]
    module = doctor.KERNEL_FEATURES[feature][1]
    assert doctor.check_kernel_feature(feature, kernel({f"CONFIG_{option}": "y"})).detail == "built in"
    assert doctor.check_kernel_feature(feature, kernel({}, loaded=[module])).status == OK
    assert doctor.check_kernel_feature(feature, kernel({f"CONFIG_{option}": "m"}, modules=[module])).status == OK
    missing = doctor.check_kernel_feature(feature, kernel({}, modules=[]))
    assert missing.status == FAIL and f"CONFIG_{option}" in missing.fix
    uninstalled = doctor.check_kernel_feature(feature, kernel({f"CONFIG_{option}": "m"}, modules=[]))
    assert uninstalled.status == FAIL and "6.1.0-test" in uninstalled.fix
    unknown = doctor.check_kernel_feature(feature, kernel(None, modules=None))
    assert unknown.status == WARN and f"modprobe {module}" in unknown.fix


def test_no_8021q_is_only_a_warning_for_vlan_chutes():
    missing = doctor.check_kernel_feature("802.1Q", kernel({}, modules=[]))
    assert missing.status == WARN and "VLAN chutes" in missing.detail


def test_exit_status_is_non_zero_only_on_failures():
    assert doctor.exit_status([Check("a", OK, ""), Check("b", WARN, ""), Check("c", SKIP, "")]) == 0
    assert doctor.exit_status([Check("a", OK, ""), Check("b", FAIL, "")]) == 1


# --- all checks over injected probes -------------------------------------------------------------------------


class FakeProbes:
    """A machine where everything is present; a test breaks one part."""

    def __init__(self, **broken):
        self.broken = broken
        self.asked = {}

    def _answer(self, name, value):
        outcome = self.broken.get(name, value)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def settings(self, config_file, state_dir):
        return self._answer("settings", settings_module.Settings(state_dir=state_dir or Path("/s")))

    def state_dir(self, settings):
        self.asked["state_dir"] = settings.state_dir
        return self._answer("state_dir", state())

    def port(self, host, port, state_dir):
        self.asked["port"] = (host, port)
        return self._answer("port", {"free": True})

    def engine(self, refs):
        self.asked["images"] = refs
        return defer.succeed(self._answer("engine", {"version": "24.0.5", "api_version": "1.43",
                                                     "images": {ref: True for ref in refs}}))

    def program(self, name):
        return self._answer(name, {"path": f"/usr/sbin/{name}", "version": "1.0"})

    def kernel(self):
        return self._answer("kernel", kernel({"CONFIG_NF_TABLES": "y", "CONFIG_VETH": "y", "CONFIG_BRIDGE": "y",
                                              "CONFIG_VLAN_8021Q": "m"}, modules=["8021q"]))

    def cgroup(self):
        return self._answer("cgroup", {"v2_controllers": ["cpu", "memory"], "v1_controllers": []})

    def radios(self, netns):
        return self._answer("radios", ["phy0"])

    def networkmanager(self, address):
        return self._answer("networkmanager", (False, "no system bus"))


def collect(probes, config_file=None, state_dir=Path("/s")):
    result = []
    defer.ensureDeferred(doctor.collect(probes, config_file, state_dir)).addCallback(result.append)
    assert result, "fake probes answer at once"
    return {check.name: check for check in result[0]}, result[0]


def test_a_machine_with_everything_passes_every_check_and_asks_with_the_nodes_own_names():
    probes = FakeProbes()
    by_name, checks = collect(probes)
    assert [c.name for c in checks if c.status != OK] == []
    assert doctor.exit_status(checks) == 0
    assert probes.asked["images"] == list(BASE_IMAGES.values())
    assert probes.asked["state_dir"] == Path("/s") and probes.asked["port"] == ("127.0.0.1", 8080)
    assert {"dnsmasq", "hostapd", "nft", "ip", "radios", "NetworkManager", "API port", "state dir", "settings",
            "cgroup", "Docker engine", "base images", "kernel: nftables", "kernel: veth", "kernel: bridge",
            "kernel: 802.1Q"} == set(by_name)


def test_a_probe_that_raises_becomes_its_checks_detail_and_an_unreachable_engine_skips_the_images():
    by_name, checks = collect(FakeProbes(engine=ConnectionRefusedError("connection refused"),
                                         dnsmasq=None, radios=[]))
    assert by_name["Docker engine"].status == FAIL and "connection refused" in by_name["Docker engine"].detail
    assert by_name["base images"].status == SKIP
    assert by_name["dnsmasq"].status == FAIL and by_name["radios"].status == WARN
    assert doctor.exit_status(checks) == 1


def test_invalid_settings_fail_and_the_other_checks_still_run_on_the_given_state_dir():
    probes = FakeProbes(settings=settings_module.SettingsError("port", "must be between 0 and 65535"))
    by_name, checks = collect(probes, config_file=Path("/etc/pd.yaml"), state_dir=Path("/data/pd"))
    assert by_name["settings"].status == FAIL and "port" in by_name["settings"].detail
    assert probes.asked["state_dir"] == Path("/data/pd")
    assert len(checks) == 16


def test_json_and_table_name_each_check_its_result_and_fix():
    checks = [Check("dnsmasq", FAIL, "not found on PATH", "apt-get install dnsmasq"),
              Check("radios", WARN, "no radio [bold]in /sys[/bold]")]
    document = json.loads(json.dumps(doctor.as_json(checks)))
    assert document["ok"] is False and document["checks"][0] == {"name": "dnsmasq", "status": "fail",
                                                                 "detail": "not found on PATH",
                                                                 "fix": "apt-get install dnsmasq"}
    assert "cannot run" in document["summary"]
    out = io.StringIO()
    doctor.render_table(checks, Console(file=out, width=200, color_system=None))
    text = out.getvalue()
    assert "apt-get install dnsmasq" in text and "fail" in text and "The node cannot run here" in text
    assert "no radio [bold]in /sys[/bold]" in text
    assert "can run here; 1 warning" in doctor.summary(checks[1:])


# --- the readers of this machine, on files and sockets the test made -----------------------------------------


def test_kernel_reader_takes_the_config_loaded_and_installed_modules(tmp_path):
    release = os.uname().release
    (tmp_path / "proc").mkdir()
    with gzip.open(tmp_path / "proc" / "config.gz", "wt") as f:
        f.write("CONFIG_VETH=y\n# CONFIG_VLAN_8021Q is not set\nCONFIG_BRIDGE=m\n")
    (tmp_path / "module" / "bridge").mkdir(parents=True)
    tree = tmp_path / "lib" / release
    tree.mkdir(parents=True)
    (tree / "modules.dep").write_text("kernel/net/8021q/8021q.ko.xz: kernel/net/802/garp.ko.xz\n")
    (tree / "modules.builtin").write_text("kernel/net/netfilter/nf_tables.ko\n")
    found = machine.thd_kernel(tmp_path / "proc", tmp_path / "module", tmp_path / "lib", tmp_path / "boot")
    assert found["config"] == {"CONFIG_VETH": "y", "CONFIG_BRIDGE": "m"}
    assert found["loaded"] == ["bridge"] and set(found["modules"]) == {"8021q", "nf_tables"}
    assert {f: doctor.check_kernel_feature(f, found).status for f in doctor.KERNEL_FEATURES} == {
        "nftables": OK, "veth": OK, "bridge": OK, "802.1Q": OK}


def test_cgroup_reader_on_v1_and_v2_layouts(tmp_path):
    (tmp_path / "proc" / "self").mkdir(parents=True)
    (tmp_path / "proc" / "self" / "cgroup").write_text("4:memory:/\n3:cpu,cpuacct:/\n0::/\n")
    (tmp_path / "cg").mkdir()
    assert machine.thd_cgroup(tmp_path / "cg", tmp_path / "proc") == {
        "v2_controllers": None, "v1_controllers": ["memory", "cpu", "cpuacct"]}
    (tmp_path / "cg" / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    assert machine.thd_cgroup(tmp_path / "cg", tmp_path / "proc")["v2_controllers"] == [
        "cpuset", "cpu", "io", "memory", "pids"]


def test_state_dir_reader_finds_modes_and_open_secrets(tmp_path):
    missing = machine.thd_state_dir(tmp_path / "a" / "b", machine.MachineProbes.SECRETS)
    assert missing["exists"] is False and missing["writable"] is True
    (tmp_path / "node-secret").write_text("s")
    os.chmod(tmp_path / "node-secret", 0o644)
    os.chmod(tmp_path, 0o777)
    found = machine.thd_state_dir(tmp_path, machine.MachineProbes.SECRETS)
    assert found["mode"] == 0o777 and found["open_secrets"] == {"node-secret": 0o644}
    assert not list(tmp_path.glob(".doctor-*"))
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        machine.thd_state_dir(tmp_path / "file" / "state", ())


def test_port_reader_tells_a_free_port_from_one_held_by_this_node_or_another_process(tmp_path):
    database = tmp_path / "node.db"
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        taken = machine.thd_port("127.0.0.1", port, database)
        assert taken["free"] is False and taken["pid"] == os.getpid() and taken["ours"] is False
        conn = sqlite3.connect(database)  # what a running node holds open
        try:
            assert machine.thd_port("127.0.0.1", port, database)["ours"] is True
        finally:
            conn.close()
    assert machine.thd_port("127.0.0.1", port, database) == {"free": True}
    assert "error" in machine.thd_port("192.0.2.1", 0, database)
