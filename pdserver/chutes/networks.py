"""What a chute's host networks are given (a subnet from the node's pool, a radio, a VLAN tag) and what each one
is then (ChuteNetwork: bridge, addresses, host links). Pure.

The API checks a chute against it before queueing a change (a missing radio is a 409 at once) and plans
assign with it at run time; what is assigned is recorded with the chute, so updates and restarts keep it.
"""
import dataclasses
import ipaddress
from typing import Dict, Iterable, List, Optional, Tuple

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.spec import ChuteSpec, DhcpSpec, InterfaceSpec
from pdserver.sysconfig import subnets


@dataclasses.dataclass(frozen=True)
class Radio:
    """A radio of the host config's ``wifi`` list. ``driver: wired`` makes ``interface`` (a wired port) the AP
    device itself: hostapd's wired driver, the radio-less path; with nl80211 an AP interface is added on ``id``
    (the phy)."""
    id: str
    driver: str = "nl80211"
    interface: Optional[str] = None
    channel: int = 1
    hwmode: str = "11g"
    country: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class HostLan:
    """The host config's LAN: its ports bridged, the bridge addressed, DHCP on it when configured."""
    interfaces: Tuple[str, ...]
    address: str
    dhcp: Optional[DhcpSpec]


@dataclasses.dataclass(frozen=True)
class HostAp:
    """An access point of the node's own (the host config's ``wifi-interfaces``, mode ap) on ``radio``, bridged
    into the LAN so its clients get the LAN's DHCP. The radio is then not free for chutes."""
    radio: Radio
    ssid: str
    key: Optional[str] = None
    hidden: bool = False
    isolate: bool = False


@dataclasses.dataclass(frozen=True)
class NetworkFacts:
    """What network plans need of the host config."""
    pool: str = "10.128.0.0/9"
    prefix: int = 24
    lan: Optional[str] = None
    wan: Optional[str] = None
    radios: Tuple[Radio, ...] = ()
    reserved: Tuple[str, ...] = ()
    host_lan: Optional[HostLan] = None
    host_aps: Tuple[HostAp, ...] = ()

    @property
    def host_radios(self) -> Tuple[str, ...]:
        """Radios the host config's own access points use."""
        return tuple(sorted(ap.radio.id for ap in self.host_aps))

    @classmethod
    def from_hostconfig(cls, config: dict) -> "NetworkFacts":
        system, lan = config.get("system") or {}, config.get("lan") or {}
        reserved = []
        if lan.get("ipaddr") and lan.get("netmask"):
            reserved.append(str(ipaddress.IPv4Interface(f"{lan['ipaddr']}/{lan['netmask']}").network))
        radios = tuple(Radio(id=r["id"], driver=r.get("driver", "nl80211"), interface=r.get("interface"),
                             channel=r.get("channel", 1), hwmode=r.get("hwmode", "11g"), country=r.get("country"))
                       for r in config.get("wifi") or ())
        host_aps = _host_aps(config, radios)
        host_lan = None
        if (lan.get("interfaces") or host_aps) and lan.get("ipaddr") and lan.get("netmask"):
            dhcp = lan.get("dhcp")
            host_lan = HostLan(tuple(lan.get("interfaces") or ()),
                               ipaddress.IPv4Interface(f"{lan['ipaddr']}/{lan['netmask']}").with_prefixlen,
                               None if dhcp is None else DhcpSpec(**dhcp))
        return cls(pool=system.get("chuteSubnetPool", cls.pool), prefix=system.get("chutePrefixSize", cls.prefix),
                   lan=(lan.get("interfaces") or [None])[0], wan=(config.get("wan") or {}).get("interface"),
                   radios=radios, reserved=tuple(reserved), host_lan=host_lan,
                   host_aps=host_aps if host_lan is not None else ())


_ENCRYPTED = ("psk2", "psk-mixed")
_MODES = {"sta": "a station of another network", "managed": "a station of another network",
          "monitor": "a radio in monitor mode"}


def _host_aps(config: dict, radios: Tuple[Radio, ...]) -> Tuple[HostAp, ...]:
    """The host's access points as far as the node can run them (check_host_aps refuses the rest at a PUT):
    mode ap on the LAN, one per radio that exists."""
    by_id, out = {r.id: r for r in radios}, {}
    for iface in config.get("wifi-interfaces") or ():
        radio = by_id.get(iface.get("device"))
        if iface.get("mode") != "ap" or iface.get("network", "lan") != "lan" or radio is None or radio.id in out:
            continue
        key = iface.get("key") if iface.get("encryption") in _ENCRYPTED else None
        out[radio.id] = HostAp(radio, iface.get("ssid") or "ParaDrop", key, bool(iface.get("hidden")),
                               bool(iface.get("isolate")))
    return tuple(out.values())


