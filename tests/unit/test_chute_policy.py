"""The node's policy for chutes is one pure function: what it refuses names the field, what it grants is
the default set plus what the chute asked for."""
import pytest

from pdserver.chutes import policy
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.spec import SpecError, build
from pdserver.sysconfig.hostconfig import DEFAULT

NODE = NodePolicy(api_port=8080)


def chute(*bindings, memory=None, capabilities=None):
    requests = {"port-bindings": [{"external": e, "internal": 80, **({"protocol": p} if p else {})}
                                  for e, p in bindings]}
    if memory is not None:
        requests["memory"] = memory
    if capabilities is not None:
        requests["capabilities"] = capabilities
    return build({"name": "pol", "version": 1, "services": {
        "web": {"type": "image", "image": "nginx"},
        "main": {"type": "light", "image": "busybox", "command": "httpd -f", "requests": requests}}})


@pytest.mark.parametrize("port,protocol", [(22, None), (53, "udp"), (53, None), (67, "udp"), (68, "udp"),
                                           (8080, None)])
def test_host_ports_of_the_node_are_refused_naming_the_binding(port, protocol):
    with pytest.raises(SpecError) as refused:
        policy.check(chute((9000, None), (port, protocol)), NODE)
    assert refused.value.field == "services.main.requests.port-bindings[1].external"
    assert refused.value.status == 400 and str(port) in refused.value.message


def test_privileged_host_ports_follow_the_host_config_switch():
    assert policy.check(chute((81, None)), NODE)["main"].capabilities == ("NET_BIND_SERVICE",)
    closed = NodePolicy(api_port=8080, privileged_ports=False)
    with pytest.raises(SpecError, match="chutePrivilegedPorts") as refused:
        policy.check(chute((1024, None), (81, None)), closed)
    assert refused.value.field == "services.main.requests.port-bindings[1].external"
    assert policy.check(chute((1024, None)), closed)


def test_the_switch_is_read_from_the_host_config_and_defaults_to_on():
    assert NodePolicy.from_config(DEFAULT, 8080).privileged_ports is True
    assert NodePolicy.from_config({"system": {}}, 8080).privileged_ports is True
    config = {**DEFAULT, "system": {**DEFAULT["system"], "chutePrivilegedPorts": False}}
    assert NodePolicy.from_config(config, 8080, 2 ** 26) == NodePolicy(8080, False, 2 ** 26)


def test_memory_defaults_to_the_node_setting_and_zero_is_refused():
    granted = policy.check(chute(), NodePolicy(api_port=8080, default_memory=2 ** 27))
    assert granted["main"].memory == granted["web"].memory == 2 ** 27
    assert policy.check(chute(memory="64M"), NODE)["main"].memory == 64 * 2 ** 20
    for tiny in ("0", "1k", 0):
        with pytest.raises(SpecError) as refused:
            policy.check(chute(memory=tiny), NODE)
        assert refused.value.field == "services.main.requests.memory"


def test_grants_of_an_installed_chute_never_refuse():
    assert policy.grants(chute((22, None), memory="0"), NODE)["main"].memory == policy.DEFAULT_MEMORY


def test_capabilities_are_the_default_set_plus_what_the_chute_asks():
    granted = policy.check(chute(capabilities=["NET_ADMIN", "NET_RAW"]), NODE)
    assert granted["main"].capabilities == ("NET_ADMIN", "NET_BIND_SERVICE", "NET_RAW")
    assert granted["web"].capabilities == policy.DEFAULT_CAPABILITIES


@pytest.mark.parametrize("capabilities", [["CAP_NET_ADMIN"], ["net_admin"], ["ALL"], ["NET_ADMIN", "NET_ADMIN"],
                                          "NET_ADMIN"])
def test_unknown_or_malformed_capabilities_are_refused_by_the_schema(capabilities):
    with pytest.raises(SpecError) as refused:
        chute(capabilities=capabilities)
    assert refused.value.field.startswith("services.main.requests.capabilities")
