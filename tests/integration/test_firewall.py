"""The firewall on the real nft, entirely inside namespaces this test makes (tests/netns.py).

A "router" namespace holds two chute bridges, each with a client namespace behind a veth, and a WAN veth to
a "wan" namespace (which has no route back to the chute subnets: only NAT brings replies home). The router
also carries Docker-like iptables-nft rules (a published-port DNAT, a masquerade of Docker's subnet, an
accept-everything FORWARD rule) so the tests prove our table coexists with them as it must on a node.
Every check is a real connection; each "cannot" is shown to work before the firewall is applied.
"""
import subprocess
import sys
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest
import pytest_twisted
from twisted.internet import reactor

from pdserver.errors import InternalError
from pdserver.sysconfig import firewall
from pdserver.sysconfig.firewall import ChuteNet, FirewallState, Forward
from tests.conftest import wait_until
from tests import netns as netns_helpers
from tests.netns import in_netns, ip, popen_in_netns

lab = netns_helpers.lab  # the fixture: namespaces and links removed after each test

API_PORT = 8080
WAN_ROUTER, WAN_PEER = IPv4Interface("203.0.113.2/24"), IPv4Interface("203.0.113.1/24")
NETS = {"a": IPv4Interface("10.128.1.1/24"), "b": IPv4Interface("10.128.2.1/24")}

# Answers every connection (or datagram) with the address it came from, so a client sees NAT at work.
SERVER = """
import socket, sys
proto, port = sys.argv[1], int(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port))
if proto == "tcp":
    s.listen(16)
print("ready", flush=True)
while True:
    if proto == "tcp":
        c, peer = s.accept()
        c.sendall(peer[0].encode())
        c.close()
    else:
        data, peer = s.recvfrom(64)
        s.sendto(peer[0].encode(), peer)
"""
CLIENT = """
import socket, sys
proto, host, port, timeout, sport = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM)
s.settimeout(timeout)
if sport:
    s.bind(("0.0.0.0", sport))
try:
    if proto == "tcp":
        s.connect((host, port))
        print(s.recv(64).decode())
    else:
        s.sendto(b"?", (host, port))
        print(s.recvfrom(64)[0].decode())
except OSError as e:
    print(type(e).__name__)
    sys.exit(1)
"""
NEGATIVE_WAIT = 1.0  # a dropped SYN gets no answer at all: one second of silence is the proof