def check_host_aps(config: dict, held: Iterable[Tuple[str, Dict[str, dict]]]) -> None:
    """Refuse, naming the field, what the node cannot run of a (schema-valid) host config's ``wifi-interfaces``:
    modes other than ap, a network other than the LAN, an open network with a key (it would be open by
    mistake), a WPA2 one without a key, WPA1, two access points on one radio, and a radio a chute holds
    (``held``: (chute name, its recorded network assignments)): that one is a 409."""
    lan = config.get("lan") or {}
    ports = set(lan.get("interfaces") or ()) | {(config.get("wan") or {}).get("interface")}
    wired = {r["id"]: r.get("interface") for r in config.get("wifi") or () if r.get("driver") == "wired"}
    holders = {a["radio"]: (chute, key) for chute, assigned in held for key, a in assigned.items() if a.get("radio")}
    used = set()
    for i, iface in enumerate(config.get("wifi-interfaces") or ()):
        at = f"wifi-interfaces[{i}]"
        mode, encryption = iface.get("mode"), iface.get("encryption", "none")
        if mode != "ap":
            raise errors.InvalidInput(f"{at}.mode: {mode} ({_MODES.get(mode, mode)}) is not supported by this "
                                      "node; only ap (an access point of the LAN)", field=f"{at}.mode")
        if iface.get("network", "lan") != "lan":
            raise errors.InvalidInput(f"{at}.network: the node's own access points are on the lan network "
                                      "only (a chute's wifi-ap gives a network of its own)", field=f"{at}.network")
        if not iface.get("ssid"):
            raise errors.InvalidInput(f"{at}.ssid: an access point needs an ssid", field=f"{at}.ssid")
        if encryption == "psk-mixed":
            raise errors.InvalidInput(f"{at}.encryption: psk-mixed (WPA1) is not supported; use psk2",
                                      field=f"{at}.encryption")
        if encryption == "psk2" and not iface.get("key"):
            raise errors.InvalidInput(f"{at}.key: encryption psk2 needs a key of 8 to 63 characters",
                                      field=f"{at}.key")
        if encryption == "none" and iface.get("key"):
            raise errors.InvalidInput(f"{at}.encryption: a key is given but encryption is none (the network "
                                      "would be open); set encryption: psk2", field=f"{at}.encryption")
        device = iface["device"]
        if device in used:
            raise errors.InvalidInput(f"{at}.device: radio {device} has an access point already (one per "
                                      "radio)", field=f"{at}.device")
        used.add(device)
        if wired.get(device) and wired[device] in ports:
            raise errors.InvalidInput(f"{at}.device: radio {device} is the wired port {wired[device]}, which the "
                                      "host config uses as a LAN or WAN port already", field=f"{at}.device")
        if not (lan.get("ipaddr") and lan.get("netmask")):
            raise errors.InvalidInput(f"{at}.network: the LAN has no address (lan.ipaddr, lan.netmask) for "
                                      "the access point's clients", field=f"{at}.network")
        if device in holders:
            chute, key = holders[device]
            raise errors.Conflict(f"{at}.device: radio {device} is used by chute {chute} ({key}); remove that "
                                  "network first", field=f"{at}.device")


def interface_field(service: str, interface: str, *rest: str) -> str:
    return ".".join(("services", service, "interfaces", interface) + rest)


def _subnet(facts: NetworkFacts, taken: List[ipaddress.IPv4Network], interface: InterfaceSpec, service: str,
            kept: Optional[str]) -> ipaddress.IPv4Network:
    """The wanted network, else the one the chute had when still free, else the pool's lowest free one."""
    field = interface_field(service, interface.name)
    if interface.ipv4_network:
        field = interface_field(service, interface.name, "requirements", "ipv4_network")
        wanted = ipaddress.IPv4Network(interface.ipv4_network)
    elif kept and not any(ipaddress.IPv4Network(kept).overlaps(net) for net in taken):
        return ipaddress.IPv4Network(kept)
    else:
        wanted = None
    try:
        return subnets.allocate(ipaddress.IPv4Network(facts.pool), facts.prefix, taken, wanted)
    except errors.Error as e:
        raise type(e)(f"{field}: {e.message}", field=field) from None


