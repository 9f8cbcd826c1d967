"""The firewall's nft script: what it contains, that it only ever names our table, that hostile values
never reach it, and that applying it drives `nft -f -` with a bounded wait (the real nft runs in
tests/integration/test_firewall.py, inside namespaces)."""
import dataclasses
from ipaddress import IPv4Address, IPv4Network

import pytest
from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from pdserver.errors import InternalError, InvalidInput
from pdserver.sysconfig import firewall
from pdserver.sysconfig.firewall import ChuteNet, FirewallState, Forward

A = ChuteNet("alpha", "pda0001", IPv4Network("10.128.1.0/24"), IPv4Address("10.128.1.1"))
B = ChuteNet("beta", "pdb0002", IPv4Network("10.128.2.0/24"), IPv4Address("10.128.2.1"))
WEB = Forward("tcp", 8000, IPv4Address("10.128.1.2"), 80)


def state(**changes) -> FirewallState:
    return dataclasses.replace(FirewallState(wan="eth0", networks=(A, B), forwards=(WEB,)), **changes)


def rejected(value: FirewallState) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        firewall.render(value)
    return caught.value


def test_script_replaces_only_our_table_in_one_transaction():
    lines = firewall.render(state()).splitlines()
    assert lines[:3] == ["add table inet paradrop", "delete table inet paradrop", "table inet paradrop {"]
    tables = [line for line in lines if "table" in line]
    assert tables == lines[:3]  # nothing else (no flush ruleset, no other table) is ever named
    assert "ruleset" not in "\n".join(lines)


def test_rules_masquerade_isolate_forward_and_open_only_the_gateway_services():
    script = firewall.render(state())
    assert 'oifname "eth0" ip saddr @chute_subnets masquerade' in script
    assert "elements = { 10.128.1.0/24, 10.128.2.0/24 }" in script
    assert 'iifname "eth0" fib daddr type local tcp dport 8000 dnat ip to 10.128.1.2:80' in script
    assert 'iifname "pda0001" ip daddr 10.128.1.1 tcp dport 53 accept comment "alpha"' in script
    assert "8080" not in script and "8443" not in script  # chutes reach the API on their Docker network only
    assert 'iifname "pdb0002" ip daddr 10.128.2.1 udp dport 53 accept' in script
    assert 'iifname "pda0001" oifname "pda0001" accept' in script
    for hook, priority in (("input", "filter - 10"), ("forward", "filter - 10"),
                           ("prerouting", "dstnat - 10"), ("postrouting", "srcnat - 10")):
        assert f"hook {hook} priority {priority};" in script  # just before iptables-nft's (Docker's) chains


def chain(script: str, name: str) -> list:
    """The rule lines of one chain of a rendered script."""
    body = script.split(f"  chain {name} {{\n")[1].split("\n  }")[0]
    return [line.strip() for line in body.splitlines()]


def test_without_a_wan_chutes_reach_nothing_but_their_gateway():
    script = firewall.render(state(wan=None, forwards=()))
    assert chain(script, "from_chute") == [
        'iifname "pda0001" oifname "pda0001" accept', 'iifname "pdb0002" oifname "pdb0002" accept', "drop"]
    assert chain(script, "to_chute") == ["ct state established,related accept", "drop"]
    assert chain(script, "postrouting") == ["type nat hook postrouting priority srcnat - 10; policy accept;"]


def test_an_empty_state_still_renders_a_valid_table():
    script = firewall.render(FirewallState(wan=None))
    assert "set chute_bridges { type ifname; }" in script
    assert "elements" not in script


def test_rendering_is_deterministic_whatever_the_order():
    assert firewall.render(state()) == firewall.render(state(networks=(B, A)))
    second = Forward("udp", 5353, IPv4Address("10.128.2.9"), 53)
    assert firewall.render(state(forwards=(WEB, second))) == firewall.render(state(forwards=(second, WEB)))


