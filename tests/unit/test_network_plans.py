"""Plans of chute networks: assignment of subnets, radios and VLANs, and the steps of each change."""
import dataclasses

import pytest

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.spec import SpecError, build
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord
from pdserver.execution import chute_plans as plans
from pdserver.execution import network_plans as net_plans
from pdserver.chutes.networks import HostAp
from pdserver.execution.network_plans import NetworkFacts, Radio

WIRED = Radio(id="radio0", driver="wired", interface="veth-ap")
PHY = Radio(id="phy0", hwmode="11a", channel=36)
FACTS = NetworkFacts(pool="10.128.0.0/9", prefix=24, lan="lan0", wan="wan0", radios=(WIRED,),
                     reserved=("10.128.0.0/24",))


def chute(name="ap", interfaces=None, version=1):
    interfaces = interfaces if interfaces is not None else {
        "wlan0": {"type": "wifi-ap", "dhcp": {"start": 10, "limit": 20}, "wireless": {"ssid": "Hi", "key": "k" * 8}}}
    return build({"name": name, "version": version, "services": {"main": {
        "type": "image", "image": "paradrop/busybox", "command": "sleep 1000", "interfaces": interfaces}}})


def node(facts=FACTS, chutes=()):
    return plans.NodeFacts(ChuteNames("node-1"), NodePolicy(8080), network=facts, chutes=tuple(chutes))


def record(spec, networks, deployment=1):
    return ChuteRecord(spec.name, spec.version, RUNNING, spec.raw, deployment, None, 0.0, 0.0, "vol", networks)


def test_subnets_come_from_the_pool_past_reserved_and_taken_ones_and_are_kept_on_update():
    first = net_plans.assign(FACTS, chute(), {}, [])
    assert first == {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}}
    second = net_plans.assign(FACTS, chute("vl", {"lan1": {"type": "vlan", "vlan-id": 7, "dhcp": {}}}), {},
                              first.values())
    assert second == {"main.lan1": {"subnet": "10.128.2.0/24", "vlan": 7}}
    kept = {"main.wlan0": {"subnet": "10.128.9.0/24", "radio": "radio0"}}
    assert net_plans.assign(FACTS, chute(), kept, second.values()) == kept


@pytest.mark.parametrize("facts, spec, others, error, field", [
    (NetworkFacts(radios=()), chute(), [], errors.Conflict, "services.main.interfaces.wlan0"),
    (NetworkFacts(radios=(WIRED,)), chute(interfaces={"wlan0": {"type": "wifi-ap", "requirements": {
        "hwmode": "11a"}}}), [], errors.Conflict, "services.main.interfaces.wlan0"),
    (FACTS, chute(), [{"subnet": "10.128.5.0/24", "radio": "radio0"}], errors.Conflict,
     "services.main.interfaces.wlan0"),
    (FACTS, chute(interfaces={"v": {"type": "vlan", "vlan-id": 3}}), [{"subnet": "10.128.5.0/24", "vlan": 3}],
     errors.Conflict, "services.main.interfaces.v.vlan-id"),
    (NetworkFacts(lan=None), chute(interfaces={"v": {"type": "vlan", "vlan-id": 3}}), [], errors.Conflict,
     "services.main.interfaces.v"),
    (FACTS, chute(interfaces={"v": {"type": "vlan", "vlan-id": 3, "requirements": {
        "ipv4_network": "10.128.0.0/25"}}}), [], errors.Conflict,
     "services.main.interfaces.v.requirements.ipv4_network"),
    (NetworkFacts(pool="10.0.0.0/24", prefix=24, lan="l", reserved=("10.0.0.0/24",)),
     chute(interfaces={"v": {"type": "vlan", "vlan-id": 3}}), [], errors.Unavailable, "services.main.interfaces.v"),
])
def test_what_a_node_cannot_give_is_refused_naming_the_interface(facts, spec, others, error, field):
    with pytest.raises(error) as caught:
        net_plans.assign(facts, spec, {}, others)
    assert caught.value.field == field and caught.value.status in (409, 503)


def test_the_missing_radio_is_named_in_the_message():
    with pytest.raises(errors.Conflict) as caught:
        net_plans.assign(NetworkFacts(radios=(WIRED,)), chute(interfaces={"wlan0": {
            "type": "wifi-ap", "requirements": {"hwmode": "11a"}}}), {}, [])
    assert "11a" in caught.value.message and "radio0 11g" in caught.value.message


def actions(steps):
    return [s.action for s in steps]


