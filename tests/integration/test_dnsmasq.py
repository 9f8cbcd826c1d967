"""The real dnsmasq, run from render()/argv(), serves DHCP and DNS to clients in namespaces.

A "router" namespace holds one end of a veth with the network's address and our dnsmasq on it; a client
namespace on the other end asks with busybox udhcpc, as a device on a chute's network would. Everything
lives in namespaces the test makes (tests/netns.py) and is removed afterwards.
"""
import ipaddress
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pdserver.sysconfig import dnsmasq
from tests.conftest import REPO, wait_until
from tests import netns
from tests.netns import in_netns, ip, popen_in_netns

lab = netns.lab  # the fixture

UDHCPC_SCRIPT = """#!/bin/sh
[ "$1" = bound ] && env > "{out}"
exit 0
"""


class Router:
    """dnsmasq children started in the router namespace; all stopped at the end of the test."""

    def __init__(self, netns: str, workdir: Path):
        self.netns = netns
        self.workdir = workdir
        self._children = []

    def serve(self, cfg: dnsmasq.DhcpConfig) -> subprocess.Popen:
        """Write cfg's config, spawn dnsmasq with argv() inside the namespace, wait until DHCP is up."""
        conf = self.workdir / f"{cfg.interface}.conf"
        conf.write_text(dnsmasq.render(cfg))
        log = self.workdir / f"{cfg.interface}.log"
        with open(log, "wb") as out:
            child = popen_in_netns(self.netns, *dnsmasq.argv(conf), stdout=out, stderr=subprocess.STDOUT)
        self.adopt(child)

        def ready():
            assert child.poll() is None, f"dnsmasq exited {child.returncode}: {log.read_text()}"
            return "DHCP, IP range" in log.read_text()
        wait_until(ready, timeout=10, message="dnsmasq to serve DHCP")
        return child

    def adopt(self, child: subprocess.Popen) -> None:
        """Stop `child` with the others at the end of the test."""
        self._children.append(child)

    def close(self):
        for child in self._children:
            child.terminate()
        for child in self._children:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@pytest.fixture
def router(lab, tmp_path):
    made = Router(lab.netns("router"), tmp_path)
    try:
        yield made
    finally:
        made.close()


def address(router_ns: str, link: str, interface: str) -> None:
    ip("addr", "add", interface, "dev", link, netns=router_ns)


def vlan(router: Router, netns: str, parent: str, vlan_id: int) -> str:
    """The 802.1Q sub-interface `parent.vlan_id`, up: the kernel's, or where the kernel has no VLAN support
    (these machines: CONFIG_VLAN_8021Q is off), tests/vlan_shim.py's, which tags and untags in user space."""
    name = f"{parent}.{vlan_id}"
    made = ip("link", "add", "link", parent, "name", name, "type", "vlan", "id", str(vlan_id), netns=netns,
              check=False)
    if made.returncode != 0:
        shim = popen_in_netns(netns, sys.executable, "-m", "tests.vlan_shim", parent, str(vlan_id),
                              stdout=subprocess.PIPE, cwd=REPO)
        router.adopt(shim)
        assert shim.stdout.readline() == b"ready\n", f"the VLAN shim on {parent} failed"
    ip("link", "set", name, "up", netns=netns)
    return name


def udhcpc(netns: str, interface: str, workdir: Path, hostname: str = "client", tries: int = 10) -> dict:
    """What busybox udhcpc was handed (its script's environment: ip, router, dns, lease, ...); {} when it got
    no lease after `tries` discovers one second apart."""
    out = workdir / f"udhcpc-{netns}-{interface}.env"
    script = workdir / "udhcpc.sh"
    script.write_text(UDHCPC_SCRIPT.format(out=out))
    script.chmod(0o755)
    done = in_netns(netns, "busybox", "udhcpc", "-i", interface, "-n", "-q", "-s", str(script),
                    "-t", str(tries), "-T", "1", "-x", f"hostname:{hostname}", timeout=tries + 20)
    if done.returncode != 0:
        return {}
    return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


def mac_of(netns: str, link: str) -> str:
    return re.search(r"link/ether ([0-9a-f:]{17})", ip("link", "show", link, netns=netns).stdout).group(1)


def config(interface: str, network: str, workdir: Path, **kwargs) -> dnsmasq.DhcpConfig:
    return dnsmasq.DhcpConfig(interface=interface, address=ipaddress.IPv4Interface(network),
                              lease_file=workdir / f"{interface}.leases", **kwargs)


def test_client_gets_a_lease_in_paradrops_range_and_it_shows_in_the_lease_file(lab, router, tmp_path):
    client_ns = lab.netns("client")
    router_end, client_end = lab.veth("dhcp", peer_netns=client_ns, host_netns=router.netns)
    address(router.netns, router_end, "10.201.7.1/24")
    cfg = config(router_end, "10.201.7.1/24", tmp_path, start=10, limit=3, leasetime="5m")
    router.serve(cfg)

    got = udhcpc(client_ns, client_end, tmp_path, hostname="sensor1")

    assert got, "the client got no lease"
    assert ipaddress.IPv4Address(got["ip"]) in {ipaddress.IPv4Address(f"10.201.7.{n}") for n in (10, 11, 12)}
    assert got["router"] == "10.201.7.1" and got["dns"].split() == ["10.201.7.1"]
    assert got["subnet"] == "255.255.255.0" and got["lease"] == "300"
    leases = wait_until(lambda: dnsmasq.thd_read_leases(cfg.lease_file), timeout=5, message="the lease file")
    assert [(lease.ip, lease.mac, lease.hostname) for lease in leases] == [
        (got["ip"], mac_of(client_ns, client_end), "sensor1")]


