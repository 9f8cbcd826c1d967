"""netlink on the real kernel, entirely inside namespaces the tests make: bridges, VLANs, veths into a process's
(and a real container's) namespace, and what thd_devices reports. Proof is traffic: a ping that passes."""
import json
import os
from ipaddress import IPv4Interface

import pytest

from pdserver.errors import Conflict, InvalidInput, NotFound, Unavailable
from pdserver.sysconfig import netlink
from pdserver.sysconfig.hostconfig import new_config
from tests.conftest import wait_until
from tests import netns
from tests.netns import in_netns, ip, popen_in_netns

lab = netns.lab  # the fixture


def links(netns):
    return {link["ifname"]: link for link in json.loads(ip("-j", "-d", "addr", "show", netns=netns).stdout)}


def ipv4(link):
    return [f"{a['local']}/{a['prefixlen']}" for a in link.get("addr_info", []) if a["family"] == "inet"]


def pings(netns, address):
    return in_netns(netns, "ping", "-c", "1", "-W", "1", address).returncode == 0


@pytest.fixture
def sleeper(lab):
    """A process in a namespace of its own (what a container is to the kernel): (namespace, pid)."""
    chute = lab.netns("chute")
    proc = popen_in_netns(chute, "sleep", "600")
    try:
        wait_until(lambda: open(f"/proc/{proc.pid}/cmdline", "rb").read().startswith(b"sleep"),
                   message="sleep to run in the namespace")
        yield chute, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_a_bridge_is_made_once_with_its_one_address_and_up(lab):
    ns = lab.netns("router")
    bridge = f"pdb{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.1.1/24"), netns=ns)
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.1.1/24"), netns=ns)
    link = links(ns)[bridge]
    assert link["linkinfo"]["info_kind"] == "bridge" and "UP" in link["flags"]
    assert ipv4(link) == ["10.200.1.1/24"]
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.7.1/24"), netns=ns)
    assert ipv4(links(ns)[bridge]) == ["10.200.7.1/24"]
    ip("link", "add", f"pdd{lab.tag}", "type", "veth", "peer", "name", f"pde{lab.tag}", netns=ns)
    with pytest.raises(Conflict):
        netlink.thd_ensure_bridge(f"pdd{lab.tag}", IPv4Interface("10.200.2.1/24"), netns=ns)


def kernel_has_vlans(lab):
    ns = lab.netns("probe")
    ip("link", "add", "p0", "type", "veth", "peer", "name", "p1", netns=ns)
    made = ip("link", "add", "link", "p0", "name", "p0.2", "type", "vlan", "id", "2", netns=ns, check=False)
    return made.returncode == 0


def test_a_kernel_without_vlans_gives_a_clear_error_and_leaves_nothing(lab):
    if kernel_has_vlans(lab):
        pytest.skip("this kernel has 802.1Q: the traffic test below covers VLANs")
    router = lab.netns("router")
    lan, _ = lab.veth("lan", host_netns=router)
    with pytest.raises(Unavailable) as e:
        netlink.thd_ensure_vlan(lan, 42, f"pdv{lab.tag}", netns=router)
    assert e.value.field == "vlan-id" and "802.1Q" in e.value.message
    assert f"pdv{lab.tag}" not in links(router)


def test_a_vlan_in_a_bridge_carries_tagged_traffic_and_a_second_call_changes_nothing(lab):
    if not kernel_has_vlans(lab):
        pytest.skip("this kernel has no 802.1Q VLAN support (CONFIG_VLAN_8021Q); the QEMU tier's kernel has it")
    router, client = lab.netns("router"), lab.netns("client")
    lan, far = lab.veth("lan", peer_netns=client, host_netns=router)
    bridge, vlan = f"pdb{lab.tag}", f"pdv{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.3.1/24"), netns=router)
    for _ in range(2):
        netlink.thd_ensure_vlan(lan, 42, vlan, master=bridge, netns=router)
    link = links(router)[vlan]
    assert link["linkinfo"]["info_data"]["id"] == 42 and link["master"] == bridge and "UP" in link["flags"]
    # The client tags 42: it reaches the bridge; untagged it does not.
    ip("addr", "add", "10.200.3.2/24", "dev", far, netns=client)
    assert not pings(client, "10.200.3.1")
    ip("addr", "flush", "dev", far, netns=client)
    ip("link", "add", "link", far, "name", "tagged", "type", "vlan", "id", "42", netns=client)
    ip("addr", "add", "10.200.3.2/24", "dev", "tagged", netns=client)
    ip("link", "set", "tagged", "up", netns=client)
    assert pings(client, "10.200.3.1")
    with pytest.raises(Conflict):
        netlink.thd_ensure_vlan(lan, 43, vlan, netns=router)