def test_other_table_name_and_clear_script():
    assert firewall.render(state(table="pdtest_1")).startswith("add table inet pdtest_1\n")
    assert firewall.clear_script("pdtest_1") == "add table inet pdtest_1\ndelete table inet pdtest_1\n"
    with pytest.raises(InvalidInput):
        firewall.clear_script("x; flush ruleset")


HOSTILE_NAMES = ['pd"x', "pda\n", "pd\nflush", "pd x", "pd*", "pd;x", "pd{", "a" * 16, ".", "..", "", 5, None, "pd\\"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_bridge_names_are_rejected(name):
    net = dataclasses.replace(A, bridge=name)
    assert rejected(state(networks=(net, B))).field == "networks[0].bridge"


@pytest.mark.parametrize("name", [n for n in HOSTILE_NAMES if n is not None])
def test_hostile_wan_names_are_rejected(name):
    assert rejected(state(wan=name)).field == "wan"


@pytest.mark.parametrize("table", ["paradrop; flush ruleset", "paradrop\n", "p\nq", "", "1abc", "a" * 33,
                                   "inet paradrop", 7])
def test_hostile_table_names_are_rejected(table):
    assert rejected(state(table=table)).field == "table"


@pytest.mark.parametrize("chute", ['a" accept', "a\n", "a\nb", "A", "-a", "", "a" * 64, 3])
def test_hostile_chute_names_are_rejected(chute):
    assert rejected(state(networks=(dataclasses.replace(A, chute=chute),))).field == "networks[0].chute"


@pytest.mark.parametrize("field, value", [
    ("subnet", "10.128.1.0/24; flush ruleset"),
    ("subnet", IPv4Network("10.128.1.0/31")),
    ("gateway", "10.128.1.1 accept"),
    ("gateway", IPv4Address("10.128.9.1")),
    ("gateway", IPv4Address("10.128.1.0")),
    ("gateway", IPv4Address("10.128.1.255")),
])
def test_hostile_addresses_are_rejected(field, value):
    net = dataclasses.replace(A, **{field: value})
    if field == "subnet":
        net = dataclasses.replace(net, gateway=IPv4Address("10.128.1.1"))
    assert rejected(state(networks=(net,), forwards=())).field == f"networks[0].{field}"


@pytest.mark.parametrize("field, value", [
    ("protocol", "tcp dport 1 accept"), ("protocol", "icmp"), ("protocol", "TCP"),
    ("port", 0), ("port", 70000), ("port", "80"), ("to_port", True), ("to_port", -5),
    ("to_address", IPv4Address("192.168.1.10")),  # not a chute address: a forward into the node's LAN
    ("to_address", IPv4Address("10.128.1.1")),  # the gateway, i.e. the node itself
    ("to_address", IPv4Address("10.128.1.255")),
    ("to_address", "10.128.1.2:80; flush ruleset"),
])
def test_hostile_forwards_are_rejected(field, value):
    fwd = dataclasses.replace(WEB, **{field: value})
    assert rejected(state(forwards=(fwd,))).field == f"forwards[0].{field}"


def test_inconsistent_states_are_rejected():
    assert rejected(state(networks=(A, dataclasses.replace(B, bridge=A.bridge)))).field == "networks[1].bridge"
    assert rejected(state(wan=A.bridge)).field == "networks[0].bridge"
    overlapping = dataclasses.replace(B, subnet=IPv4Network("10.128.0.0/16"), gateway=IPv4Address("10.128.9.1"))
    assert rejected(state(networks=(A, overlapping))).field == "networks[1].subnet"
    assert rejected(state(forwards=(WEB, dataclasses.replace(WEB, to_port=81)))).field == "forwards[1].port"
    assert rejected(state(wan=None)).field == "forwards"
    assert rejected(state(networks=("10.0.0.0/8",))).field == "networks[0]"
    assert rejected(state(forwards=({"port": 1},))).field == "forwards[0]"


@pytest.mark.parametrize("netns", ["-n", "a b", "x/y", "", "a\n", "a" * 65])
def test_hostile_namespace_names_are_rejected(netns):
    with pytest.raises(InvalidInput):
        firewall.argv(netns)


def test_argv_reads_the_script_from_stdin_inside_the_namespace():
    args = firewall.argv("pdt-router-abc123")
    assert args[0].endswith("/ip") and args[1:4] == ["netns", "exec", "pdt-router-abc123"]
    assert args[4].endswith("/nft") and args[5:] == ["-f", "-"]
    assert firewall.argv()[1:] == ["-f", "-"]


class FakeTransport:
    def __init__(self):
        self.stdin, self.stdin_closed, self.signals = b"", False, []

    def write(self, data):
        self.stdin += data

    def closeStdin(self):
        self.stdin_closed = True

    def signalProcess(self, sig):
        self.signals.append(sig)


class ProcessClock(Clock):
    """A Clock that records spawned processes instead of running them."""

    def __init__(self):
        super().__init__()
        self.spawned = []

    def spawnProcess(self, proto, executable, args, env=None, **kwargs):
        transport = FakeTransport()
        self.spawned.append((proto, args, transport))
        proto.makeConnection(transport)
        return transport


PENDING = object()


def outcome(d):
    """What `d` fired with (a Failure for an error), or PENDING."""
    results = []
    d.addBoth(results.append)
    return results[0] if results else PENDING


def test_apply_feeds_the_script_and_fires_on_success():
    reactor = ProcessClock()
    d = firewall.apply(reactor, "add table inet paradrop\n", netns="pdt-router-abc123")
    proto, args, transport = reactor.spawned[0]
    assert transport.stdin == b"add table inet paradrop\n" and transport.stdin_closed
    assert args[-2:] == ["-f", "-"] and "pdt-router-abc123" in args
    assert not d.called
    proto.processEnded(Failure(error.ProcessDone(0)))
    assert outcome(d) is None and not reactor.getDelayedCalls()


def test_apply_reports_nfts_own_message():
    reactor = ProcessClock()
    d = firewall.apply(reactor, "bogus\n")
    proto = reactor.spawned[0][0]
    proto.errReceived(b"Error: syntax error, unexpected string\n")
    proto.processEnded(Failure(error.ProcessTerminated(exitCode=1)))
    failure = outcome(d)
    assert failure.check(InternalError) and "syntax error, unexpected string" in failure.value.message


def test_apply_kills_a_hung_nft_and_fails_in_bounded_time():
    reactor = ProcessClock()
    d = firewall.apply(reactor, "add table inet paradrop\n", timeout=10)
    proto, _, transport = reactor.spawned[0]
    reactor.advance(9.9)
    assert not d.called and transport.signals == []
    reactor.advance(0.2)
    assert transport.signals == ["KILL"]
    proto.processEnded(Failure(error.ProcessTerminated(signal=9)))
    failure = outcome(d)
    assert failure.check(InternalError) and "no answer in time" in failure.value.message


def test_clear_and_apply_refuse_hostile_values_before_spawning():
    reactor = ProcessClock()
    assert outcome(firewall.clear(reactor, table="a;b")).check(InvalidInput)
    assert outcome(firewall.apply(reactor, "x", netns="-n")).check(InvalidInput)
    assert outcome(firewall.NftFirewall(reactor).apply(state(wan='e"'))).check(InvalidInput)
    assert reactor.spawned == []


def test_nft_firewall_applies_the_rendered_state_and_clears_our_table():
    reactor = ProcessClock()
    fw = firewall.NftFirewall(reactor, netns="pdt-router-abc123")
    verifyObject(firewall.IFirewall, fw)
    fw.apply(state())
    fw.clear()
    assert [t.stdin.decode() for _, _, t in reactor.spawned] == [
        firewall.render(state()), firewall.clear_script("paradrop")]
    assert outcome(fw.apply(state(table="other"))).check(InvalidInput)


def test_memory_firewall_validates_like_the_real_one():
    fw = firewall.MemoryFirewall()
    verifyObject(firewall.IFirewall, fw)
    assert outcome(fw.apply(state(wan="bad name"))).check(InvalidInput) and fw.state is None
    fw.apply(state())
    assert fw.state == state()
    fw.clear()
    assert fw.state is None