def test_an_install_makes_the_network_before_the_containers_and_attaches_after_each_start():
    steps = plans.plan_install(node(), chute(), 5, None, 0.0)
    names = actions(steps)
    assert names[names.index("ensure_image") + 1:names.index("create_container")] == [
        "ensure_bridge", "set_master", "start_dhcp", "start_ap", "apply_firewall", "create_network", "create_volume"]
    assert names.index("start_container") < names.index("attach_interface") < names.index("wait_ready")
    for step in steps[names.index("ensure_bridge"):names.index("apply_firewall") + 1]:
        assert step.undo is not None, step.action
    bridge = steps[names.index("ensure_bridge")].args
    assert bridge["address"] == "10.128.1.1/24" and len(bridge["name"]) <= 15
    attach = steps[names.index("attach_interface")].args
    assert (attach["inner"], attach["address"], attach["bridge"]) == ("wlan0", "10.128.1.2/24", bridge["name"])
    ap = steps[names.index("start_ap")].args
    assert (ap["interface"], ap["driver"], ap["ssid"], ap["key"]) == ("veth-ap", "wired", "Hi", "k" * 8)
    dhcp = steps[names.index("start_dhcp")].args
    assert (dhcp["start"], dhcp["limit"], dhcp["address"]) == (10, 20, "10.128.1.1/24")
    saved = steps[names.index("save_chute")].args["record"]
    assert saved["networks"] == {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}}


def test_the_firewall_holds_every_chute_s_networks():
    other = chute("vl", {"lan1": {"type": "vlan", "vlan-id": 7}})
    installed = record(other, {"main.lan1": {"subnet": "10.128.7.0/24", "vlan": 7}})
    steps = plans.plan_install(node(chutes=[installed]), chute(), 5, None, 0.0)
    [firewall] = [s for s in steps if s.action == "apply_firewall"]
    assert [n["subnet"] for n in firewall.args["networks"]] == sorted(
        ["10.128.7.0/24", "10.128.1.0/24"], key=lambda s: [n["subnet"] for n in firewall.args["networks"]].index(s))
    assert {n["chute"] for n in firewall.args["networks"]} == {"ap", "vl"}
    assert [n["chute"] for n in firewall.undo.args["networks"]] == ["vl"]
    assert firewall.args["wan"] == "wan0"


def test_a_delete_tears_networks_down_after_its_commit():
    spec = chute()
    old = record(spec, {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}})
    steps = plans.plan_delete(node(chutes=[old]), old)
    names = actions(steps)
    commit = names.index("forget_chute")
    assert set(names[commit:]) >= {"stop_ap", "stop_dhcp", "set_master", "remove_link", "apply_firewall"}
    assert not any(a in names[:commit] for a in ("stop_ap", "remove_link"))
    [firewall] = [s for s in steps if s.action == "apply_firewall"]
    assert firewall.args["networks"] == []


def test_an_update_leaves_an_unchanged_network_alone_and_sets_a_changed_one_back_on_rollback():
    spec = chute()
    old = record(spec, {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}})
    same = plans.plan_update(node(chutes=[old]), old, chute(version=2), 9, None, 0.0)
    assert not {"ensure_bridge", "start_ap", "stop_ap", "remove_link"} & set(actions(same))
    # the new container gets the interface (same address, same MAC) once the old one is stopped
    names = actions(same)
    assert names.index("save_chute") < names.index("stop_container") < names.index("attach_interface")
    changed = plans.plan_update(node(chutes=[old]), old, chute(version=2, interfaces={"wlan0": {
        "type": "wifi-ap", "wireless": {"ssid": "New"}}}), 9, None, 0.0)
    [ap] = [s for s in changed if s.action == "start_ap"]
    assert ap.args["ssid"] == "New" and ap.undo.action == "start_ap" and ap.undo.args["ssid"] == "Hi"
    [dhcp_stop] = [s for s in changed if s.action == "stop_dhcp"]  # the new version has no DHCP
    assert actions(changed).index("stop_dhcp") < actions(changed).index("save_chute")
    assert dhcp_stop.args["bridge"] == ap.args["bridge"] and dhcp_stop.undo.action == "start_dhcp"


def test_an_update_that_drops_an_interface_removes_its_network_after_the_commit():
    old = record(chute(), {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}})
    steps = plans.plan_update(node(chutes=[old]), old, chute(version=2, interfaces={}), 9, None, 0.0)
    names = actions(steps)
    assert names.index("save_chute") < names.index("stop_ap") < names.index("remove_link")


