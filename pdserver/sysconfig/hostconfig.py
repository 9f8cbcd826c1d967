"""The host configuration (ParaDrop's hostconfig.yaml): schema, defaults and its file.

Only changes write it, through the ``write_hostconfig`` action; the file is
replaced atomically so a crash leaves the old or the new content.
"""
import copy
import os
from pathlib import Path

import yaml

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,32}$"}
_IPV4 = {"type": "string", "pattern": r"^(\d{1,3}\.){3}\d{1,3}$"}
_CIDR = {"type": "string", "pattern": r"^(\d{1,3}\.){3}\d{1,3}/\d{1,2}$"}
_DHCP = {"type": "object", "additionalProperties": False, "properties": {
    "start": {"type": "integer", "minimum": 1, "maximum": 65534},
    "limit": {"type": "integer", "minimum": 1, "maximum": 65534},
    "leasetime": {"type": "string", "pattern": "^[0-9]+[smhd]?$|^infinite$"}}}

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "wan": {"type": "object", "additionalProperties": False, "properties": {
            "interface": _NAME,
            "proto": {"enum": ["dhcp", "static"]},
            "ipaddr": _IPV4, "netmask": _IPV4, "gateway": _IPV4,
            "dns": {"type": "array", "items": _IPV4}}},
        "lan": {"type": "object", "additionalProperties": False, "properties": {
            "interfaces": {"type": "array", "items": _NAME},
            "proto": {"enum": ["static"]},
            "ipaddr": _IPV4, "netmask": _IPV4,
            "dhcp": _DHCP}},
        "wifi": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["id"],
                                            "properties": {
            "id": _NAME, "channel": {"type": "integer", "minimum": 1, "maximum": 196},
            "hwmode": {"enum": ["11a", "11b", "11g"]}, "htmode": {"type": "string", "maxLength": 16},
            "country": {"type": "string", "pattern": "^[A-Z]{2}$"}}}},
        "wifi-interfaces": {"type": "array", "items": {"type": "object", "additionalProperties": False,
                                                       "required": ["device", "mode"], "properties": {
            "device": _NAME, "mode": {"enum": ["ap", "sta"]}, "network": _NAME,
            "ssid": {"type": "string", "minLength": 1, "maxLength": 32},
            "encryption": {"enum": ["none", "psk2", "psk-mixed"]},
            "key": {"type": "string", "minLength": 8, "maxLength": 63},
            "hidden": {"type": "boolean"}, "isolate": {"type": "boolean"}}}},
        "firewall": {"type": "object", "additionalProperties": False, "properties": {
            "defaults": {"type": "object", "additionalProperties": False, "properties": {
                k: {"enum": ["ACCEPT", "DROP", "REJECT"]} for k in ("input", "output", "forward")}}}},
        "system": {"type": "object", "additionalProperties": False, "properties": {
            "chuteSubnetPool": _CIDR,
            "chutePrefixSize": {"type": "integer", "minimum": 8, "maximum": 30},
            "onMissingWiFi": {"enum": ["ignore", "warn", "error"]},
            "chutePrivilegedPorts": {"type": "boolean"}}},
        "telemetry": {"type": "object", "additionalProperties": False, "properties": {
            "enabled": {"type": "boolean"}, "interval": {"type": "integer", "minimum": 10, "maximum": 86400}}},
    },
}

DEFAULT = {
    "wan": {"interface": "eth0", "proto": "dhcp"},
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


def normalize(config: dict) -> dict:
    """A full host configuration: sections the caller left out keep their defaults."""
    return {**copy.deepcopy(DEFAULT), **config}


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
