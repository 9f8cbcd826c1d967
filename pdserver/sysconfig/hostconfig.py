"""The host configuration (ParaDrop's hostconfig.yaml): schema, defaults, the first configuration and its file.

Only changes write it, through the ``write_hostconfig`` action; the file is
replaced atomically so a crash leaves the old or the new content.
"""
import copy
import ipaddress
import os
from pathlib import Path
from typing import Iterable, List, Optional

import yaml

from pdserver.errors import InvalidInput
from pdserver.sysconfig import device_list
from pdserver.sysconfig.subnets import allocate
from pdserver.validation import check

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.@-]{0,14}$"}  # a link name (netlink.check_name)
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = {"type": "string", "pattern": rf"^({_OCTET}\.){{3}}{_OCTET}$"}
_CIDR = {"type": "string", "pattern": rf"^({_OCTET}\.){{3}}{_OCTET}/([0-9]|[12][0-9]|3[0-2])$"}
_ACTION = {"enum": ["ACCEPT", "DROP", "REJECT"]}
_FLAG = {"anyOf": [{"type": "boolean"}, {"enum": [0, 1, "0", "1"]}]}  # ParaDrop writes conntrack: '1'
_FIREWALL_DEFAULTS = {"type": "object", "additionalProperties": False, "properties": {
    "input": _ACTION, "output": _ACTION, "forward": _ACTION, "conntrack": _FLAG, "masq": _FLAG,
    "masq_src": {"type": "array", "maxItems": 64, "uniqueItems": True, "items": _CIDR}}}
_ZONE = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,15}$"}
_DHCP = {"type": "object", "additionalProperties": False, "properties": {
    "start": {"type": "integer", "minimum": 1, "maximum": 65534},
    "limit": {"type": "integer", "minimum": 1, "maximum": 65534},
    "leasetime": {"type": "string", "pattern": "^([0-9]{1,8}[smhd]?|infinite)$"}}}
_RADIO = {"type": "object", "additionalProperties": False, "required": ["id"], "properties": {
    "id": _NAME, "channel": {"type": "integer", "minimum": 1, "maximum": 196},
    "hwmode": {"enum": ["11a", "11b", "11g"]},
    "htmode": {"enum": [None, "HT20", "HT40+", "HT40-", "VHT20", "VHT40", "VHT80", "VHT160"]},
    "country": {"type": "string", "pattern": "^[A-Z]{2}$"},
    "tx_stbc": {"enum": [0, 1]}, "rx_stbc": {"enum": [0, 1]},
    "short_gi_20": {"type": "boolean"}, "short_gi_40": {"type": "boolean"}, "short_gi_80": {"type": "boolean"},
    # The radio-less AP path: `driver: wired` runs hostapd's wired driver on the named wired `interface`.
    "interface": _NAME, "driver": {"enum": ["nl80211", "wired"]}},
    "if": {"required": ["driver"], "properties": {"driver": {"const": "wired"}}}, "then": {"required": ["interface"]}}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "wan": {"type": "object", "additionalProperties": False, "properties": {
            "interface": _NAME,
            # No proto: the node reads the WAN (for NAT) and never configures it.
            "proto": {"enum": ["dhcp", "static"]},
            "ipaddr": _IPV4, "netmask": _IPV4, "gateway": _IPV4,
            "dns": {"type": "array", "maxItems": 8, "items": _IPV4},
            "firewall": {"type": "object", "additionalProperties": False, "properties": {
                "defaults": _FIREWALL_DEFAULTS}}}},
        "lan": {"type": "object", "additionalProperties": False, "properties": {
            "interfaces": {"type": "array", "maxItems": 64, "uniqueItems": True, "items": _NAME},
            "proto": {"enum": ["static"]},
            "ipaddr": _IPV4, "netmask": _IPV4,
            "dhcp": _DHCP,
            "firewall": {"type": "object", "additionalProperties": False, "properties": {
                "defaults": _FIREWALL_DEFAULTS,
                "forwarding": {"type": "array", "maxItems": 16, "items": {
                    "type": "object", "additionalProperties": False, "required": ["src", "dest"],
                    "properties": {"src": _ZONE, "dest": _ZONE}}}}}}},
        "wifi": {"type": "array", "maxItems": 16, "items": _RADIO},
        "wifi-interfaces": {"type": "array", "maxItems": 64, "items": {
            "type": "object", "additionalProperties": False, "required": ["device", "mode"], "properties": {
                "device": _NAME, "mode": {"enum": ["ap", "sta", "managed", "monitor"]}, "network": _ZONE,
                "ifname": _NAME, "ssid": {"type": "string", "minLength": 1, "maxLength": 32},
                "encryption": {"enum": ["none", "psk2", "psk-mixed"]},
                "key": {"type": "string", "pattern": "^[ -~]{8,63}$"},
                "hidden": {"type": "boolean"}, "isolate": {"type": "boolean"}}}},
        "firewall": {"type": "object", "additionalProperties": False, "properties": {
            "defaults": _FIREWALL_DEFAULTS}},
        "system": {"type": "object", "additionalProperties": False, "properties": {
            "chuteSubnetPool": _CIDR,
            "chutePrefixSize": {"type": "integer", "minimum": 8, "maximum": 30},
            "onMissingWiFi": {"enum": [None, "ignore", "warn", "error", "reboot"]},
            "chutePrivilegedPorts": {"type": "boolean"},
            "autoUpdate": {"type": "boolean"}}},
        "telemetry": {"type": "object", "additionalProperties": False, "properties": {
            "enabled": {"type": "boolean"}, "interval": {"type": "integer", "minimum": 10, "maximum": 86400}}},
        # Kept so a ParaDrop host config imports; this node runs no ZeroTier.
        "zerotier": {"type": "object", "additionalProperties": False, "properties": {
            "enabled": {"type": "boolean"},
            "networks": {"type": "array", "maxItems": 32, "uniqueItems": True,
                         "items": {"type": "string", "pattern": "^[0-9a-f]{16}$"}}}},
    },
}