class Router:
    """The namespaces, bridges and servers of one test."""

    def __init__(self, made):
        self.router, self.wan = made.netns("router"), made.netns("wan")
        self.clients, self.bridges = {}, {}
        self.servers = []
        in_netns(self.router, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
        wan_router, wan_peer = made.veth("wan", peer_netns=self.wan, host_netns=self.router)
        self.wan_if = wan_router
        ip("addr", "add", str(WAN_ROUTER), "dev", wan_router, netns=self.router)
        ip("addr", "add", str(WAN_PEER), "dev", wan_peer, netns=self.wan)
        for name, gateway in NETS.items():
            client = made.netns(f"chute{name}")
            bridge = f"pd{name}{made.tag}"
            ip("link", "add", bridge, "type", "bridge", netns=self.router)
            ip("addr", "add", str(gateway), "dev", bridge, netns=self.router)
            ip("link", "set", bridge, "up", netns=self.router)
            host_end, inner = made.veth(f"c{name}", peer_netns=client, host_netns=self.router)
            ip("link", "set", host_end, "master", bridge, netns=self.router)
            ip("addr", "add", f"{gateway.ip + 1}/{gateway.network.prefixlen}", "dev", inner, netns=client)
            ip("route", "add", "default", "via", str(gateway.ip), netns=client)
            self.clients[name], self.bridges[name] = client, bridge
        self.docker_like_rules()

    def docker_like_rules(self):
        """What Docker 20.10 (iptables-nft) puts in a node's namespace, plus a FORWARD rule accepting all."""
        for rule in (["-t", "nat", "-N", "DOCKER"],
                     ["-t", "nat", "-A", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "DOCKER"],
                     ["-t", "nat", "-A", "DOCKER", "!", "-i", "docker0", "-p", "tcp", "--dport", "8000",
                      "-j", "DNAT", "--to-destination", "172.17.0.2:80"],
                     ["-t", "nat", "-A", "POSTROUTING", "-s", "172.17.0.0/16", "!", "-o", "docker0",
                      "-j", "MASQUERADE"],
                     ["-N", "DOCKER-USER"], ["-A", "FORWARD", "-j", "DOCKER-USER"],
                     ["-A", "FORWARD", "-j", "ACCEPT"]):
            in_netns(self.router, "iptables-nft", *rule, check=True)

    def state(self, **kwargs) -> FirewallState:
        networks = tuple(ChuteNet(f"chute-{n}", self.bridges[n], NETS[n].network, NETS[n].ip) for n in NETS)
        kwargs.setdefault("forwards", (Forward("tcp", 8000, NETS["a"].ip + 1, 80),))
        return FirewallState(wan=self.wan_if, networks=networks, **kwargs)

    def serve(self, netns: str, proto: str, port: int) -> None:
        proc = popen_in_netns(netns, sys.executable, "-c", SERVER, proto, str(port),
                              stdout=subprocess.PIPE, text=True)
        self.servers.append(proc)
        assert proc.stdout.readline().strip() == "ready", f"server {proto}/{port} in {netns} did not start"

    def probe(self, netns: str, proto: str, host, port: int, timeout: float = NEGATIVE_WAIT, sport: int = 0):
        """What the server at host:port saw as our address, or None when nothing answered."""
        done = in_netns(netns, sys.executable, "-c", CLIENT, proto, str(host), str(port), str(timeout), str(sport),
                        timeout=timeout + 10)
        return done.stdout.strip() if done.returncode == 0 else None

    def reaches(self, netns, proto, host, port, **kwargs) -> str:
        """Waits (bounded) for an answer: the first packet may wait for ARP."""
        return wait_until(lambda: self.probe(netns, proto, host, port, **kwargs), timeout=10,
                          message=f"{proto} {host}:{port} from {netns}")

    def nft(self, *args: str) -> str:
        return in_netns(self.router, "nft", *args, check=True).stdout

    def iptables_rules(self) -> str:
        return in_netns(self.router, "iptables-nft-save", check=True).stdout

    def close(self):
        for proc in self.servers:
            proc.kill()
            proc.wait()


@pytest.fixture
def node(lab):
    made = Router(lab)
    a, b = made.clients["a"], made.clients["b"]
    try:
        for netns, proto, port in ((made.wan, "tcp", 80), (a, "tcp", 80), (b, "tcp", 80),
                                   (made.router, "tcp", API_PORT), (made.router, "tcp", 9999),
                                   (made.router, "udp", 53), (made.router, "udp", 67), (made.router, "udp", 5000)):
            made.serve(netns, proto, port)
        yield made
    finally:
        made.close()


GW_A, GW_B = NETS["a"].ip, NETS["b"].ip
HOST_A, HOST_B = NETS["a"].ip + 1, NETS["b"].ip + 1


@pytest_twisted.ensureDeferred
async def test_nat_isolation_and_only_dhcp_and_dns_of_the_gateway(node):
    a, b = node.clients["a"], node.clients["b"]
    # Without our table: the chutes reach each other and every port of the router, and nothing is NATed.
    assert node.reaches(a, "tcp", HOST_B, 80) == str(HOST_A)
    assert node.reaches(a, "tcp", GW_A, 9999) == str(HOST_A)
    assert node.reaches(a, "tcp", GW_A, API_PORT) == str(HOST_A)
    assert node.probe(a, "tcp", WAN_PEER.ip, 80) is None  # the WAN has no route back to 10.128/9

    await firewall.apply(reactor, firewall.render(node.state()), netns=node.router)

    assert node.reaches(a, "tcp", WAN_PEER.ip, 80) == str(WAN_ROUTER.ip)  # masqueraded to the WAN address
    assert node.reaches(b, "tcp", WAN_PEER.ip, 80) == str(WAN_ROUTER.ip)
    assert node.probe(a, "tcp", HOST_B, 80) is None
    assert node.probe(b, "tcp", HOST_A, 80) is None
    # The Edge API is given to chutes on their Docker network: not on a chute network's gateway.
    assert node.probe(a, "tcp", GW_A, API_PORT) is None
    assert node.probe(b, "tcp", GW_B, API_PORT) is None
    assert node.probe(a, "tcp", GW_A, 9999) is None  # another port of the router
    assert node.probe(a, "tcp", GW_B, API_PORT) is None  # the API, but on the other chute's gateway
    assert node.probe(a, "tcp", WAN_ROUTER.ip, API_PORT) is None  # the API on the node's WAN address
    assert node.reaches(a, "udp", GW_A, 53) == str(HOST_A)  # DNS
    assert node.reaches(a, "udp", GW_A, 67, sport=68) == str(HOST_A)  # DHCP (client port 68)
    assert node.probe(a, "udp", GW_A, 5000) is None
    assert node.probe(a, "udp", GW_B, 53) is None


@pytest_twisted.ensureDeferred
async def test_port_forward_from_the_wan_reaches_the_chute_before_dockers_dnat(node):
    # Docker's rule publishes tcp/8000 to 172.17.0.2 (absent): without our table nothing answers.
    assert node.probe(node.wan, "tcp", WAN_ROUTER.ip, 8000) is None
    await firewall.apply(reactor, firewall.render(node.state()), netns=node.router)
    # The chute's server sees the WAN client itself (no source NAT on the way in).
    assert node.reaches(node.wan, "tcp", WAN_ROUTER.ip, 8000) == str(WAN_PEER.ip)
    # Only the forwarded port is open from the WAN: the chute's addresses themselves are not routed to.
    in_netns(node.wan, "ip", "route", "add", "10.128.0.0/9", "via", str(WAN_ROUTER.ip), check=True)
    assert node.probe(node.wan, "tcp", HOST_A, 80) is None


@pytest_twisted.ensureDeferred
async def test_reapply_is_idempotent_and_a_rejected_script_keeps_the_rules(node):
    script = firewall.render(node.state())
    await firewall.apply(reactor, script, netns=node.router)
    listed = node.nft("list", "table", "inet", "paradrop")
    await firewall.apply(reactor, script, netns=node.router)
    assert node.nft("list", "table", "inet", "paradrop") == listed
    assert node.nft("list", "tables").split("\n").count("table inet paradrop") == 1

    # The kernel refuses the last command: the delete and re-add of our table before it are rolled back too.
    changed = firewall.render(node.state(forwards=()))
    with pytest.raises(InternalError, match="No such file or directory"):
        await firewall.apply(reactor, changed + "delete table inet pdabsent\n", netns=node.router)
    assert node.nft("list", "table", "inet", "paradrop") == listed
    with pytest.raises(InternalError, match="syntax error"):
        await firewall.apply(reactor, changed.replace("drop", "drop }", 1), netns=node.router)
    assert node.nft("list", "table", "inet", "paradrop") == listed
    assert node.probe(node.clients["a"], "tcp", HOST_B, 80) is None


@pytest_twisted.ensureDeferred
async def test_clear_leaves_no_table_of_ours_and_dockers_rules_as_they_were(node):
    docker_before = node.iptables_rules()
    await firewall.apply(reactor, firewall.render(node.state()), netns=node.router)
    assert node.probe(node.clients["a"], "tcp", HOST_B, 80) is None
    await firewall.clear(reactor, netns=node.router)
    assert "paradrop" not in node.nft("list", "tables")
    assert node.reaches(node.clients["a"], "tcp", HOST_B, 80) == str(HOST_A)
    await firewall.clear(reactor, netns=node.router)  # nothing to remove is fine

    def without_counters(text):
        return [line for line in text.splitlines() if not line.startswith("#")]
    assert without_counters(node.iptables_rules()) == without_counters(docker_before)


@pytest_twisted.ensureDeferred
async def test_names_at_the_edge_of_what_is_allowed_load_in_nft(node):
    """The validator's accepted alphabet is really accepted by nft (a too strict check would break nodes)."""
    odd = ChuteNet("a-9", "x_y.z-0123456789"[:15], IPv4Network("10.200.0.0/30"), IPv4Address("10.200.0.1"))
    state = FirewallState(wan="w-1.2_3", networks=(odd,), table="T_9")
    await firewall.apply(reactor, firewall.render(state), netns=node.router)
    assert 'iifname "x_y.z-012345678"' in node.nft("list", "table", "inet", "T_9")
    await firewall.clear(reactor, table="T_9", netns=node.router)
    assert "T_9" not in node.nft("list", "tables")
