"""The chute networks' firewall: one nftables table of our own, replaced in one `nft -f` transaction.

The table (`inet paradrop`) masquerades chute subnets out the WAN, forwards WAN ports to chute addresses,
keeps chute networks apart from each other and from the rest of the node, and lets a chute reach the node
only for DHCP, DNS and the Edge API on its own bridge's gateway address. Nothing outside the table is ever
written: `render` emits `add table` + `delete table` + the full table, so a re-apply replaces exactly our
rules and leaves Docker's, the distribution's and the owner's tables alone.

Coexistence with Docker (iptables-nft `ip filter` / `ip nat` tables at the standard priorities filter 0,
dstnat -100, srcnat 100): every one of our base chains sits 10 below the standard one, so it runs first.
- A drop is final across all base chains, so our isolation holds whatever Docker's chains accept.
- An accept is not final: a chute's packet to the WAN also passes Docker's FORWARD chain. Docker leaves its
  policy at ACCEPT when IP forwarding was already on when dockerd started (Docker sets DROP only when it
  turns forwarding on itself; 28+ also has `ip-forward-no-drop`), so the node must enable forwarding
  before dockerd starts; with a DROP policy chute traffic to the WAN is dropped by Docker, not by us.
- NAT: the first nat chain that binds a connection wins, so our port forwards take precedence over a Docker
  published port on the same WAN port; our masquerade only matches chute subnets, Docker's only its own.
"""
import re
import shutil
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from typing import Optional

from twisted.internet import defer, error, protocol
from zope.interface import Interface, implementer

from pdserver.errors import InternalError, InvalidInput, Unavailable

_IFNAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")  # Linux names; no quote, space, `*` (an nft wildcard)
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_CHUTE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")  # the chute schema's name pattern
_NETNS = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
PROTOCOLS = ("tcp", "udp")
APPLY_TIMEOUT = 10.0


@dataclass(frozen=True)
class ChuteNet:
    """One chute network: the host bridge, its subnet and the gateway (the bridge's own address)."""
    chute: str
    bridge: str
    subnet: IPv4Network
    gateway: IPv4Address


@dataclass(frozen=True)
class Forward:
    """A WAN port forwarded (DNAT) to an address in a chute network."""
    protocol: str
    port: int
    to_address: IPv4Address
    to_port: int


@dataclass(frozen=True)
class FirewallState:
    wan: Optional[str]
    networks: tuple = ()
    forwards: tuple = ()
    table: str = "paradrop"


def _ifname(value, field: str) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value) or value in (".", ".."):
        raise InvalidInput(f"not an interface name: {value!r}", field=field)
    return value


def _table(value) -> str:
    if not isinstance(value, str) or not _TABLE.fullmatch(value):
        raise InvalidInput(f"not a table name: {value!r}", field="table")
    return value


def _port(value, field: str) -> int:
    if type(value) is not int or not 1 <= value <= 65535:
        raise InvalidInput(f"not a port: {value!r}", field=field)
    return value


def _check_network(net, index: int) -> None:
    field = f"networks[{index}]"
    if not isinstance(net, ChuteNet):
        raise InvalidInput("not a chute network", field=field)
    if not isinstance(net.chute, str) or not _CHUTE.fullmatch(net.chute):
        raise InvalidInput(f"not a chute name: {net.chute!r}", field=f"{field}.chute")
    _ifname(net.bridge, f"{field}.bridge")
    if not isinstance(net.subnet, IPv4Network) or net.subnet.prefixlen > 30:
        raise InvalidInput(f"not an IPv4 subnet with room for hosts: {net.subnet!r}", field=f"{field}.subnet")
    if not isinstance(net.gateway, IPv4Address) or net.gateway not in net.subnet \
            or net.gateway in (net.subnet.network_address, net.subnet.broadcast_address):
        raise InvalidInput(f"gateway {net.gateway!r} is not a host of {net.subnet}", field=f"{field}.gateway")