def test_reconciliation_sets_every_network_up_again_and_attaches_running_services():
    old = record(chute(), {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}})
    container = ChuteNames("node-1").container("ap", "main", 1)
    observed = {"containers": {container: {"running": True}}, "networks": {}, "volumes": {}, "images": {}}
    steps = plans.plan_reconcile(node(chutes=[old]), [old], observed)
    names = actions(steps)
    assert {"ensure_bridge", "set_master", "start_ap", "apply_firewall", "attach_interface"} <= set(names)
    assert all(s.commit and s.undo is None for s in steps)


MONITOR = {"mon0": {"type": "monitor", "requirements": {"hwmode": "11a"}}}
RADIOS = NetworkFacts(pool="10.128.0.0/9", prefix=24, lan="lan0", wan="wan0", radios=(WIRED, PHY),
                      reserved=("10.128.0.0/24",))


def monitor_record(state=RUNNING, radio="phy0"):
    spec = chute("mon", MONITOR)
    return ChuteRecord(spec.name, spec.version, state, spec.raw, 1, None, 0.0, 0.0, "vol", {"main.mon0": {
        "radio": radio}})


def test_a_monitor_interface_gets_an_nl80211_radio_of_its_own_and_no_subnet():
    assigned = net_plans.assign(RADIOS, chute("mon", MONITOR), {}, [])
    assert assigned == {"main.mon0": {"radio": "phy0"}}
    # no subnet taken from the pool: the next network gets the first free one
    assert net_plans.assign(RADIOS, chute(), {}, assigned.values()) == {
        "main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio0"}}
    [net] = net_plans.networks(ChuteNames("node-1"), RADIOS, chute("mon", MONITOR), assigned)
    assert (net.subnet, net.bridge, net.host_link, net.bridged) == (None, None, None, False)
    assert net.radio_args() == {"phy": "phy0", "inner": "mon0", "frequency": 5180}  # channel 36 of 11a


@pytest.mark.parametrize("facts, others, words", [
    (FACTS, [], ["radio0 is wired"]),  # a wired port cannot listen to the air
    (RADIOS, [{"radio": "phy0"}], ["in use", "phy0"]),  # a radio a chute holds is not free
    (dataclasses.replace(RADIOS, host_aps=(HostAp(PHY, "Home"),)), [],
     ["phy0 carries the host config's wifi-interfaces"]),
])
def test_a_monitor_interface_without_a_free_nl80211_radio_is_a_conflict_naming_it(facts, others, words):
    with pytest.raises(errors.Conflict) as caught:
        net_plans.assign(facts, chute("mon", {"mon0": {"type": "monitor"}}), {}, others)
    assert caught.value.field == "services.main.interfaces.mon0" and caught.value.status == 409
    assert all(word in caught.value.message for word in words), caught.value.message


def test_a_radio_a_monitor_chute_holds_is_not_free_for_an_access_point_and_the_host_s_radios_are_read():
    facts = NetworkFacts.from_hostconfig({"wifi": [{"id": "phy0", "hwmode": "11a"}, {"id": "phy1"}],
                                          "lan": {"ipaddr": "192.168.1.1", "netmask": "255.255.255.0"},
                                          "wifi-interfaces": [{"device": "phy1", "mode": "ap", "ssid": "Home"}]})
    assert facts.host_radios == ("phy1",)
    held = net_plans.assign(facts, chute("mon", MONITOR), {}, [])
    with pytest.raises(errors.Conflict) as caught:
        net_plans.assign(facts, chute(interfaces={"wlan0": {"type": "wifi-ap", "requirements": {"hwmode": "11a"}}}),
                         {}, held.values())
    assert "in use" in caught.value.message


def test_a_monitor_chute_keeps_its_radio_across_an_update_unless_it_became_unfit():
    kept = {"main.mon0": {"radio": "phy0"}}
    assert net_plans.assign(RADIOS, chute("mon", MONITOR), kept, []) == kept
    wired = NetworkFacts(radios=(Radio(id="phy0", driver="wired", interface="eth9", hwmode="11a"),))
    with pytest.raises(errors.Conflict):  # phy0 is wired now, and no other radio does 11a
        net_plans.assign(wired, chute("mon", MONITOR), kept, [])
    other = NetworkFacts(radios=wired.radios + (Radio(id="phy1", hwmode="11a"),))
    assert net_plans.assign(other, chute("mon", MONITOR), kept, []) == {"main.mon0": {"radio": "phy1"}}


