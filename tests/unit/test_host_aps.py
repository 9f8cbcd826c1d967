"""The node's own access points (the host config's wifi-interfaces): what a PUT may ask, the plan that applies
the difference with undo, the radios they hold against chutes, and reconcile bringing them back."""
import copy

import pytest
from twisted.python.failure import Failure

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import check_host_aps, host_ap_child, host_ap_link, host_lan_bridge
from pdserver.execution import chute_plans
from pdserver.execution import network_plans as net_plans
from pdserver.execution.executor import Executor, StepFailed
from pdserver.execution.network_actions import NetworkActions
from pdserver.execution.network_plans import NetworkFacts
from pdserver.execution.plans import plan_hostconfig
from pdserver.sysconfig import hostapd, hostconfig
from pdserver.sysconfig.memory import MemoryNetwork
from tests.unit.test_network_plans import chute, node
from tests.unit.quiet_journal import QuietJournal

NAMES = ChuteNames("node-1")
BRIDGE = host_lan_bridge(NAMES)
CHILD = host_ap_child("radio0")
LAN = {"interfaces": [], "proto": "static", "ipaddr": "192.168.50.1", "netmask": "255.255.255.0",
       "dhcp": {"start": 100, "limit": 50, "leasetime": "1h"}}
RADIOS = [{"id": "radio0", "driver": "wired", "interface": "veth-ap"}, {"id": "phy1", "channel": 6}]


def config(*aps, lan=LAN):
    return hostconfig.validate({"lan": lan, "wifi": RADIOS, "wifi-interfaces": list(aps)})


def ap(device="radio0", **extra):
    """An access point of the host config; an option given as None is left out."""
    iface = {"device": device, "mode": "ap", "network": "lan", "ssid": "Home", "encryption": "psk2",
             "key": "secret-psk", **extra}
    return {k: v for k, v in iface.items() if v is not None}


def actions(steps):
    return [s.action for s in steps]


def test_a_wired_access_point_is_a_port_of_the_lan_bridge_served_by_hostapd_and_the_lan_dhcp():
    steps = plan_hostconfig(NAMES, config(), config(ap(hidden=True, isolate=True)))
    # no wired LAN port, yet the LAN exists for its access point's clients
    assert actions(steps) == ["ensure_bridge", "start_dhcp", "set_master", "start_ap", "write_hostconfig"]
    assert steps[2].args == {"link": "veth-ap", "master": BRIDGE}
    assert steps[3].args == {"child": CHILD, "interface": "veth-ap", "bridge": BRIDGE, "driver": "wired",
                             "channel": 1, "hwmode": "11g", "country": None, "ssid": "Home", "key": "secret-psk",
                             "hidden": True, "isolate": True}
    assert [s.undo.action for s in steps] == ["remove_link", "stop_dhcp", "set_master", "stop_ap",
                                              "write_hostconfig"]


def test_an_nl80211_access_point_gets_an_interface_of_ours_on_the_radio_and_an_open_one_no_key():
    steps = plan_hostconfig(NAMES, config(), config(ap("phy1", encryption="none", key=None, ifname="wlan0")))
    add, start = steps[2], steps[3]
    assert (add.action, add.args) == ("ensure_ap_interface", {"phy": "phy1", "name": host_ap_link(NAMES, "phy1")})
    assert add.undo.args == {"name": host_ap_link(NAMES, "phy1")}  # never the ifname it may not have made
    assert start.args["interface"] == host_ap_link(NAMES, "phy1") and start.args["key"] is None
    assert (start.args["driver"], start.args["channel"], start.args["bridge"]) == ("nl80211", 6, BRIDGE)


def test_changing_an_access_point_restarts_only_it_and_removing_it_takes_it_and_an_empty_lan_down():
    old = config(ap(), ap("phy1", ssid="Other"))
    renamed = copy.deepcopy(old)
    renamed["wifi-interfaces"][0]["ssid"] = "Renamed"
    steps = plan_hostconfig(NAMES, old, renamed)
    assert actions(steps) == ["stop_ap", "set_master", "set_master", "start_ap", "write_hostconfig"]
    assert steps[0].undo.action == "start_ap" and steps[0].undo.args["ssid"] == "Home"
    assert steps[1].args["master"] is None and steps[1].undo.args["master"] == BRIDGE
    assert steps[3].args["ssid"] == "Renamed"

    gone = plan_hostconfig(NAMES, old, config())
    assert actions(gone) == ["stop_ap", "set_master", "stop_ap", "remove_link", "stop_dhcp", "remove_link",
                             "write_hostconfig"]
    assert gone[2].args == {"child": host_ap_child("phy1")} and gone[-2].args == {"name": BRIDGE}


def test_a_lan_change_takes_the_access_points_down_before_the_bridge_and_up_after_it():
    steps = plan_hostconfig(NAMES, config(ap()), config(ap(), lan={**LAN, "ipaddr": "192.168.51.1"}))
    assert actions(steps) == ["stop_ap", "set_master", "stop_dhcp", "remove_link", "ensure_bridge", "start_dhcp",
                              "set_master", "start_ap", "write_hostconfig"]
    assert steps[4].args["address"] == "192.168.51.1/24"