def _check_forward(fwd, index: int, networks: tuple) -> None:
    field = f"forwards[{index}]"
    if not isinstance(fwd, Forward):
        raise InvalidInput("not a port forward", field=field)
    if fwd.protocol not in PROTOCOLS:
        raise InvalidInput(f"protocol must be one of {', '.join(PROTOCOLS)}", field=f"{field}.protocol")
    _port(fwd.port, f"{field}.port")
    _port(fwd.to_port, f"{field}.to_port")
    address = fwd.to_address
    if not isinstance(address, IPv4Address) or not any(
            address in n.subnet and address not in (n.gateway, n.subnet.network_address, n.subnet.broadcast_address)
            for n in networks):
        raise InvalidInput(f"{address!r} is not a chute address", field=f"{field}.to_address")


def validate(state: FirewallState) -> None:
    """Raise InvalidInput (naming the field) unless every value is safe to put in an nft script."""
    _table(state.table)
    if state.wan is not None:
        _ifname(state.wan, "wan")
    networks = tuple(state.networks)
    for index, net in enumerate(networks):
        _check_network(net, index)
    bridges = [n.bridge for n in networks]
    for index, net in enumerate(networks):
        if net.bridge in bridges[:index] or net.bridge == state.wan:
            raise InvalidInput(f"bridge {net.bridge} used twice", field=f"networks[{index}].bridge")
        for other in networks[:index]:
            if net.subnet.overlaps(other.subnet):
                raise InvalidInput(f"{net.subnet} overlaps {other.subnet}", field=f"networks[{index}].subnet")
    if state.forwards and state.wan is None:
        raise InvalidInput("port forwards need a WAN interface", field="forwards")
    seen = set()
    for index, fwd in enumerate(state.forwards):
        _check_forward(fwd, index, networks)
        if (fwd.protocol, fwd.port) in seen:
            raise InvalidInput(f"{fwd.protocol}/{fwd.port} forwarded twice", field=f"forwards[{index}].port")
        seen.add((fwd.protocol, fwd.port))


def _elements(values) -> str:
    return f" elements = {{ {', '.join(values)} }};" if values else ""


def render(state: FirewallState) -> str:
    """The nft script that replaces our table atomically (one `nft -f` transaction)."""
    validate(state)
    t = state.table
    nets = sorted(state.networks, key=lambda n: n.bridge)
    bridges = [f'"{n.bridge}"' for n in nets]
    lines = [
        f"add table inet {t}",
        f"delete table inet {t}",
        f"table inet {t} {{",
        f"  set chute_bridges {{ type ifname;{_elements(bridges)} }}",
        f"  set chute_subnets {{ type ipv4_addr; flags interval;{_elements([str(n.subnet) for n in nets])} }}",
        "  chain input {",
        "    type filter hook input priority filter - 10; policy accept;",
        "    iifname @chute_bridges jump chute_input",
        "  }",
        "  chain chute_input {",
        "    ct state established,related accept",
        "    udp sport 68 udp dport 67 accept",
    ]
    for n in nets:
        lines += [f'    iifname "{n.bridge}" ip daddr {n.gateway} udp dport 53 accept comment "{n.chute}"',
                  f'    iifname "{n.bridge}" ip daddr {n.gateway} tcp dport 53 accept comment "{n.chute}"']
    lines += [
        "    drop",
        "  }",
        "  chain forward {",
        "    type filter hook forward priority filter - 10; policy accept;",
        "    iifname @chute_bridges jump from_chute",
        "    oifname @chute_bridges jump to_chute",
        "  }",
        "  chain from_chute {",
    ]
    lines += [f'    iifname "{n.bridge}" oifname "{n.bridge}" accept' for n in nets]
    if state.wan:
        lines.append(f'    oifname "{state.wan}" accept')
    lines += [
        "    drop",
        "  }",
        "  chain to_chute {",
        "    ct state established,related accept",
    ]
    if state.wan:
        lines.append(f'    iifname "{state.wan}" ct status dnat accept')
    lines += [
        "    drop",
        "  }",
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat - 10; policy accept;",
    ]
    for f in sorted(state.forwards, key=lambda f: (f.protocol, f.port)):
        lines.append(f'    iifname "{state.wan}" fib daddr type local {f.protocol} dport {f.port}'
                     f' dnat ip to {f.to_address}:{f.to_port}')
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat - 10; policy accept;",
    ]
    if state.wan:
        lines.append(f'    oifname "{state.wan}" ip saddr @chute_subnets masquerade')
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def clear_script(table: str = "paradrop") -> str:
    """Removes our table; a missing table is fine (the `add` makes the `delete` always valid)."""
    _table(table)
    return f"add table inet {table}\ndelete table inet {table}\n"