def test_lease_through_a_vlan_tagged_on_both_sides_and_none_untagged(lab, router, tmp_path):
    client_ns = lab.netns("client")
    router_end, client_end = lab.veth("vlan", peer_netns=client_ns, host_netns=router.netns)
    router_vlan = vlan(router, router.netns, router_end, 42)
    client_vlan = vlan(router, client_ns, client_end, 42)
    address(router.netns, router_vlan, "10.201.42.1/24")
    cfg = config(router_vlan, "10.201.42.1/24", tmp_path, start=3, limit=250)
    router.serve(cfg)

    got = udhcpc(client_ns, client_vlan, tmp_path)

    assert got and ipaddress.IPv4Address(got["ip"]) in ipaddress.IPv4Network("10.201.42.0/24")
    leases = wait_until(lambda: dnsmasq.thd_read_leases(cfg.lease_file), timeout=5, message="the lease file")
    assert [(lease.ip, lease.mac) for lease in leases] == [(got["ip"], mac_of(client_ns, client_vlan))]
    # The same wire without the tag reaches no DHCP server: the network is the VLAN's alone.
    assert udhcpc(client_ns, client_end, tmp_path, tries=2) == {}


def test_dns_answers_a_dhcp_clients_name_in_the_networks_domain(lab, router, tmp_path):
    client_ns = lab.netns("client")
    router_end, client_end = lab.veth("dns", peer_netns=client_ns, host_netns=router.netns)
    address(router.netns, router_end, "10.201.9.1/24")
    router.serve(config(router_end, "10.201.9.1/24", tmp_path, domain="chute.lan"))
    got = udhcpc(client_ns, client_end, tmp_path, hostname="camera")
    assert got, "the client got no lease"
    ip("addr", "add", f"{got['ip']}/24", "dev", client_end, netns=client_ns)

    answer = in_netns(client_ns, "busybox", "nslookup", "camera.chute.lan", got["dns"], timeout=20)

    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert re.search(rf"Name:\s*camera\.chute\.lan\s+Address:\s*{re.escape(got['ip'])}\b", answer.stdout), \
        answer.stdout
    missing = in_netns(client_ns, "busybox", "nslookup", "nobody.chute.lan", got["dns"], timeout=20)
    assert "NXDOMAIN" in missing.stdout + missing.stderr


def test_two_networks_in_one_namespace_each_serve_their_own_range(lab, router, tmp_path):
    """One dnsmasq per chute network on one host: they must not fight over ports or loopback."""
    got = []
    for n in (1, 2):
        client_ns = lab.netns(f"cl{n}")
        router_end, client_end = lab.veth(f"two{n}", peer_netns=client_ns, host_netns=router.netns)
        address(router.netns, router_end, f"10.202.{n}.1/24")
        router.serve(config(router_end, f"10.202.{n}.1/24", tmp_path))
        got.append(udhcpc(client_ns, client_end, tmp_path))

    assert [ipaddress.IPv4Address(g.get("ip", "0.0.0.0")) in ipaddress.IPv4Network(f"10.202.{n}.0/24")
            for n, g in zip((1, 2), got)] == [True, True]


def test_a_hostile_client_hostname_never_breaks_the_lease_file(lab, router, tmp_path):
    client_ns = lab.netns("client")
    router_end, client_end = lab.veth("host", peer_netns=client_ns, host_netns=router.netns)
    address(router.netns, router_end, "10.201.11.1/24")
    cfg = config(router_end, "10.201.11.1/24", tmp_path)
    router.serve(cfg)

    got = udhcpc(client_ns, client_end, tmp_path, hostname="evil\n1 00:11:22:33:44:55 10.201.11.9 x *")

    assert got, "the client got no lease"
    leases = wait_until(lambda: dnsmasq.thd_read_leases(cfg.lease_file), timeout=5, message="the lease file")
    assert [(lease.ip, lease.mac, lease.hostname) for lease in leases] == [
        (got["ip"], mac_of(client_ns, client_end), None)]


@pytest.mark.parametrize("kwargs", [
    {},
    {"start": 3, "limit": 1, "leasetime": "infinite", "dns": ("192.0.2.53", "198.51.100.53"), "domain": "a-b.c"},
    {"leasetime": "3600", "domain": "x" * 63},
])
def test_dnsmasq_accepts_every_rendered_config(tmp_path, kwargs):
    conf = tmp_path / "check.conf"
    conf.write_text(dnsmasq.render(config("eth0", "10.203.0.1/24", tmp_path, **kwargs)))
    checked = subprocess.run(dnsmasq.argv(conf) + ["--test"], capture_output=True, text=True, timeout=10)
    assert checked.returncode == 0 and "syntax check OK" in checked.stdout + checked.stderr, checked.stderr