DEFAULT = {
    "wan": {"interface": "eth0"},  # read only: no proto, so the node never configures it
    "lan": {"interfaces": [], "proto": "static", "ipaddr": "10.0.0.1", "netmask": "255.255.255.0",
            "dhcp": {"start": 100, "limit": 100, "leasetime": "12h"}},
    "wifi": [],
    "wifi-interfaces": [],
    "firewall": {"defaults": {"input": "ACCEPT", "output": "ACCEPT", "forward": "ACCEPT"}},
    # chutePrivilegedPorts: chutes may publish host ports below 1024 (ParaDrop's examples bind port 81).
    "system": {"chuteSubnetPool": "10.128.0.0/9", "chutePrefixSize": 24, "onMissingWiFi": "warn",
               "chutePrivilegedPorts": True},
    "telemetry": {"enabled": True, "interval": 60},
}


CHANNELS_24G = (1, 6, 11)
LAN_POOL = ipaddress.IPv4Network("10.0.0.0/16")  # where a first LAN subnet is looked for


def normalize(config: dict) -> dict:
    """A full host configuration: sections the caller left out keep their defaults."""
    return {**copy.deepcopy(DEFAULT), **config}


def _strings(value, path: str) -> Iterable[tuple]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{path}[{i}]")


def _netmask(value: str, field: str) -> int:
    try:
        return ipaddress.IPv4Network(f"0.0.0.0/{value}").prefixlen
    except ValueError:
        raise InvalidInput(f"{field}: {value} is not a netmask", field=field) from None


