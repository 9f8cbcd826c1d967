"""Chute networks are safe against each other and against the node: two Wi-Fi AP chutes on two wired
"radios" (veths into client namespaces), a full node running its chute networks in a lab namespace.

A client of one chute cannot reach the other chute's network; a chute's container reaches the Edge API it
was given and nothing of the router namespace; a chute's token reads its own wireless context only; and a
deleted chute leaves no interface, firewall rule, process or file behind."""
import ipaddress
import json
import subprocess
import sys
from dataclasses import dataclass

import pytest
import requests

from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, unique, wait_change
from tests.integration.network_helpers import ap_chute, install, lease, set_radios
from tests import netns
from tests.netns import in_netns, ip, popen_in_netns

lab = netns.lab  # the fixture

pytestmark = pytest.mark.docker

# Accepts on every (address, port) given, writes the tag and closes: a banner that proves a connection.
BANNER = """
import selectors, socket, sys
tag, sel = sys.argv[1].encode(), selectors.DefaultSelector()
for spec in sys.argv[2:]:
    host, port = spec.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, int(port)))
    s.listen(16)
    sel.register(s, selectors.EVENT_READ)
print("ready", flush=True)
while True:
    for key, _ in sel.select():
        conn, _ = key.fileobj.accept()
        conn.sendall(tag + b"\\n")
        conn.close()
"""


class Banner:
    """A banner server inside a namespace, for reachability probes; stopped by ``close``."""

    def __init__(self, netns, tag, *listen):
        self.tag = tag
        self.proc = popen_in_netns(netns, sys.executable, "-c", BANNER, tag, *listen, stdout=subprocess.PIPE,
                                   text=True)
        assert self.proc.stdout.readline().strip() == "ready"

    def close(self):
        self.proc.kill()
        self.proc.wait()


def probe_from_netns(netns, address, port, timeout=1):
    """The banner at address:port as seen from a namespace ('' when nothing answers)."""
    return in_netns(netns, "busybox", "nc", "-w", str(timeout), str(address), str(port), stdin=subprocess.DEVNULL,
                    timeout=timeout + 10).stdout.strip()


def probe_from_container(container, address, port, timeout=1):
    return subprocess.run(["docker", "exec", container, "nc", "-w", str(timeout), str(address), str(port)],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout + 20).stdout.strip()


