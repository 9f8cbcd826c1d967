"""pdconf: what the node has configured, in ParaDrop's shape, and the chute networks it serves. Pure.

ParaDrop's pdconfd answered GET /api/v1/config/pdconf with a list of config sections, each with ``type``,
``name``, ``comment``, ``success`` and ``age`` (reloads since the section was applied), and its
``pdtools node describe-pdconf`` prints exactly those five (a comment must be a string, an age an integer).
Every section here has them, then its details. This node applies configuration through changes, not reloads:
what is configured now has age 0.
"""
from typing import List, Optional

from pdserver.chutes.networks import ConfiguredNetwork

HOST = "hostconfig"  # the comment of sections the host configuration makes (ParaDrop: the chute's name or none)


def _section(type_: str, name: str, comment: str, success: bool, **details) -> dict:
    return {"type": type_, "name": name, "comment": comment, "success": bool(success), "age": 0, **details}


def _healthy(child: Optional[dict]) -> bool:
    return bool(child) and bool(child.get("running")) and not child.get("crash_loop")


def _child_type(name: str) -> str:
    """ParaDrop's section types: dnsmasq for a DHCP server, wifi-iface for an access point."""
    return {"dnsmasq": "dnsmasq", "hostapd": "wifi-iface"}.get(name.split("-", 1)[0], "process")


def _host_sections(config: dict) -> List[dict]:
    out = []
    lan, wan = config.get("lan") or {}, config.get("wan") or {}
    if lan.get("interfaces"):
        out.append(_section("interface", "lan", HOST, True, interfaces=list(lan["interfaces"]),
                            proto=lan.get("proto"), ipaddr=lan.get("ipaddr"), netmask=lan.get("netmask")))
    if wan.get("interface"):
        out.append(_section("interface", "wan", HOST, True, interface=wan["interface"], proto=wan.get("proto"),
                            managed=bool(wan.get("proto"))))
    for radio in config.get("wifi") or ():
        out.append(_section("wifi-device", radio["id"], HOST, True, driver=radio.get("driver", "nl80211"),
                            interface=radio.get("interface"), channel=radio.get("channel"),
                            hwmode=radio.get("hwmode")))
    return out


def _networkmanager(status: dict) -> List[dict]:
    """Whether NetworkManager is on the bus (and so told to leave our links alone), and the links it was told."""
    value = status.get("network_manager")
    if not isinstance(value, dict):
        return []
    present = bool(value.get("present"))
    return [_section("networkmanager", "NetworkManager", "in use" if present else "not in use",
                     not value.get("errors"), present=present, unmanaged=list(value.get("unmanaged") or []),
                     errors=dict(value.get("errors") or {}))]


def sections(status: dict, networks: List[ConfiguredNetwork], config: dict) -> List[dict]:
    """pdconf from the network configurator's ``status()``, the chute networks and the host config."""
    children = status.get("children") or {}
    owner = {child: net.chute for net in networks for child in net.children}
    netns = status.get("netns")
    out = _host_sections(config)
    for net in networks:
        missing = [c for c in net.children if c not in children]
        failing = [c for c in net.children if c in children and not _healthy(children[c])]
        name = net.bridge or f"{net.chute}.{net.service}.{net.interface}"  # a monitor interface has no bridge
        out.append(_section("interface", name, net.chute, not missing and not failing, chute=net.chute,
                            service=net.service, interface=net.interface, network_type=net.type, subnet=net.subnet,
                            radio=net.radio, vlan_id=net.vlan_id, netns=netns, missing_children=missing,
                            failing_children=failing))
    for name in sorted(children):
        child = children[name] or {}
        out.append(_section(_child_type(name), name, owner.get(name, "node"), _healthy(child),
                            running=bool(child.get("running")), pid=child.get("pid"),
                            restarts=child.get("restarts", 0), crash_loop=bool(child.get("crash_loop")),
                            last_exit=child.get("last_exit")))
    firewall = status.get("firewall")
    if firewall is not None:
        out.append(_section("firewall", "paradrop", "nftables", True, wan=firewall.get("wan"),
                            networks=firewall.get("networks")))
    elif networks:
        out.append(_section("firewall", "paradrop", "not applied", False, wan=None, networks=0))
    return out + _networkmanager(status)
