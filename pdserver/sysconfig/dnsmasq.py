"""dnsmasq for one chute network (or the host LAN): its config file, its command line and its leases.

Rendering and parsing are pure. Every value that reaches the config file is checked against what dnsmasq
accepts for it, so no value can end a line, start a comment or add an option (a chute's paradrop.yaml and a
DHCP client's hostname are untrusted). One dnsmasq runs per interface, so the fixed options that let several
run side by side (bind-interfaces, no loopback, no pid file, no system files) are on the command line.
"""
import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from pdserver.errors import InvalidInput

# Linux interface names: at most 15 bytes; we also keep out what dnsmasq or a shell would read specially.
_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_LEASETIME = re.compile(r"([0-9]{1,10})([smhdw]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_MAX_LEASE_SECONDS = 2 ** 31 - 1
_DNS_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# Paths in the config file: no whitespace (trimmed, and " #" starts a comment), no quotes or backslashes
# (dnsmasq unescapes them), no commas, nothing that is not printable ASCII.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./+@%-]*")
_MAX_DNS_SERVERS = 8
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")
MIN_START = 3  # .1 is the bridge (the gateway), .2 the chute's own veth end

_EXPIRES = re.compile(r"[0-9]{1,12}")
_MAC = re.compile(r"[0-9a-f]{2}([:-][0-9a-f]{2}){0,31}")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]{0,252})")
_CLIENT_ID = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){0,254}")
MAX_LEASE_FILE = 16 * 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class DhcpConfig:
    """DHCP and DNS on one interface, with ParaDrop's `dhcp` keys: `start` is the host offset of the first
    leased address in the interface's subnet, `limit` the number of addresses (the range is cut at the end of
    the subnet), `leasetime` dnsmasq's duration (`12h`, `30m`, `3600`, `infinite`). `dns`: the servers handed
    to clients; empty means the interface's own address, where this dnsmasq answers DNS."""
    interface: str
    address: ipaddress.IPv4Interface
    start: int = 100
    limit: int = 100
    leasetime: str = "12h"
    dns: tuple = ()
    lease_file: Path
    domain: Optional[str] = None


def _check_int(value, name: str, minimum: int) -> int:
    if type(value) is not int or value < minimum:
        raise InvalidInput(f"{name} must be an integer of at least {minimum}", field=name)
    return value


def _check_interface(value) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise InvalidInput("interface must be a network interface name (letters, digits, _ . -; at most 15)",
                           field="interface")
    return value


def _check_address(value) -> ipaddress.IPv4Interface:
    if not isinstance(value, ipaddress.IPv4Interface):
        raise InvalidInput("address must be an IPv4 interface address", field="address")
    if value.network.prefixlen > 30:
        raise InvalidInput("address needs a subnet of at least 4 addresses (prefix /30 or shorter)",
                           field="address")
    if value.ip in (value.network.network_address, value.network.broadcast_address):
        raise InvalidInput("address must be a host address of its subnet", field="address")
    return value


def _check_leasetime(value) -> str:
    if value == "infinite":
        return value
    match = _LEASETIME.fullmatch(value) if isinstance(value, str) else None
    seconds = int(match.group(1)) * _UNIT_SECONDS[match.group(2)] if match else 0
    if not 0 < seconds <= _MAX_LEASE_SECONDS:
        raise InvalidInput("leasetime must be a positive duration such as 12h, 30m, 3600 or 'infinite' "
                           "(dnsmasq makes anything under 2m into 2m)", field="leasetime")
    return value


def _check_dns(value, default: ipaddress.IPv4Address) -> List[ipaddress.IPv4Address]:
    if not isinstance(value, (tuple, list)) or len(value) > _MAX_DNS_SERVERS:
        raise InvalidInput(f"dns must be a list of at most {_MAX_DNS_SERVERS} IPv4 addresses", field="dns")
    servers = []
    for item in value:
        try:
            server = ipaddress.IPv4Address(item) if isinstance(item, (str, ipaddress.IPv4Address)) else None
        except ValueError:
            server = None
        if server is None or server.is_unspecified or server.is_multicast or server == _BROADCAST:
            raise InvalidInput("dns must be a list of unicast IPv4 addresses", field="dns")
        servers.append(server)
    return servers or [default]


def _check_domain(value) -> Optional[str]:
    if value is None:
        return None
    labels = value.split(".") if isinstance(value, str) and len(value) <= 253 else [""]
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        raise InvalidInput("domain must be a DNS name (labels of letters, digits and -, separated by dots)",
                           field="domain")
    return value


