"""Plans for the host networks of chutes (Wi-Fi access points, VLANs of the LAN port): pure functions.

A chute network is a bridge on the host holding the host side (a VLAN subinterface of the LAN port, or an AP
interface on a radio), a dnsmasq on the bridge, a hostapd for an AP, and a veth into the service's container
renamed to the interface name the chute asked for. The bridge has the subnet's first address (the clients'
router and DNS), the container the second. Subnets and radios are assigned once and recorded with the chute,
so an update or a restart keeps them.

A monitor interface is none of that: Linux moves a Wi-Fi interface between network namespaces only with its
whole radio (the wiphy), so the radio itself is given to the container after each start (``give_radio``: moved
in, a monitor interface of the asked name on the radio's channel) and taken back (``release_radio``) when the
container goes. A namespace that dies hands its radios to the initial namespace, not to the node's own (which
differs in network_netns mode): taking it back means finding it there and moving it home.
"""
import dataclasses
from typing import Iterable, List, Optional

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import (ChuteNetwork, HostAp, HostLan, NetworkFacts, Radio, assign, dhcp_child,
                                      host_ap_child, host_ap_link, host_lan_bridge, interface_field, networks)
from pdserver.execution.steps import Step

__all__ = ["NetworkFacts", "Radio", "assign", "ChuteNetwork", "networks", "setup", "teardown", "attach",
           "release", "firewall_args"]


def _ssid(net: ChuteNetwork) -> str:
    return net.interface.wireless_options().get("ssid") or f"ParaDrop {net.chute}"[:32]


def _ap_args(net: ChuteNetwork) -> dict:
    radio = net.radio
    wireless = net.interface.wireless_options()
    return {"child": net.ap_child(), "chute": net.chute, "interface": net.ap_device, "bridge": net.bridge,
            "driver": radio.driver, "channel": radio.channel, "hwmode": radio.hwmode, "country": radio.country,
            "ssid": _ssid(net), **{k: v for k, v in wireless.items() if k != "ssid"}}


def _dhcp_args(net: ChuteNetwork) -> dict:
    dhcp = net.interface.dhcp
    return {"child": net.dhcp_child(), "bridge": net.bridge, "address": net.gateway, "start": dhcp.start,
            "limit": dhcp.limit, "leasetime": dhcp.leasetime, "dns": list(net.interface.dns)}


def setup(net: ChuteNetwork, facts: NetworkFacts, undo: bool = True, commit: bool = False) -> List[Step]:
    """Make one network: bridge, host side, DHCP, AP. With ``undo`` each step takes itself back (an install
    that fails leaves nothing); every step is idempotent, so reconciliation runs the same steps again."""
    def step(action, args, description, undo_step=None):
        return Step(action, args, description, undo=undo_step if undo else None, commit=commit)

    _check_radio(net)
    if not net.bridged:
        return []  # the radio is given to the container once it runs (attach)
    name = f"{net.key} of {net.chute}"
    steps = [step("ensure_bridge", {"name": net.bridge, "address": net.gateway},
                  f"making bridge {net.bridge} ({net.gateway}) for {name}",
                  Step("remove_link", {"name": net.bridge}, f"removing bridge {net.bridge}"))]
    if net.interface.type == "vlan":
        steps.append(step("ensure_vlan", {"parent": facts.lan, "vlan_id": net.interface.vlan_id,
                                          "name": net.host_link, "master": net.bridge},
                          f"tagging VLAN {net.interface.vlan_id} on {facts.lan} into {net.bridge}",
                          Step("remove_link", {"name": net.host_link}, f"removing VLAN link {net.host_link}")))
    elif net.radio.driver == "wired":
        steps.append(step("set_master", {"link": net.radio.interface, "master": net.bridge},
                          f"putting {net.radio.interface} into {net.bridge}",
                          Step("set_master", {"link": net.radio.interface, "master": None},
                               f"taking {net.radio.interface} out of {net.bridge}")))
    else:
        steps.append(step("ensure_ap_interface", {"phy": net.radio.id, "name": net.host_link},
                          f"adding AP interface {net.host_link} on {net.radio.id}",
                          Step("remove_link", {"name": net.host_link}, f"removing AP interface {net.host_link}")))
    if net.interface.dhcp is not None:
        steps.append(step("start_dhcp", _dhcp_args(net), f"starting DHCP on {net.bridge}",
                          Step("stop_dhcp", {"child": net.dhcp_child(), "bridge": net.bridge},
                               f"stopping DHCP on {net.bridge}")))
    if net.interface.type == "wifi-ap":
        steps.append(step("start_ap", _ap_args(net), f"starting access point {_ssid(net)!r} on {net.ap_device}",
                          Step("stop_ap", {"child": net.ap_child()}, f"stopping the access point of {name}")))
    return steps