def _radio_for(facts: NetworkFacts, interface: InterfaceSpec, taken: set, field: str) -> Radio:
    """A free radio that fits; the node's own access points (host config wifi-interfaces) hold theirs."""
    wanted = [r for r in facts.radios if interface.hwmode in (None, r.hwmode)]
    if interface.type == "monitor":
        # The whole radio moves into the chute: a wired port cannot listen to the air, and a radio the host
        # config's own wifi-interfaces use stays with the host.
        usable = [r for r in wanted if _can_monitor(facts, r)]
        if wanted and not usable:
            raise errors.Conflict(f"{field}: a monitor interface takes a whole nl80211 radio and no radio for it "
                                  f"is one ({', '.join(_why_not(facts, r) for r in wanted)})", field=field)
        wanted = usable
    free = [r for r in wanted if r.id not in taken]
    if free:
        return free[0]
    if not facts.radios:
        raise errors.Conflict(f"{field}: a {interface.type} needs a radio and this node has none in its host "
                              "config (wifi)", field=field)
    if not wanted:
        raise errors.Conflict(f"{field}: no radio of this node does {interface.hwmode} (radios: "
                              f"{', '.join(f'{r.id} {r.hwmode}' for r in facts.radios)})", field=field)
    host = {ap.radio.id for ap in facts.host_aps}
    users = [f"{r} (the node's own access point)" if r in host else r for r in sorted(taken)]
    raise errors.Conflict(f"{field}: every radio for it is in use ({', '.join(users)})", field=field)


def _can_monitor(facts: NetworkFacts, radio: Radio) -> bool:
    return radio.driver == "nl80211" and radio.id not in facts.host_radios


def _why_not(facts: NetworkFacts, radio: Radio) -> str:
    if radio.driver != "nl80211":
        return f"{radio.id} is {radio.driver}"
    return f"{radio.id} carries the host config's wifi-interfaces"


def assign(facts: NetworkFacts, spec: ChuteSpec, current: Dict[str, dict], others: Iterable[dict]) -> Dict[str, dict]:
    """Subnet and radio of each interface of ``spec``: kept from ``current`` (the chute's own record) when
    still free, else new; ``others`` are the assignments of the other chutes. Raises a 4xx naming the field
    when a wanted subnet overlaps, the pool is full or no radio fits."""
    others = list(others)
    taken = [ipaddress.IPv4Network(n) for n in facts.reserved] + [
        ipaddress.IPv4Network(a["subnet"]) for a in others if a.get("subnet")]
    radios = {a["radio"] for a in others if a.get("radio")} | {ap.radio.id for ap in facts.host_aps}
    vlans = {a["vlan"] for a in others if a.get("vlan")}
    out: Dict[str, dict] = {}
    for svc in spec.services:
        for interface in svc.interfaces:
            key, field = f"{svc.name}.{interface.name}", interface_field(svc.name, interface.name)
            kept = current.get(key) or {}
            assigned = {}
            if interface.type != "monitor":  # a monitor interface listens to the air: it has no IP network
                subnet = _subnet(facts, taken, interface, svc.name, kept.get("subnet"))
                taken.append(subnet)
                assigned["subnet"] = str(subnet)
            if interface.type in ("wifi-ap", "monitor"):
                radio = kept.get("radio")
                fits = {r.id for r in facts.radios if interface.type != "monitor" or _can_monitor(facts, r)}
                if radio not in fits or radio in radios:
                    radio = _radio_for(facts, interface, radios, field).id
                radios.add(radio)
                assigned["radio"] = radio
            if interface.type == "vlan":
                if not facts.lan:
                    raise errors.Conflict(f"{field}: a vlan network is a tag on the LAN port and this node's host "
                                          "config names no LAN interface (lan.interfaces)", field=field)
                if interface.vlan_id in vlans:
                    raise errors.Conflict(f"VLAN {interface.vlan_id} is another chute's already",
                                          field=interface_field(svc.name, interface.name, "vlan-id"))
                vlans.add(interface.vlan_id)
                assigned["vlan"] = interface.vlan_id
            out[key] = assigned
    return out


def bridge_name(names, chute: str, service: str, interface: str) -> str:
    """The host bridge of a chute network (``names``: the node's ChuteNames)."""
    return names.link("pd", chute, service, interface)


def host_lan_bridge(names) -> str:
    """The bridge of the host config's LAN ports."""
    return names.link("pb", "", "host", "lan")


def dhcp_child(bridge: str) -> str:
    return f"dnsmasq-{bridge}"


def ap_child(bridge: str) -> str:
    return f"hostapd-{bridge}"


def host_ap_child(radio: str) -> str:
    """The hostapd of the node's own access point on ``radio``."""
    return f"hostapd-host-{radio}"


def host_ap_link(names, radio: str) -> str:
    """The AP interface the node adds on an nl80211 radio for its own access point (a name of ours: the host
    config's ``ifname`` could name an interface the node did not make, which taking down would remove)."""
    return names.link("ph", "", "host", radio)


def channel_frequency(channel: int, hwmode: str) -> int:
    """The centre frequency (MHz) of a radio's channel: 5 GHz for 11a, else 2.4 GHz."""
    if hwmode == "11a":
        return 5000 + 5 * channel
    return 2484 if channel == 14 else 2407 + 5 * channel


