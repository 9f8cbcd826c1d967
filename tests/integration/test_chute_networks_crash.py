"""Crashes around a chute's Wi-Fi access point, on a full node running its chute networks in a lab namespace:
kill -9 of the network's dnsmasq (back and serving within 2 s), a hostapd that dies at once (backs off, a
crash-loop audit record), and kill -9 of the daemon after every step of the install (the next start converges:
the chute installed and serving leases, or nothing of it left)."""
import os
import signal
import subprocess
import time

import pytest
import requests

from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import NetworkFacts, Radio
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.spec import build
from pdserver.execution import chute_plans
from tests import netns
from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, objects_labelled, unique, wait_change
from tests.integration.network_helpers import lease, set_radios
from tests.integration.test_chute_networks_safety import http_from_netns, install_ap_chute, nft_ruleset, web_ap_chute
from tests.netns import in_netns, ip

pytestmark = pytest.mark.docker

lab = netns.lab  # the fixture
FAST = {"PARADROP_READY_GRACE": "0.2"}


def processes(router) -> dict:
    """{pid: command line} of the processes in the router namespace."""
    out = {}
    for pid in ip("netns", "pids", router).stdout.split():
        try:
            out[int(pid)] = open(f"/proc/{pid}/cmdline").read().replace("\0", " ")
        except FileNotFoundError:
            pass
    return out


def child_pid(router, child):
    """The pid of the one process running ``child`` (its config file names it), or None."""
    found = [pid for pid, cmd in processes(router).items() if f"/{child}.conf" in cmd]
    assert len(found) <= 1, found
    return found[0] if found else None


def serves_dhcp(router, pid):
    return f"pid={pid}," in in_netns(router, "ss", "-lunp", "sport", "=", "67").stdout


@pytest.fixture
def ap_node(lab, node_process_factory, tmp_path):
    """A node with one wired radio in the router namespace, a Wi-Fi AP chute on it, its client with a lease."""
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_device = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router, **FAST).start()
    session, url = node.session(), node.url
    set_radios(session, url, ap_device)
    name = unique("ap")
    network = install_ap_chute(session, url, name)
    assert lease(client, client_device, tmp_path) is not None
    return router, client, ap_device, client_device, node, session, url, name, network


def test_a_killed_dnsmasq_is_back_and_serving_a_new_lease_within_2_s(ap_node, tmp_path):
    router, client, ap_device, client_device, node, session, url, name, network = ap_node
    child = f"dnsmasq-{network['bridge']}"
    old = child_pid(router, child)
    assert old and serves_dhcp(router, old)

    ip("link", "set", client_device, "address", "02:00:00:00:be:ef", netns=client)  # a new client
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    new = wait_until(lambda: (lambda pid: pid if pid not in (None, old) and serves_dhcp(router, pid) else None)(
        child_pid(router, child)), timeout=5, interval=0.01, message="dnsmasq back")
    address = lease(client, client_device, tmp_path, tries=2)
    elapsed = time.monotonic() - killed
    assert address is not None and elapsed < 2.0, (address, elapsed)
    print(f"dnsmasq kill -9 -> new lease: {elapsed:.3f} s (pid {old} -> {new})")
    leases = session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/leases").json()
    assert {"mac_addr": "02:00:00:00:be:ef", "ip_addr": str(address)}.items() <= next(
        entry for entry in leases if entry["mac_addr"] == "02:00:00:00:be:ef").items(), leases


def audit_records(session, url, action):
    return session.get(f"{url}/api/v1/audit", params={"action": action}).json()