def validate(config: dict) -> dict:
    """The full (normalized) configuration, or InvalidInput naming the field: the schema, then what a schema
    cannot say (control characters, which JSON Schema patterns let through before a final newline; netmasks;
    references between sections; sizes that must fit)."""
    check(config, SCHEMA)
    full = normalize(config)
    for field, text in _strings(full, ""):
        if any(ord(c) < 0x20 or ord(c) == 0x7f for c in text):
            raise InvalidInput(f"{field} contains a control character", field=field)
    lan = full["lan"]
    prefix = _netmask(lan.get("netmask", "255.255.255.0"), "lan.netmask")
    hosts = (1 << (32 - prefix)) - 2
    dhcp = lan.get("dhcp") or {}
    if dhcp.get("start", 100) + dhcp.get("limit", 100) - 1 > hosts:
        raise InvalidInput(f"lan.dhcp: start + limit go past the {hosts} addresses of the LAN", field="lan.dhcp")
    if "netmask" in full["wan"]:
        _netmask(full["wan"]["netmask"], "wan.netmask")
    if full["wan"].get("interface") in lan.get("interfaces", []):
        raise InvalidInput("the WAN interface cannot also be a LAN interface", field="lan.interfaces")
    system = full["system"]
    try:
        pool = ipaddress.IPv4Network(system.get("chuteSubnetPool", "10.128.0.0/9"))
    except ValueError:
        raise InvalidInput("system.chuteSubnetPool has host bits set", field="system.chuteSubnetPool") from None
    if system.get("chutePrefixSize", 24) < pool.prefixlen:
        raise InvalidInput(f"system.chutePrefixSize is larger than the pool {pool}", field="system.chutePrefixSize")
    radios: List[str] = []
    for i, radio in enumerate(full["wifi"]):
        if radio["id"] in radios:
            raise InvalidInput(f"wifi[{i}].id: {radio['id']} is there twice", field=f"wifi[{i}].id")
        radios.append(radio["id"])
    for i, iface in enumerate(full["wifi-interfaces"]):
        if iface["device"] not in radios:
            raise InvalidInput(f"wifi-interfaces[{i}].device: no radio {iface['device']} in wifi",
                               field=f"wifi-interfaces[{i}].device")
    return full


def _in_use(device: dict) -> bool:
    """Whether the host already uses a device: a routable address, the default route, or another bridge."""
    if device["default_route"] or device.get("master"):
        return True
    for text in device["addresses"]:
        address = ipaddress.ip_interface(text)
        if not (address.is_link_local or address.is_loopback):
            return True
    return False


def new_config(devices: List[dict]) -> dict:
    """ParaDrop's new-config from the devices present (netlink.thd_devices): pure.

    The WAN is the default route's device, read only (no ``proto``: the node never configures it). Free wired
    devices form the LAN and free radios are listed; a device carrying a routable address, the default route or
    a bridge master of its own, and a radio with such an interface, are never claimed: a laptop or CI machine
    keeps its network. The LAN subnet avoids every network present.
    """
    config = copy.deepcopy(DEFAULT)
    devices = sorted(devices, key=lambda d: d["name"])
    wan = [d for d in devices if d["default_route"]]
    wan.sort(key=lambda d: not any(ipaddress.ip_interface(a).version == 4 for a in d["addresses"]))
    config["wan"] = {"interface": wan[0]["name"]} if wan else {}
    config["lan"]["interfaces"] = [d["name"] for d in devices if d["kind"] == "ethernet" and not _in_use(d)]
    present = [ipaddress.ip_interface(a).network for d in devices for a in d["addresses"]]
    pool = ipaddress.IPv4Network(config["system"]["chuteSubnetPool"])
    lan = allocate(LAN_POOL, 24, present + [pool])
    config["lan"]["ipaddr"], config["lan"]["netmask"] = str(lan.network_address + 1), str(lan.netmask)
    busy = {d["phy"] for d in devices if d["phy"] and _in_use(d)}
    phys = sorted({d["phy"] for d in devices if d["kind"] == "wifi" and d["phy"]} - busy)
    config["wifi"] = [{"id": phy, "channel": CHANNELS_24G[i % len(CHANNELS_24G)], "hwmode": "11g"}
                      for i, phy in enumerate(phys)]
    return config


class HostConfigStore:
    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict:
        try:
            data = yaml.safe_load(self.path.read_text())
        except FileNotFoundError:
            return copy.deepcopy(DEFAULT)
        return normalize(data) if isinstance(data, dict) else copy.deepcopy(DEFAULT)

    def save(self, config: dict) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            yaml.safe_dump(config, f, default_flow_style=False, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def thd_first_start(store: HostConfigStore, netns: Optional[str] = None) -> Optional[dict]:
    """On first start (no host config file yet) write new_config of the devices present; the written config, or
    None when a host config exists (the owner's, kept as it is)."""
    if store.path.exists():
        return None
    config = validate(new_config(device_list.thd_devices(netns)))
    store.save(config)
    return config