def _check_radio(net: ChuteNetwork) -> None:
    if net.interface.type in ("wifi-ap", "monitor") and net.radio is None:
        raise errors.Conflict(f"the radio assigned to {net.key} of {net.chute} is gone from the host config",
                              field=interface_field(net.service, net.interface.name))


def teardown(net: ChuteNetwork) -> List[Step]:
    """Remove one network; idempotent (after a commit, and again on recovery). A monitor interface's radio
    comes back from the removed container's namespace."""
    if not net.bridged:
        return [release(net)] if net.radio is not None else []
    steps = [Step("stop_ap", {"child": net.ap_child()}, f"stopping the access point of {net.key}")]
    steps.append(Step("stop_dhcp", {"child": net.dhcp_child(), "bridge": net.bridge},
                      f"stopping DHCP on {net.bridge}"))
    if net.host_link:
        steps.append(Step("remove_link", {"name": net.host_link}, f"removing {net.host_link}"))
    elif net.radio is not None and net.radio.interface:
        steps.append(Step("set_master", {"link": net.radio.interface, "master": None},
                          f"taking {net.radio.interface} out of {net.bridge}"))
    steps.append(Step("remove_link", {"name": net.bridge}, f"removing bridge {net.bridge}"))
    return steps


def release(net: ChuteNetwork, container: Optional[str] = None, commit: bool = False) -> Step:
    """A monitor interface's radio back in the node's namespace, its monitor interfaces gone: taken from
    ``container`` while it runs, else waited for (a dead namespace gives it back to the initial one)."""
    return Step("release_radio", {"phy": net.radio.id, "container": container},
                f"taking radio {net.radio.id} back from {net.interface.name} of service {net.service}", commit=commit)


def attach(names: ChuteNames, net: ChuteNetwork, container: str, deployment: int, commit: bool = False) -> Step:
    """The veth that gives a running container the interface (after each start: a new process has a new
    network namespace); for a monitor interface, the radio itself (undone by taking it back from the running
    container, before it stops)."""
    if not net.bridged:
        _check_radio(net)
        return Step("give_radio", {"container": container, **net.radio_args()},
                    f"giving service {net.service} radio {net.radio.id} as monitor interface {net.interface.name}",
                    undo=None if commit else release(net, container), commit=commit)
    return Step("attach_interface", {"container": container, **net.attach_args(names, deployment)},
                f"giving service {net.service} its interface {net.interface.name} ({net.chute_address})",
                commit=commit)


def firewall_args(facts: NetworkFacts, all_networks: Iterable[ChuteNetwork]) -> dict:
    """The whole firewall of chute networks (it is applied as one transaction)."""
    return {"wan": facts.wan,
            "networks": sorted(({"chute": n.chute, "bridge": n.bridge, "subnet": n.subnet,
                                 "gateway": n.gateway.split("/")[0]} for n in all_networks if n.bridged),
                               key=lambda n: n["bridge"])}