@dataclasses.dataclass(frozen=True)
class ConfiguredNetwork:
    """One host network of an installed chute and the children that serve it (a monitor interface has neither
    bridge nor subnet: it is a radio the chute holds)."""
    chute: str
    service: str
    interface: str
    type: str
    bridge: Optional[str]
    subnet: Optional[str]
    radio: Optional[str]
    vlan_id: Optional[int]
    children: tuple

    @property
    def dhcp(self) -> bool:
        return dhcp_child(self.bridge) in self.children


def configured_networks(names, records: Iterable) -> List[ConfiguredNetwork]:
    """The host networks of ``records`` (ChuteRecords) with the bridge and children the node gives each."""
    out = []
    for record in records:
        for svc in record.spec().services:
            for interface in svc.interfaces:
                assigned = record.networks.get(f"{svc.name}.{interface.name}", {})
                bridge = None if interface.type == "monitor" else bridge_name(names, record.name, svc.name,
                                                                              interface.name)
                children = (() if interface.dhcp is None else (dhcp_child(bridge),)) + (
                    (ap_child(bridge),) if interface.type == "wifi-ap" else ())
                out.append(ConfiguredNetwork(record.name, svc.name, interface.name, interface.type, bridge,
                                             assigned.get("subnet"), assigned.get("radio"), assigned.get("vlan"),
                                             children))
    return out


@dataclasses.dataclass(frozen=True)
class ChuteNetwork:
    """One interface of one service, with what the node assigned to it. A monitor interface has no subnet,
    bridge or host link: its radio moves into the container whole."""
    chute: str
    service: str
    interface: InterfaceSpec
    subnet: Optional[str]
    radio: Optional[Radio]
    bridge: Optional[str]
    host_link: Optional[str]  # the VLAN subinterface or nl80211 AP interface we make (None: wired AP device)

    @property
    def key(self) -> str:
        return f"{self.service}.{self.interface.name}"

    @property
    def bridged(self) -> bool:
        """A network with a bridge, a subnet and a veth into the container (not a monitor interface)."""
        return self.interface.type != "monitor"

    @property
    def host_key(self) -> str:
        """What of the host this network holds: its bridge, or a monitor interface's radio."""
        if self.bridged:
            return self.bridge
        return f"radio {self.radio.id if self.radio else None} of {self.chute} {self.key}"

    @property
    def gateway(self) -> str:
        """The bridge's address with its prefix: the clients' router and DNS server."""
        network = ipaddress.IPv4Network(self.subnet)
        return f"{network.network_address + 1}/{network.prefixlen}"

    @property
    def chute_address(self) -> str:
        network = ipaddress.IPv4Network(self.subnet)
        return f"{network.network_address + 2}/{network.prefixlen}"

    @property
    def ap_device(self) -> Optional[str]:
        if self.interface.type != "wifi-ap" or self.radio is None:
            return None
        return self.radio.interface if self.radio.driver == "wired" else self.host_link

    def dhcp_child(self) -> str:
        return dhcp_child(self.bridge)

    def ap_child(self) -> str:
        return ap_child(self.bridge)

    def attach_args(self, names: ChuteNames, deployment: int) -> dict:
        """What giving the container of ``deployment`` its interface takes (INetworkConfigurator.attach_interface
        but the process): the plans' attach step and the re-attach after a restart by the engine use the same."""
        return {"bridge": self.bridge, "inner": self.interface.name, "address": self.chute_address,
                "host_name": names.link("pv", self.chute, self.service, self.interface.name, deployment),
                "mac": names.mac(self.chute, self.service, self.interface.name)}

    def radio_args(self) -> dict:
        """What giving the container a monitor interface takes (INetworkConfigurator.give_radio but the
        process): the radio, the name inside, the frequency to listen on."""
        return {"phy": self.radio.id, "inner": self.interface.name,
                "frequency": channel_frequency(self.radio.channel, self.radio.hwmode)}


def networks(names: ChuteNames, facts: NetworkFacts, spec: ChuteSpec, assigned: Dict[str, dict]
             ) -> List[ChuteNetwork]:
    """The chute's networks from its spec and assignments (radios the host config no longer has: None)."""
    radios = {r.id: r for r in facts.radios}
    out = []
    for svc in spec.services:
        for interface in svc.interfaces:
            given = assigned[f"{svc.name}.{interface.name}"]
            radio = radios.get(given.get("radio"))
            if interface.type == "monitor":
                out.append(ChuteNetwork(spec.name, svc.name, interface, None, radio, None, None))
                continue
            kind = {"vlan": "pl", "wifi-ap": "pa"}[interface.type]
            host_link = names.link(kind, spec.name, svc.name, interface.name)
            if interface.type == "wifi-ap" and radio is not None and radio.driver == "wired":
                host_link = None
            out.append(ChuteNetwork(spec.name, svc.name, interface, given["subnet"], radio,
                                    bridge_name(names, spec.name, svc.name, interface.name), host_link))
    return out