def _check_path(value, name: str) -> str:
    text = str(value) if isinstance(value, (str, Path)) else ""
    if not _SAFE_PATH.fullmatch(text) or "/../" in text + "/":
        raise InvalidInput(f"{name} must be an absolute path of letters, digits and _ . / + @ % -", field=name)
    return text


def dhcp_range(cfg: DhcpConfig) -> tuple:
    """(first, last) leased address: ParaDrop's start/limit, cut at the last host address of the subnet."""
    _check_address(cfg.address)
    start = _check_int(cfg.start, "start", MIN_START)
    limit = _check_int(cfg.limit, "limit", 1)
    network = cfg.address.network
    last_host = network.broadcast_address - 1
    if start > int(last_host) - int(network.network_address):
        raise InvalidInput(f"start {start} is past the end of the subnet {network}", field="start")
    first = network.network_address + start
    last = min(int(first) + limit - 1, int(last_host))
    last = ipaddress.IPv4Address(last)
    if first <= cfg.address.ip <= last:
        raise InvalidInput(f"the DHCP range {first}-{last} holds the interface's own address {cfg.address.ip}",
                           field="start")
    return first, last


def render(cfg: DhcpConfig) -> str:
    """The config file of the dnsmasq for `cfg`; InvalidInput naming the field when a value is not valid."""
    interface = _check_interface(cfg.interface)
    address = _check_address(cfg.address)
    first, last = dhcp_range(cfg)
    leasetime = _check_leasetime(cfg.leasetime)
    servers = _check_dns(cfg.dns, address.ip)
    domain = _check_domain(cfg.domain)
    lease_file = _check_path(cfg.lease_file, "lease_file")
    lines = [
        "# Written by pdserver; changes are overwritten.",
        f"interface={interface}",
        f"dhcp-range={first},{last},{address.network.netmask},{leasetime}",
        f"dhcp-option=option:router,{address.ip}",
        "dhcp-option=option:dns-server," + ",".join(str(server) for server in servers),
        f"dhcp-leasefile={lease_file}",
        "dhcp-authoritative",
        "domain-needed",
        "bogus-priv",
    ]
    if domain:
        lines += [f"domain={domain}", f"local=/{domain}/"]
    return "\n".join(lines) + "\n"


def argv(conf_path: Path, binary: str = "dnsmasq") -> list:
    """The command line of one dnsmasq child: in the foreground (the supervisor owns it), logging to stderr,
    reading only `conf_path` (not /etc/dnsmasq.conf nor /etc/hosts), bound to its own interface and not to
    loopback (so one per network can run side by side), no pid file, no ping before a lease (3 s less)."""
    conf = _check_path(conf_path, "conf_path")
    return [binary, "--keep-in-foreground", f"--conf-file={conf}", "--pid-file=", "--log-facility=-",
            "--bind-interfaces", "--except-interface=lo", "--no-hosts", "--no-ping"]


@dataclass(frozen=True)
class Lease:
    """One line of dnsmasq's lease file; `expires` is a Unix time (0: never)."""
    expires: int
    mac: str
    ip: str
    hostname: Optional[str]
    client_id: Optional[str]


def _parse_line(line: str) -> Optional[Lease]:
    fields = line.split()
    if len(fields) != 5 or not _EXPIRES.fullmatch(fields[0]):
        return None
    expires, mac, ip, hostname, client_id = fields
    mac = mac.lower()
    if not _MAC.fullmatch(mac):
        return None
    try:
        ip = str(ipaddress.IPv4Address(ip))
    except ValueError:
        return None
    hostname = hostname if hostname != "*" and _HOSTNAME.fullmatch(hostname) else None
    client_id = client_id.lower() if client_id != "*" and _CLIENT_ID.fullmatch(client_id.lower()) else None
    return Lease(int(expires), mac, ip, hostname, client_id)


def parse_leases(text: str) -> List[Lease]:
    """The IPv4 leases in a dnsmasq lease file; lines that are not one (DHCPv6 lines, a half-written line,
    garbage) are skipped: the file is another program's output."""
    leases = []
    for line in text.splitlines():
        lease = _parse_line(line)
        if lease is not None:
            leases.append(lease)
    return leases


def thd_read_leases(path: Path) -> List[Lease]:
    """The leases in `path` (blocking: run it in a thread); a missing file has none. At most the first
    MAX_LEASE_FILE bytes are read."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_LEASE_FILE)
    except FileNotFoundError:
        return []
    return parse_leases(data.decode("utf-8", errors="replace"))