def container_env(container) -> dict:
    out = subprocess.run(["docker", "exec", container, "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def web_ap_chute(name, ssid, text):
    """A busybox chute with a Wi-Fi AP (wlan0) serving ``text`` over HTTP on 8000 (on every interface)."""
    return ap_chute(name, ssid, "secret-psk", ["sh", "-c", f"mkdir -p /tmp/www && echo {text} > /tmp/www/index.html "
                                                           "&& exec httpd -f -p 8000 -h /tmp/www"])


def install_ap_chute(session, url, name, ssid=None):
    install(session, url, web_ap_chute(name, ssid or name, name))
    [network] = session.get(f"{url}/api/v1/chutes/{name}/networks").json()
    return network


@dataclass
class Side:
    """One chute network as the test sees it: its chute, client namespace and device, addresses."""
    chute: str
    network: dict
    ap_device: str
    client: str
    client_device: str
    client_address: ipaddress.IPv4Address = None

    @property
    def subnet(self):
        return ipaddress.IPv4Network(self.network["subnet"])

    @property
    def gateway(self):
        return self.subnet.network_address + 1

    @property
    def chute_address(self):
        return self.subnet.network_address + 2

    @property
    def container(self):
        return container_of(self.chute, "main")


def http_from_netns(netns, address, port=8000):
    done = in_netns(netns, "busybox", "timeout", "3", "busybox", "wget", "-q", "-O", "-", f"http://{address}:{port}/",
                    timeout=20)
    return done.stdout.strip()


@pytest.fixture
def two_aps(lab, node_process_factory, tmp_path):
    """A node with two wired radios in the router namespace, a Wi-Fi AP chute on each, a client with a lease
    on each."""
    router = lab.netns("router")
    sides = []
    for role in ("a", "b"):
        client = lab.netns(f"cl{role}")
        ap_device, client_device = lab.veth(f"ap{role}", peer_netns=client, host_netns=router)
        sides.append(Side(unique(f"ap{role}"), {}, ap_device, client, client_device))
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    set_radios(session, url, *(s.ap_device for s in sides))
    for side in sides:
        side.network = install_ap_chute(session, url, side.chute)
        side.client_address = lease(side.client, side.client_device, tmp_path)
        assert side.client_address in side.subnet, (side.client_address, side.subnet)
    assert sides[0].subnet != sides[1].subnet
    return router, node, session, url, sides


def test_a_client_reaches_its_own_chute_and_nothing_of_another_chute(two_aps):
    router, node, session, url, (a, b) = two_aps
    banner = Banner(b.client, "client-b", "0.0.0.0:7000")
    try:
        # its own chute answers, over its own network: the network works
        assert http_from_netns(a.client, a.chute_address) == a.chute
        assert http_from_netns(b.client, b.chute_address) == b.chute
        # B's client is there (its own chute reaches it), but not for A's client
        assert probe_from_container(b.container, b.client_address, 7000) == "client-b"
        assert probe_from_netns(a.client, b.client_address, 7000) == ""
        assert http_from_netns(a.client, b.chute_address) == ""
        assert in_netns(a.client, "ping", "-c", "1", "-W", "1", str(b.gateway)).returncode != 0
        assert in_netns(a.client, "ping", "-c", "1", "-W", "1", str(b.chute_address)).returncode != 0
        # and the other way round
        assert http_from_netns(b.client, a.chute_address) == ""
    finally:
        banner.close()


def test_a_chute_reaches_the_edge_api_it_was_given_and_nothing_else_of_the_router(two_aps):
    router, node, session, url, (a, b) = two_aps
    env = container_env(a.container)
    api_port = int(env["PARADROP_API_URL"].split(":")[2].split("/")[0])
    # Listeners in the router namespace: another port on every address, the API's port on B's gateway.
    router_banner = Banner(router, "router", "0.0.0.0:7001", f"{b.gateway}:{api_port}")
    client_banner = Banner(b.client, "client-b", "0.0.0.0:7000")
    try:
        assert probe_from_netns(router, "127.0.0.1", 7001) == "router"
        assert probe_from_netns(router, b.gateway, api_port) == "router"
        health = subprocess.run(["docker", "exec", a.container, "timeout", "5", "wget", "-q", "-O", "-",
                                 env["PARADROP_API_URL"] + "/health"], capture_output=True, text=True)
        assert health.returncode == 0, health.stderr
        # a chute that routes B's subnet through its own gateway (as a hostile one with NET_ADMIN could)
        pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", a.container], capture_output=True,
                             text=True, check=True).stdout.strip()
        subprocess.run(["nsenter", "-t", pid, "-n", "ip", "route", "add", str(b.subnet), "via", str(a.gateway),
                        "dev", "wlan0"], check=True)
        assert "NXDOMAIN" in dns_from_container(a.container, a.gateway)  # its own DNS server answers
        assert "NXDOMAIN" not in dns_from_container(a.container, b.gateway)
        for address, port in ((a.gateway, 7001), (b.gateway, 7001), (b.gateway, api_port),
                              (b.client_address, 7000)):
            assert probe_from_container(a.container, address, port) == "", (address, port)
        assert http_from_container(a.container, b.chute_address) == ""
        ping = subprocess.run(["docker", "exec", a.container, "ping", "-c", "1", "-W", "1", str(a.gateway)],
                              capture_output=True)
        assert ping.returncode != 0
    finally:
        router_banner.close()
        client_banner.close()


def dns_from_container(container, server):
    return subprocess.run(["docker", "exec", container, "timeout", "3", "nslookup", "no-such-name", str(server)],
                          capture_output=True, text=True, timeout=30).stdout


def http_from_container(container, address, port=8000):
    done = subprocess.run(["docker", "exec", container, "timeout", "3", "wget", "-q", "-O", "-",
                           f"http://{address}:{port}/"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip()


def api_from_container(container, env, path, method="GET", body=None):
    """(status, body) of an Edge API call made inside the chute's container with its own token."""
    argv = ["docker", "exec", container, "timeout", "5", "wget", "-S", "-q", "-O", "-",
            "--header", f"Authorization: Bearer {env['PARADROP_API_TOKEN']}"]
    if body is not None:
        argv += ["--header", "Content-Type: application/json", "--post-data", json.dumps(body)]
    done = subprocess.run(argv + [env["PARADROP_API_URL"] + path], capture_output=True, text=True, timeout=30)
    status = [line.split()[1] for line in done.stderr.splitlines() if line.strip().startswith("HTTP/1.1 ")]
    assert status, done.stderr
    return int(status[-1]), done.stdout


def test_a_chute_token_reads_its_own_wireless_context_only(two_aps):
    router, node, session, url, (a, b) = two_aps
    env = container_env(a.container)

    status, text = api_from_container(a.container, env, f"/chutes/{a.chute}/networks")
    assert status == 200 and [n["subnet"] for n in json.loads(text)] == [a.network["subnet"]]
    status, text = api_from_container(a.container, env, f"/chutes/{a.chute}/networks/wlan0/leases")
    assert status == 200 and [entry["ip_addr"] for entry in json.loads(text)] == [str(a.client_address)]
    status, text = api_from_container(a.container, env, f"/chutes/{a.chute}/networks/wlan0/stations")
    assert status == 200 and isinstance(json.loads(text), list)
    status, text = api_from_container(a.container, env, f"/chutes/{a.chute}/networks/wlan0/hostapd_status")
    assert status == 200 and json.loads(text)["state"] == "ENABLED"

    for path in (f"/chutes/{b.chute}/networks", f"/chutes/{b.chute}/networks/wlan0/leases",
                 f"/chutes/{b.chute}/networks/wlan0/stations", f"/chutes/{b.chute}/networks/wlan0/hostapd_status",
                 "/config/hostconfig", "/network/devices", "/audit", "/config/settings"):
        assert api_from_container(a.container, env, path)[0] == 403, path
    # nor change B's access point (the same calls with an admin's session would be accepted)
    own = {"Authorization": f"Bearer {env['PARADROP_API_TOKEN']}"}
    base = f"{url}/api/v1/chutes/{b.chute}/networks/wlan0"
    assert requests.put(f"{base}/ssid", json={"ssid": "taken"}, headers=own, timeout=10).status_code == 403
    assert requests.delete(f"{base}/stations/02:00:00:00:00:01", headers=own, timeout=10).status_code == 403
    assert session.get(f"{base}/ssid").json() == {"ssid": b.chute}
    # B's leases are there for an admin: the 403 is the token's, not an empty network's
    assert session.get(f"{url}/api/v1/chutes/{b.chute}/networks/wlan0/leases").json()[0]["ip_addr"] == str(
        b.client_address)


def nft_ruleset(netns):
    return ip("netns", "exec", netns, "nft", "list", "ruleset", check=False).stdout


def router_leftovers(router, node, side):
    """What of ``side``'s network is still in the router namespace and the state dir."""
    links = ip("-o", "link", "show", netns=router).stdout
    ruleset = nft_ruleset(router)
    processes = [open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
                 for pid in ip("netns", "pids", router).stdout.split()]
    files = [p.name for p in (node.state_dir / "sysconfig").iterdir()]
    return {"links": [line.split()[1] for line in links.splitlines() if side.network["bridge"] in line
                      or f"master {side.network['bridge']}" in line],
            "nft": [line.strip() for line in ruleset.splitlines()
                    if side.network["bridge"] in line or side.chute in line or side.network["subnet"] in line],
            "processes": [p for p in processes if side.network["bridge"] in p],
            "files": [f for f in files if side.network["bridge"] in f]}


def test_deleting_a_chute_leaves_nothing_of_its_network_and_the_other_chute_keeps_working(two_aps, tmp_path):
    router, node, session, url, (a, b) = two_aps
    before = router_leftovers(router, node, a)
    assert before["links"] and before["nft"] and len(before["processes"]) == 2, before
    assert f"{a.network['bridge']}.leases" in before["files"], before

    answer = session.delete(f"{url}/api/v1/chutes/{a.chute}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    assert router_leftovers(router, node, a) == {"links": [], "nft": [], "processes": [], "files": []}
    assert "master" not in ip("-o", "link", "show", a.ap_device, netns=router).stdout
    assert not list((node.state_dir / "run" / "hostapd").glob(f"{a.ap_device}*"))

    # the other chute is untouched: its network serves a new lease and stays isolated
    assert len(router_leftovers(router, node, b)["processes"]) == 2
    assert lease(b.client, b.client_device, tmp_path) in b.subnet
    assert http_from_netns(b.client, b.chute_address) == b.chute

    answer = session.delete(f"{url}/api/v1/chutes/{b.chute}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    assert router_leftovers(router, node, b) == {"links": [], "nft": [], "processes": [], "files": []}
    assert ip("netns", "pids", router).stdout.split() == []
    assert list((node.state_dir / "sysconfig").iterdir()) == []
    # A container's veth goes with its network namespace, which the kernel destroys asynchronously.
    expected = sorted(["lo", a.ap_device, b.ap_device])
    try:
        wait_until(lambda: sorted(router_links(router)) == expected, timeout=30,
                   message="only the lab's links in the router namespace")
    except AssertionError:
        raise AssertionError(f"links left in the router namespace: {sorted(router_links(router))}") from None


def router_links(router):
    return [line.split()[1].split("@")[0].rstrip(":") for line in ip("-o", "link", "show", netns=router)
            .stdout.splitlines()]