def test_a_hostapd_that_dies_at_once_backs_off_and_leaves_a_crash_loop_record(ap_node, tmp_path):
    router, client, ap_device, client_device, node, session, url, name, network = ap_node
    hostapd, dnsmasq = f"hostapd-{network['bridge']}", f"dnsmasq-{network['bridge']}"
    dnsmasq_pid = child_pid(router, dnsmasq)
    # The radio goes away (a USB adapter unplugged): every hostapd on it now exits at once.
    ip("link", "del", ap_device, netns=router)
    gone = time.monotonic()
    pid = child_pid(router, hostapd)
    if pid is not None:
        os.kill(pid, signal.SIGKILL)
    [record] = wait_until(lambda: audit_records(session, url, "child_crash_loop"), timeout=60, interval=0.2,
                          message="a crash-loop audit record")
    elapsed = time.monotonic() - gone
    assert record["target"] == hostapd and record["result"] == "failed", record
    # five restarts with backoff (0.5, 1, 2, 4 s...) take seconds; without backoff they take milliseconds
    assert elapsed > 5.0, elapsed
    print(f"hostapd crash loop reported after {elapsed:.1f} s")
    assert child_pid(router, dnsmasq) == dnsmasq_pid  # the network's DHCP is not affected

    # the chute still goes away cleanly, the radio's interface being gone
    answer = session.delete(f"{url}/api/v1/chutes/{name}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    assert processes(router) == {}
    assert list((node.state_dir / "sysconfig").iterdir()) == []


def install_plan_length():
    node = chute_plans.NodeFacts(ChuteNames("any"), NodePolicy(api_port=8080),
                                 NetworkFacts(radios=(Radio("radio0", "wired", "ap0"),)))
    return len(chute_plans.plan_install(node, build(web_ap_chute("x", "x", "x")), 2, None, 0.0))


def bridges(router):
    return [line.split()[1].rstrip(":") for line in ip("-o", "link", "show", "type", "bridge", netns=router)
            .stdout.splitlines()]


def nothing_left(router, node, name, ap_device):
    """Assert that nothing of the chute is left: Docker objects, bridge, processes, files, firewall rules."""
    assert objects_labelled(name) == {"containers": [], "networks": [], "volumes": [], "images": []}
    assert bridges(router) == []
    assert processes(router) == {}
    sysconfig = node.state_dir / "sysconfig"
    assert not sysconfig.exists() or list(sysconfig.iterdir()) == []
    ruleset = nft_ruleset(router)
    assert name not in ruleset and "10.128." not in ruleset and "elements" not in ruleset, ruleset
    assert "master" not in ip("-o", "link", "show", ap_device, netns=router).stdout


def serving(router, client, client_device, node, session, url, name, tmp_path):
    """Assert the chute is installed, running and its network serving: a client lease, the container's wlan0."""
    chute = session.get(f"{url}/api/v1/chutes/{name}").json()
    assert chute["state"] == "running", chute
    [network] = session.get(f"{url}/api/v1/chutes/{name}/networks").json()
    prefix = network["subnet"].rsplit(".", 1)[0]
    address = lease(client, client_device, tmp_path)
    assert address is not None and str(address).startswith(prefix + "."), address
    assert http_from_netns(client, f"{prefix}.2") == name
    inner = subprocess.run(["docker", "exec", container_of(name, "main"), "ip", "-4", "addr", "show", "wlan0"],
                           capture_output=True, text=True)
    assert f"inet {prefix}.2/" in inner.stdout, inner.stdout + inner.stderr
    commands = sorted(cmd.split()[0].rsplit("/", 1)[-1] for cmd in processes(router).values())
    assert commands == ["dnsmasq", "hostapd"], processes(router)
    assert [network["bridge"]] == bridges(router)


@pytest.mark.parametrize("step", range(install_plan_length()))
def test_kill_9_after_each_install_step_converges(lab, node_process_factory, tmp_path, step):
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_device = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router, **FAST).start()
    set_radios(node.session(), node.url, ap_device)
    node.stop()

    node.env_extra = {**node.env_extra, "PARADROP_TEST_FAULTS": "1", "PARADROP_CRASH_AFTER_STEP": str(step)}
    node.start()
    session, url, name = node.session(), node.url, unique("crash")
    try:
        session.post(f"{url}/api/v1/chutes", json={"config": web_ap_chute(name, name, name)}, timeout=30)
    except requests.ConnectionError:
        pass  # killed before the answer left
    assert node.wait_exit(timeout=60) == -9

    node.env_extra = {"PARADROP_NETWORK_NETNS": router, **FAST}
    node.start()
    session = node.session()
    for change in session.get(f"{url}/api/v1/changes").json():
        wait_change(session, url, change["id"])
    changes = session.get(f"{url}/api/v1/changes").json()
    crashed = next(c for c in changes if c["type"] == "install")
    assert crashed["state"] == "interrupted" and not crashed["needs_attention"], crashed
    assert changes[0]["type"] == "reconcile" and changes[0]["state"] == "succeeded", changes[0]

    if session.get(f"{url}/api/v1/chutes/{name}").status_code == 404:
        nothing_left(router, node, name, ap_device)
    else:
        serving(router, client, client_device, node, session, url, name, tmp_path)
        answer = session.delete(f"{url}/api/v1/chutes/{name}")
        assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
        nothing_left(router, node, name, ap_device)


def test_a_node_stop_stops_the_children_and_a_start_brings_the_network_back(ap_node, tmp_path):
    router, client, ap_device, client_device, node, session, url, name, network = ap_node
    assert node.stop() == 0
    assert processes(router) == {}  # hostapd and dnsmasq stopped with the node
    node.start()
    session = node.session()
    for change in session.get(f"{url}/api/v1/changes").json():
        wait_change(session, url, change["id"])
    serving(router, client, client_device, node, session, url, name, tmp_path)