def argv(netns: Optional[str] = None, binary: str = "nft") -> list:
    """`nft -f -` (reading the script from stdin), inside `netns` when given."""
    nft = shutil.which(binary)
    if nft is None:
        raise Unavailable(f"{binary} not found: the firewall needs nftables")
    if netns is None:
        return [nft, "-f", "-"]
    if not isinstance(netns, str) or not _NETNS.fullmatch(netns):
        raise InvalidInput(f"not a namespace name: {netns!r}", field="netns")
    ip = shutil.which("ip")
    if ip is None:
        raise Unavailable("ip not found: running nft in a namespace needs iproute2")
    return [ip, "netns", "exec", netns, nft, "-f", "-"]


class _Nft(protocol.ProcessProtocol):
    """Feeds the script on stdin; fires `done` with None, or an error carrying nft's own message."""

    def __init__(self, script: bytes):
        self.script = script
        self.output = []
        self.timed_out = False
        self.done = defer.Deferred()

    def connectionMade(self):
        self.transport.write(self.script)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.output.append(data)

    errReceived = outReceived

    def processEnded(self, reason):
        if reason.check(error.ProcessDone):
            self.done.callback(None)
        else:
            text = b"".join(self.output).decode("utf-8", "replace").strip() or reason.getErrorMessage()
            if self.timed_out:
                text = f"no answer in time ({text})"
            self.done.errback(InternalError(f"nft failed: {text}"))


def apply(reactor, script: str, netns: Optional[str] = None, timeout: float = APPLY_TIMEOUT) -> defer.Deferred:
    """Run `script` through `nft -f -` on the reactor; fires when the transaction is committed."""
    try:
        args = argv(netns)
    except (InvalidInput, Unavailable):
        return defer.fail()
    proto = _Nft(script.encode())
    reactor.spawnProcess(proto, args[0], args, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})

    def kill():
        proto.timed_out = True
        try:
            proto.transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass
    killer = reactor.callLater(timeout, kill)

    def done(result):
        if killer.active():
            killer.cancel()
        return result
    return proto.done.addBoth(done)


def clear(reactor, table: str = "paradrop", netns: Optional[str] = None) -> defer.Deferred:
    """Remove our table (fine when it is absent)."""
    try:
        script = clear_script(table)
    except InvalidInput:
        return defer.fail()
    return apply(reactor, script, netns=netns)


class IFirewall(Interface):
    """The node's firewall: the chute networks' rules, replaced as a whole."""

    def apply(state):
        """Make `state` the firewall (Deferred); InvalidInput before anything changes."""

    def clear():
        """Remove our rules (Deferred); nothing to remove is fine."""


@implementer(IFirewall)
class NftFirewall:
    def __init__(self, reactor, table: str = "paradrop", netns: Optional[str] = None):
        self.reactor = reactor
        self.table = _table(table)
        self.netns = netns

    def apply(self, state: FirewallState) -> defer.Deferred:
        if state.table != self.table:
            return defer.fail(InvalidInput(f"table {state.table!r} is not {self.table!r}", field="table"))
        try:
            script = render(state)
        except InvalidInput:
            return defer.fail()
        return apply(self.reactor, script, netns=self.netns)

    def clear(self) -> defer.Deferred:
        return clear(self.reactor, self.table, netns=self.netns)


@implementer(IFirewall)
class MemoryFirewall:
    """The unit tier's firewall: validates like the real one and remembers the state it holds."""

    def __init__(self):
        self.state: Optional[FirewallState] = None

    def apply(self, state: FirewallState) -> defer.Deferred:
        try:
            render(state)
        except InvalidInput:
            return defer.fail()
        self.state = state
        return defer.succeed(None)

    def clear(self) -> defer.Deferred:
        self.state = None
        return defer.succeed(None)

