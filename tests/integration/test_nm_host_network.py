"""The host network configurator with the node's NetworkManager service, against a real NetworkManager confined to
a namespace (tests/nm_lab.py): the links it makes and the ports it takes are unmanaged there before it configures
them, given back when it lets them go, and shown in the status; without NetworkManager nothing waits for it."""
import socket
import time

import pytest_twisted
from twisted.internet import reactor, threads

from pdserver.node import run_in_thread
from pdserver.sysconfig.host_network import HostNetwork
from pdserver.sysconfig.nm_service import NetworkManagerService
from pdserver.sysconfig.supervisor import Supervisor
from tests import nm_lab
from tests.nm_lab import eventually
from tests.netns import ip

lab, short_tmp, network_manager = nm_lab.lab, nm_lab.short_tmp, nm_lab.network_manager  # fixtures


def host_network(netns, state_dir, service):
    supervisor = Supervisor(reactor, state_dir / "children")
    return HostNetwork(reactor, run_in_thread(reactor), supervisor, state_dir, netns, network_manager=service)


async def nm_state(lab_nm, interface: str, unmanaged: bool):
    """NetworkManager's own client (nmcli) reports the device (un)managed."""
    async def probe():
        state = await threads.deferToThread(lab_nm.nmcli_state, interface)
        return state if state and (state == "unmanaged") is unmanaged else None
    return await eventually(probe, f"{interface} {'unmanaged' if unmanaged else 'managed'} in nmcli")


@pytest_twisted.ensureDeferred
async def test_links_made_and_ports_taken_are_unmanaged_first_and_ports_given_back(network_manager, tmp_path):
    service = NetworkManagerService(reactor, network_manager.bus_address)
    service.startService()
    try:
        network = host_network(network_manager.netns, tmp_path, service)
        port, _, _ = network_manager.add_veth()
        await nm_state(network_manager, port, unmanaged=False)  # a free port NetworkManager manages
        bridge = f"pd{network_manager.lab.tag}"

        began = time.monotonic()
        await network.ensure_bridge(bridge, "10.77.0.1/24")
        made = time.monotonic() - began
        await nm_state(network_manager, bridge, unmanaged=True)
        began = time.monotonic()
        await network.set_master(port, bridge)
        taken = time.monotonic() - began
        await nm_state(network_manager, port, unmanaged=True)
        print(f"\nbridge made and unmanaged in {made:.2f} s; port taken in {taken:.2f} s")
        # NetworkManager left what we configured alone: the bridge keeps its address, the port its master.
        assert "10.77.0.1/24" in ip("-4", "addr", "show", bridge, netns=network_manager.netns).stdout
        assert f"master {bridge}" in ip("link", "show", port, netns=network_manager.netns).stdout

        status = (await network.status())["network_manager"]
        assert status["present"] is True and status["unmanaged"] == sorted([bridge, port]), status
        assert {d["interface"]: (d["state"], d["managed"]) for d in status["devices"]} == {
            bridge: ("unmanaged", False), port: ("unmanaged", False)}

        await network.set_master(port, None)  # the port is given back: NetworkManager manages it again
        await nm_state(network_manager, port, unmanaged=False)
        await network.remove_link(bridge)
        status = (await network.status())["network_manager"]
        assert status["unmanaged"] == [] and status["errors"] == {}, status
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_without_networkmanager_links_are_made_at_once_and_the_status_says_so(lab, short_tmp, tmp_path):
    netns = lab.netns("nonm")
    service = NetworkManagerService(reactor, f"unix:path={short_tmp / 'no-bus'}")
    service.startService()
    try:
        network = host_network(netns, tmp_path, service)
        began = time.monotonic()
        await network.ensure_bridge(f"pd{lab.tag}", "10.78.0.1/24")
        assert time.monotonic() - began < 1.0
        assert "10.78.0.1/24" in ip("-4", "addr", "show", f"pd{lab.tag}", netns=netns).stdout
        status = (await network.status())["network_manager"]
        assert status == {"present": False, "searching": False, "unmanaged": [], "devices": [], "errors": {}}
    finally:
        service.stopService()


@pytest_twisted.ensureDeferred
async def test_a_node_start_is_not_held_by_a_bus_that_never_answers(lab, short_tmp, tmp_path):
    """A bus socket that accepts and stays silent: the service reports it is still searching, a link made
    meanwhile waits only for the bounded search, and the node's start returned at once."""
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(short_tmp / "silent"))
    silent.listen(1)
    netns = lab.netns("silent")
    service = NetworkManagerService(reactor, f"unix:path={short_tmp / 'silent'}", timeout=1.0)
    began = time.monotonic()
    service.startService()
    try:
        assert time.monotonic() - began < 0.1
        network = host_network(netns, tmp_path, service)
        assert (await network.status())["network_manager"]["searching"] is True
        await network.ensure_bridge(f"pd{lab.tag}", "10.79.0.1/24")
        assert time.monotonic() - began < 2.0
        assert (await network.status())["network_manager"]["present"] is False
    finally:
        service.stopService()
        silent.close()