def test_monitor_options_that_only_networks_have_are_refused_as_invalid_input():
    with pytest.raises(SpecError) as caught:
        chute("mon", {"mon0": {"type": "monitor", "dhcp": {}}})
    assert caught.value.field == "services.main.interfaces.mon0.dhcp" and caught.value.status == 400


def test_an_install_gives_the_radio_after_the_start_and_takes_it_back_from_the_running_container_on_undo():
    steps = plans.plan_install(node(RADIOS), chute("mon", MONITOR), 5, None, 0.0)
    names = actions(steps)
    assert not {"ensure_bridge", "start_dhcp", "apply_firewall", "attach_interface"} & set(names)
    assert names.index("start_container") < names.index("give_radio") < names.index("wait_ready")
    give = steps[names.index("give_radio")]
    container = ChuteNames("node-1").container("mon", "main", 5)
    assert give.args == {"container": container, "phy": "phy0", "inner": "mon0", "frequency": 5180}
    assert (give.undo.action, give.undo.args) == ("release_radio", {"phy": "phy0", "container": container})
    assert steps[names.index("save_chute")].args["record"]["networks"] == {"main.mon0": {"radio": "phy0"}}


def test_a_delete_takes_the_radio_back_after_the_containers_are_gone():
    old = monitor_record()
    names = actions(plans.plan_delete(node(RADIOS, chutes=[old]), old))
    assert names.index("forget_chute") < names.index("remove_container") < names.index("release_radio")
    assert "apply_firewall" not in names
    [release] = [s for s in plans.plan_delete(node(RADIOS, chutes=[old]), old) if s.action == "release_radio"]
    assert release.args == {"phy": "phy0", "container": None}  # waited for from the dead namespace


def test_a_stop_brings_the_radio_home_and_a_start_gives_it_again():
    old = monitor_record()
    names = actions(plans.plan_stop(node(RADIOS, chutes=[old]), old, 0.0))
    assert names.index("stop_container") < names.index("release_radio") < names.index("save_chute")
    names = actions(plans.plan_start(node(RADIOS, chutes=[old]), old, 0.0))
    assert names.index("start_container") < names.index("give_radio") < names.index("save_chute")


def test_an_update_gives_the_kept_radio_to_the_new_container_once_the_old_one_stopped():
    old = monitor_record()
    steps = plans.plan_update(node(RADIOS, chutes=[old]), old, chute("mon", MONITOR, version=2), 9, None, 0.0)
    names = actions(steps)
    assert names.index("save_chute") < names.index("stop_container") < names.index("give_radio")
    assert "release_radio" not in names  # the radio moves from the old container's namespace to the new one
    gone = dataclasses.replace(RADIOS, radios=(WIRED, PHY, Radio(id="phy7", hwmode="11a")))
    moved = monitor_record(radio="phy9")  # its radio left the host config: a new one, nothing to take back
    names = actions(plans.plan_update(node(gone, chutes=[moved]), moved, chute("mon", MONITOR, version=2), 9, None,
                                      0.0))
    assert "give_radio" in names and "release_radio" not in names


def test_reconciliation_gives_running_chutes_their_radios_and_brings_stopped_ones_home():
    running, stopped = monitor_record(), dataclasses.replace(monitor_record(STOPPED, radio="phy7"), name="idle")
    facts = dataclasses.replace(RADIOS, radios=(WIRED, PHY, Radio(id="phy7", hwmode="11a")))
    container = ChuteNames("node-1").container("mon", "main", 1)
    observed = {"containers": {container: {"running": True}}, "networks": {}, "volumes": {}, "images": {}}
    steps = plans.plan_reconcile(node(facts, chutes=[running, stopped]), [running, stopped], observed)
    radio_steps = [(s.action, s.args["phy"]) for s in steps if s.action in ("give_radio", "release_radio")]
    assert radio_steps == [("give_radio", "phy0"), ("release_radio", "phy7")]
    assert "apply_firewall" not in actions(steps) and all(s.commit and s.undo is None for s in steps)


def test_reconciliation_sets_the_host_lan_up_again():
    lan = net_plans.HostLan(("eth1",), "192.168.1.1/24", None)
    facts = NetworkFacts(lan="eth1", host_lan=lan)
    observed = {"containers": {}, "networks": {}, "volumes": {}, "images": {}}
    steps = plans.plan_reconcile(node(facts=facts), [], observed)
    assert [s.action for s in steps] == ["ensure_bridge", "set_master"]
    assert steps[0].args["address"] == "192.168.1.1/24"