def host_lan_setup(names: ChuteNames, lan: HostLan, undo: bool = True, commit: bool = False) -> List[Step]:
    """The host LAN: a bridge with the LAN address holding the LAN ports, dnsmasq on it when DHCP is on."""
    bridge = host_lan_bridge(names)

    def step(action, args, description, undo_step):
        return Step(action, args, description, undo=undo_step if undo else None, commit=commit)

    steps = [step("ensure_bridge", {"name": bridge, "address": lan.address}, f"making the LAN bridge {bridge} "
                  f"({lan.address})", Step("remove_link", {"name": bridge}, f"removing the LAN bridge {bridge}"))]
    steps += [step("set_master", {"link": port, "master": bridge}, f"putting LAN port {port} into {bridge}",
                   Step("set_master", {"link": port, "master": None}, f"taking {port} out of {bridge}"))
              for port in lan.interfaces]
    if lan.dhcp is not None:
        steps.append(step("start_dhcp", {"child": dhcp_child(bridge), "bridge": bridge, "address": lan.address,
                                         "start": lan.dhcp.start, "limit": lan.dhcp.limit,
                                         "leasetime": lan.dhcp.leasetime, "dns": []}, "starting DHCP on the LAN",
                          Step("stop_dhcp", {"child": dhcp_child(bridge), "bridge": bridge},
                               "stopping DHCP on the LAN")))
    return steps


def host_lan_teardown(names: ChuteNames, lan: HostLan) -> List[Step]:
    bridge = host_lan_bridge(names)
    return ([Step("stop_dhcp", {"child": dhcp_child(bridge), "bridge": bridge}, "stopping DHCP on the LAN")]
            + [Step("set_master", {"link": port, "master": None}, f"taking {port} out of {bridge}")
               for port in lan.interfaces]
            + [Step("remove_link", {"name": bridge}, f"removing the LAN bridge {bridge}")])


def host_ap_setup(names: ChuteNames, ap: HostAp, undo: bool = True, commit: bool = False) -> List[Step]:
    """One of the node's own access points, bridged into the LAN bridge (which host_lan_setup makes first):
    the radio's wired port put into it (driver wired), or an AP interface added on the radio that hostapd puts
    into it (nl80211); then hostapd."""
    bridge, radio, child = host_lan_bridge(names), ap.radio, host_ap_child(ap.radio.id)

    def step(action, args, description, undo_step):
        return Step(action, args, description, undo=undo_step if undo else None, commit=commit)

    if radio.driver == "wired":
        device = radio.interface
        steps = [step("set_master", {"link": device, "master": bridge}, f"putting {device} ({radio.id}) into "
                      f"the LAN bridge {bridge}", Step("set_master", {"link": device, "master": None},
                                                       f"taking {device} out of {bridge}"))]
    else:
        device = host_ap_link(names, radio.id)
        steps = [step("ensure_ap_interface", {"phy": radio.id, "name": device},
                      f"adding AP interface {device} on {radio.id} for the LAN",
                      Step("remove_link", {"name": device}, f"removing AP interface {device}"))]
    args = {"child": child, "interface": device, "bridge": bridge, "driver": radio.driver, "channel": radio.channel,
            "hwmode": radio.hwmode, "country": radio.country, "ssid": ap.ssid, "key": ap.key, "hidden": ap.hidden,
            "isolate": ap.isolate}
    steps.append(step("start_ap", args, f"starting the LAN access point {ap.ssid!r} on {radio.id}",
                      Step("stop_ap", {"child": child}, f"stopping the LAN access point on {radio.id}")))
    return steps


def host_ap_teardown(names: ChuteNames, ap: HostAp) -> List[Step]:
    """Take one of the node's own access points down (a host config change that fails puts it back)."""
    return undone(host_ap_setup(names, ap))


def undone(setup_steps: List[Step]) -> List[Step]:
    """Steps that take down what ``setup_steps`` made, in reverse; each undone by making its piece again."""
    return [dataclasses.replace(s.undo, undo=dataclasses.replace(s, undo=None)) for s in reversed(setup_steps)]