def test_vlan_arguments_are_checked_before_the_kernel_sees_them(lab):
    router = lab.netns("router")
    with pytest.raises(NotFound) as e:
        netlink.thd_ensure_vlan(f"nope{lab.tag}", 42, f"pdw{lab.tag}", netns=router)
    assert e.value.field == "parent"
    for vlan_id in (0, 4095, "42", True, 2 ** 64):
        with pytest.raises(InvalidInput) as e:
            netlink.thd_ensure_vlan("lo", vlan_id, f"pdw{lab.tag}", netns=router)
        assert e.value.field == "vlan-id"


def test_set_master_puts_an_existing_link_in_the_bridge(lab):
    router, client = lab.netns("router"), lab.netns("client")
    ap, station = lab.veth("ap", peer_netns=client, host_netns=router)
    bridge = f"pdb{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.4.1/24"), netns=router)
    ip("link", "set", ap, "down", netns=router)
    netlink.thd_set_master(ap, bridge, netns=router)
    assert links(router)[ap]["master"] == bridge and "UP" in links(router)[ap]["flags"]
    ip("addr", "add", "10.200.4.9/24", "dev", station, netns=client)
    assert pings(client, "10.200.4.1")
    with pytest.raises(NotFound):
        netlink.thd_set_master(ap, f"nobr{lab.tag}", netns=router)


def test_a_veth_into_a_process_namespace_is_renamed_addressed_and_carries_traffic(lab, sleeper):
    chute, pid = sleeper
    router = lab.netns("router")
    bridge, host = f"pdb{lab.tag}", f"vh{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.5.1/24"), netns=router)
    for _ in range(2):
        netlink.thd_attach_veth(bridge, host, pid, "wlan0", IPv4Interface("10.200.5.2/24"), netns=router)
    inner = links(chute)
    assert set(inner) == {"lo", "wlan0"} and ipv4(inner["wlan0"]) == ["10.200.5.2/24"]
    assert links(router)[host]["master"] == bridge
    assert pings(chute, "10.200.5.1") and pings(router, "10.200.5.2")
    netlink.thd_remove_link(host, netns=router)
    netlink.thd_remove_link(host, netns=router)
    assert "wlan0" not in links(chute) and host not in links(router)
    # A name the process already uses for something else is a Conflict, not a second link.
    ip("link", "add", "wlan1", "type", "veth", "peer", "name", "wlan2", netns=chute)
    with pytest.raises(Conflict):
        netlink.thd_attach_veth(bridge, host, pid, "wlan1", IPv4Interface("10.200.5.3/24"), netns=router)
    assert host not in links(router)


def test_a_lost_peer_is_made_again(lab, sleeper):
    """The host end alone (its peer moved elsewhere): the pair is made again into the process."""
    chute, pid = sleeper
    router, elsewhere = lab.netns("router"), lab.netns("other")
    bridge, host = f"pdb{lab.tag}", f"vh{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.6.1/24"), netns=router)
    ip("link", "add", host, "type", "veth", "peer", "name", "stray", netns=router)
    ip("link", "set", "stray", "netns", elsewhere, netns=router)
    netlink.thd_attach_veth(bridge, host, pid, "eth9", IPv4Interface("10.200.6.2/24"), netns=router)
    assert "stray" not in links(elsewhere) and pings(chute, "10.200.6.1")


def test_a_veth_into_a_docker_container(lab, engine):
    router = lab.netns("router")
    bridge, host = f"pdb{lab.tag}", f"vh{lab.tag}"
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.8.1/24"), netns=router)
    container = engine.containers.run("paradrop/busybox", ["sleep", "600"], detach=True, network_mode="none",
                                      name=f"pdt-netlink-{lab.tag}", labels={"org.paradrop.test": "netlink"})
    try:
        container.reload()
        netlink.thd_attach_veth(bridge, host, container.attrs["State"]["Pid"], "wlan0",
                                IPv4Interface("10.200.8.2/24"), netns=router)
        code, output = container.exec_run(["ip", "-4", "addr", "show", "wlan0"])
        assert code == 0 and b"10.200.8.2/24" in output
        assert container.exec_run(["ping", "-c", "1", "-W", "2", "10.200.8.1"]).exit_code == 0
    finally:
        container.remove(force=True)
    # The container's namespace is gone, and the veth with it.
    wait_until(lambda: host not in links(router), message="the veth to go with the container")


