"""Docker's FORWARD policy DROP, reproduced inside a namespace the test makes (the chains Docker 20.10 writes):
chute traffic to the WAN is dropped until the node adds its accept rules to DOCKER-USER, and the node adds and
removes only its own rules there; where there is no DOCKER-USER nothing is written and the status says so."""
from ipaddress import IPv4Address, IPv4Interface, IPv4Network

import pytest_twisted
from twisted.internet import reactor, threads

from pdserver.node import run_in_thread
from pdserver.sysconfig import firewall, netlink
from pdserver.sysconfig.docker_forward import DockerForward
from pdserver.sysconfig.host_network import HostNetwork
from pdserver.sysconfig.supervisor import Supervisor
from tests import netns
from tests.netns import in_netns, ip

lab = netns.lab  # the fixture

DOCKER_CHAINS = (("-N", "DOCKER-USER"), ("-A", "DOCKER-USER", "-j", "RETURN"), ("-A", "FORWARD", "-j", "DOCKER-USER"),
                 ("-P", "FORWARD", "DROP"))
OWNERS_RULE = ("-I", "DOCKER-USER", "-s", "198.51.100.0/24", "-j", "DROP")


def iptables(netns, *args):
    done = in_netns(netns, "iptables", "-w", "5", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def router_with_a_chute_network(lab):
    """router: WAN uplink 192.0.2.10 (default via the wan namespace's 192.0.2.1), bridge pd<tag> 10.80.0.1/24
    with a client namespace (10.80.0.2) on it; forwarding on."""
    router, wan, client = lab.netns("router"), lab.netns("wan"), lab.netns("client")
    uplink, far = lab.veth("up", peer_netns=wan, host_netns=router)
    ip("addr", "add", "192.0.2.10/24", "dev", uplink, netns=router)
    ip("addr", "add", "192.0.2.1/24", "dev", far, netns=wan)
    ip("route", "add", "default", "via", "192.0.2.1", netns=router)
    bridge = f"pd{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.80.0.1/24"), netns=router)
    port, inside = lab.veth("cl", peer_netns=client, host_netns=router)
    netlink.thd_set_master(port, bridge, netns=router)
    ip("addr", "add", "10.80.0.2/24", "dev", inside, netns=client)
    ip("route", "add", "default", "via", "10.80.0.1", netns=client)
    in_netns(router, "sysctl", "-qw", "net.ipv4.ip_forward=1", check=True)
    return router, client, uplink, bridge


def reaches_wan(client) -> bool:
    return in_netns(client, "ping", "-c", "1", "-W", "1", "192.0.2.1").returncode == 0


def chute_net(bridge):
    return {"chute": "demo", "bridge": bridge, "subnet": "10.80.0.0/24", "gateway": "10.80.0.1"}


@pytest_twisted.ensureDeferred
async def test_chutes_reach_the_wan_through_dockers_drop_policy_with_rules_of_ours_only(lab, tmp_path):
    router, client, uplink, bridge = await threads.deferToThread(router_with_a_chute_network, lab)
    for args in DOCKER_CHAINS + (OWNERS_RULE,):
        iptables(router, *args)
    before = iptables(router, "-S", "DOCKER-USER")
    # Our nftables table alone: Docker's policy drops the chute's traffic to the WAN.
    await firewall.NftFirewall(reactor, netns=router).apply(firewall.FirewallState(
        wan=uplink, networks=(firewall.ChuteNet("demo", bridge, IPv4Network("10.80.0.0/24"),
                                                IPv4Address("10.80.0.1")),)))
    assert not await threads.deferToThread(reaches_wan, client)

    forward = DockerForward(reactor, router)
    forward.startService()
    network = HostNetwork(reactor, run_in_thread(reactor), Supervisor(reactor, tmp_path / "children"), tmp_path,
                          router, docker_forward=forward)
    await network.apply_firewall(uplink, [chute_net(bridge)])
    assert await threads.deferToThread(reaches_wan, client)
    status = (await network.status())["forward"]
    assert status == {"policy": "DROP", "docker_user": True, "rules": 2, "wan_blocked": False, "error": None}
    listing = iptables(router, "-S", "DOCKER-USER").splitlines()
    assert listing[-1] == "-A DOCKER-USER -j RETURN" and "-s 198.51.100.0/24" in listing[-2]  # the owner's rule
    assert sum("paradrop chute network" in line for line in listing) == 2
    assert iptables(router, "-S", "FORWARD").splitlines()[0] == "-P FORWARD DROP"  # Docker's policy stays

    await network.apply_firewall(uplink, [chute_net(bridge)])  # again: nothing doubled
    assert sum("paradrop" in line for line in iptables(router, "-S", "DOCKER-USER").splitlines()) == 2
    await network.apply_firewall(uplink, [])  # the last chute network gone: our rules gone, only ours
    assert iptables(router, "-S", "DOCKER-USER") == before


@pytest_twisted.ensureDeferred
async def test_a_drop_policy_without_docker_user_is_reported_and_nothing_is_written(lab, tmp_path):
    router, client, uplink, bridge = await threads.deferToThread(router_with_a_chute_network, lab)
    iptables(router, "-P", "FORWARD", "DROP")
    before = iptables(router, "-S")
    forward = DockerForward(reactor, router)
    network = HostNetwork(reactor, run_in_thread(reactor), Supervisor(reactor, tmp_path / "children"), tmp_path,
                          router, docker_forward=forward)
    await network.apply_firewall(uplink, [chute_net(bridge)])
    assert (await network.status())["forward"]["wan_blocked"] is True
    assert iptables(router, "-S") == before
    assert not await threads.deferToThread(reaches_wan, client)


@pytest_twisted.ensureDeferred
async def test_an_accept_policy_needs_no_rule_and_traffic_passes(lab, tmp_path):
    router, client, uplink, bridge = await threads.deferToThread(router_with_a_chute_network, lab)
    for args in DOCKER_CHAINS[:3]:
        iptables(router, *args)
    before = iptables(router, "-S")
    forward = DockerForward(reactor, router)
    state = await forward.detect()
    assert (state["policy"], state["docker_user"], state["wan_blocked"]) == ("ACCEPT", True, False)
    network = HostNetwork(reactor, run_in_thread(reactor), Supervisor(reactor, tmp_path / "children"), tmp_path,
                          router, docker_forward=forward)
    await network.apply_firewall(uplink, [chute_net(bridge)])
    assert iptables(router, "-S") == before
    assert await threads.deferToThread(reaches_wan, client)