@pytest.mark.parametrize("iface, field, words", [
    (ap(mode="sta"), "wifi-interfaces[0].mode", "sta (a station of another network) is not supported"),
    (ap(mode="monitor"), "wifi-interfaces[0].mode", "not supported"),
    (ap(network="wan"), "wifi-interfaces[0].network", "lan network only"),
    (ap(encryption="psk-mixed"), "wifi-interfaces[0].encryption", "use psk2"),
    (ap(key=None), "wifi-interfaces[0].key", "needs a key"),
    (ap(encryption="none"), "wifi-interfaces[0].encryption", "would be open"),
    (ap(ssid=None), "wifi-interfaces[0].ssid", "needs an ssid"),
])
def test_what_the_node_cannot_run_is_refused_naming_the_field(iface, field, words):
    with pytest.raises(errors.InvalidInput) as caught:
        check_host_aps(config(iface), [])
    assert caught.value.field == field and words in caught.value.message
    with pytest.raises(errors.InvalidInput):  # the change handler checks again
        plan_hostconfig(NAMES, config(), config(iface))


def test_two_access_points_on_one_radio_and_a_radio_port_that_is_a_lan_port_are_refused():
    with pytest.raises(errors.InvalidInput) as caught:
        check_host_aps(config(ap(), ap(ssid="Twice")), [])
    assert caught.value.field == "wifi-interfaces[1].device"
    with pytest.raises(errors.InvalidInput) as caught:
        check_host_aps(config(ap(), lan={**LAN, "interfaces": ["veth-ap"]}), [])
    assert caught.value.field == "wifi-interfaces[0].device" and "LAN or WAN port" in caught.value.message


def test_a_radio_a_chute_holds_is_a_409_naming_the_field_and_the_chute():
    held = [("cam", {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}}),
            ("vl", {"main.lan1": {"subnet": "10.128.2.0/24", "vlan": 7}})]
    with pytest.raises(errors.Conflict) as caught:
        check_host_aps(config(ap()), held)
    assert caught.value.field == "wifi-interfaces[0].device"
    assert "chute cam (main.wlan0)" in caught.value.message
    with pytest.raises(errors.Conflict):
        plan_hostconfig(NAMES, config(), config(ap()), held)
    check_host_aps(config(ap("phy1")), held)  # the other radio is free


def test_hostile_values_never_reach_hostapd_as_a_line_of_their_own():
    with pytest.raises(errors.InvalidInput) as caught:
        config(ap(ssid="Home\nctrl_interface=/tmp"))
    assert caught.value.field == "wifi-interfaces[0].ssid"
    with pytest.raises(errors.InvalidInput):
        config(ap(key="secret-psk\nwpa=0"))
    ssid = 'a"b=c\\d ü'
    [_, _, _, start, _] = plan_hostconfig(NAMES, config(), config(ap(ssid=ssid)))
    args = start.args
    text = hostapd.render(hostapd.ApConfig(interface=args["interface"], ssid=args["ssid"], ctrl_dir="/run/x",
                                           driver=args["driver"], key=args["key"]))
    assert f"ssid2={ssid.encode().hex()}" in text.splitlines() and "=c" not in text


def test_a_chute_does_not_get_a_radio_the_node_uses_for_its_own_access_point():
    facts = NetworkFacts.from_hostconfig(config(ap()))
    assert [a.radio.id for a in facts.host_aps] == ["radio0"]
    wifi = chute(interfaces={"wlan0": {"type": "wifi-ap", "requirements": {"hwmode": "11g"}}})
    assert net_plans.assign(facts, wifi, {}, [])["main.wlan0"]["radio"] == "phy1"
    # even one it was given before: the host config took it since
    assert net_plans.assign(facts, wifi, {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}},
                            [])["main.wlan0"]["radio"] == "phy1"
    with pytest.raises(errors.Conflict) as caught:
        net_plans.assign(facts, wifi, {}, [{"subnet": "10.128.9.0/24", "radio": "phy1"}])
    assert caught.value.field == "services.main.interfaces.wlan0"
    assert "radio0 (the node's own access point)" in caught.value.message


def test_reconcile_sets_the_access_points_up_again_after_the_lan():
    facts = NetworkFacts.from_hostconfig(config(ap(), ap("phy1", ssid="Two")))
    steps = chute_plans.plan_reconcile(node(facts), [], {"containers": {}, "networks": {}, "volumes": {},
                                                         "images": {}})
    assert actions(steps) == ["ensure_bridge", "start_dhcp", "set_master", "start_ap", "ensure_ap_interface",
                              "start_ap"]
    assert all(s.commit and s.undo is None for s in steps)



def apply(network, steps):
    store = {}
    executor = Executor({**NetworkActions(network, engine=None).actions(),
                         "write_hostconfig": lambda args, progress: store.update(args["config"])})
    result = []
    executor.run(steps, QuietJournal()).addBoth(result.append)
    [outcome] = result
    return outcome


class RecordingNetwork(MemoryNetwork):
    def __init__(self, links):
        super().__init__(links)
        self.started = []

    def start_ap(self, child, options):
        self.started.append(options["ssid"])
        return super().start_ap(child, options)


def test_a_failed_change_leaves_the_old_access_point_running():
    network = RecordingNetwork(links=("veth-ap",))
    first = config(ap())
    assert apply(network, plan_hostconfig(NAMES, config(), first)) is None
    assert network.children[CHILD]["ssid"] == "Home" and network.links["veth-ap"]["master"] == BRIDGE

    renamed = copy.deepcopy(first)
    renamed["wifi-interfaces"] = [ap(ssid="Renamed"), ap("phy1")]
    network.fail["ensure_ap_interface"] = errors.Unavailable("cannot add an AP interface on radio phy1")
    outcome = apply(network, plan_hostconfig(NAMES, first, renamed))
    assert isinstance(outcome, Failure) and outcome.check(StepFailed)
    assert network.started == ["Home", "Renamed", "Home"]  # the new one ran, then the old one came back
    assert network.children[CHILD]["ssid"] == "Home"
    assert network.links["veth-ap"]["master"] == BRIDGE
    assert set(network.children) == {CHILD, f"dnsmasq-{BRIDGE}"}