def test_devices_report_kinds_addresses_masters_and_the_default_route(lab):
    router, wan = lab.netns("router"), lab.netns("wan")
    uplink, _ = lab.veth("wan", peer_netns=wan, host_netns=router)
    lan, _ = lab.veth("lan", host_netns=router, peer_netns=wan)
    bridge = f"pdb{lab.tag}"
    ip("addr", "add", "192.0.2.10/24", "dev", uplink, netns=router)
    ip("route", "add", "default", "via", "192.0.2.1", netns=router)
    netlink.thd_ensure_bridge(bridge, IPv4Interface("10.200.9.1/24"), netns=router)
    netlink.thd_set_master(lan, bridge, netns=router)
    devices = {d["name"]: d for d in netlink.thd_devices(netns=router)}
    assert set(devices) == {"lo", uplink, lan, bridge}
    assert devices["lo"]["kind"] == "loopback" and "127.0.0.1/8" in devices["lo"]["addresses"]
    assert devices[uplink]["kind"] == "veth" and devices[uplink]["default_route"] is True
    assert "192.0.2.10/24" in devices[uplink]["addresses"] and devices[uplink]["up"] is True
    assert devices[bridge]["kind"] == "bridge" and "10.200.9.1/24" in devices[bridge]["addresses"]
    assert devices[lan]["master"] == bridge and devices[uplink]["master"] is None
    assert not any(d["default_route"] for name, d in devices.items() if name != uplink)
    assert all(d["phy"] is None for d in devices.values())  # no radios in this kernel or namespace
    assert len(devices[lan]["mac"].split(":")) == 6
    # The new configuration takes the default-route link as the WAN, read only, and claims nothing.
    config = new_config(list(devices.values()))
    assert config["wan"] == {"interface": uplink} and config["lan"]["interfaces"] == []


def test_work_in_a_namespace_never_forks_the_daemon_and_stays_out_of_its_threads(lab, sleeper):
    """A child forked from a process with threads can hang before it answers; the daemon never makes one for
    netlink (pyroute2's own netns sockets do), and the thread that asked stays in its own namespace."""
    _chute, pid = sleeper
    ns = lab.netns("router")
    forks = []
    os.register_at_fork(before=lambda: forks.append(1))
    own = os.readlink("/proc/thread-self/ns/net")
    netlink.thd_ensure_bridge(f"pdf{lab.tag}", IPv4Interface("10.200.9.1/24"), netns=ns)
    netlink.thd_attach_veth(f"pdf{lab.tag}", f"pdg{lab.tag}", pid, "eth1", IPv4Interface("10.200.9.2/24"), netns=ns)
    assert netlink.thd_devices(netns=ns)
    assert forks == [] and os.readlink("/proc/thread-self/ns/net") == own
    assert f"pdf{lab.tag}" in links(ns) and f"pdf{lab.tag}" not in links(None)
    assert pings(ns, "10.200.9.2")


def test_missing_namespaces_processes_and_links_are_clear_errors(lab):
    ns = lab.netns("router")
    with pytest.raises(NotFound):
        netlink.thd_devices(netns=f"pdt-absent-{lab.tag}")
    with pytest.raises(NotFound) as e:
        netlink.thd_attach_veth("br", "vh", 2 ** 22 + 1, "wlan0", IPv4Interface("10.0.0.2/24"), netns=ns)
    assert e.value.field == "pid"
    netlink.thd_remove_link(f"absent{lab.tag}", netns=ns)


@pytest.mark.parametrize("name", ["", "a" * 16, "a b", "x/y", "eth0:1", "..", "wl\nan0", "-o", None, 5])
def test_hostile_interface_names_are_refused_before_the_kernel_sees_them(name):
    with pytest.raises(InvalidInput) as e:
        netlink.thd_ensure_bridge(name, IPv4Interface("10.0.0.1/24"), netns="pdt-never-used")
    assert e.value.field == "name"
