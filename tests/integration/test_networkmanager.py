"""NetworkManagerClient against a real NetworkManager that runs only inside a network namespace the test makes
(the daemons and their fixture: tests/nm_lab.py)."""
import socket

import pytest
import pytest_twisted
from twisted.internet import reactor, threads
from zope.interface.verify import verifyObject

from pdserver.errors import InvalidInput, NotFound
from pdserver.sysconfig.networkmanager import INetworkManager, NetworkManagerClient
from tests import nm_lab
from tests.nm_lab import eventually, start_bus, stop_process

lab, short_tmp, network_manager = nm_lab.lab, nm_lab.short_tmp, nm_lab.network_manager  # fixtures


@pytest_twisted.ensureDeferred
async def test_sees_the_device_and_marks_it_unmanaged(network_manager):
    client = await NetworkManagerClient.connect(reactor, network_manager.bus_address)
    assert client is not None
    verifyObject(INetworkManager, client)
    try:
        name, _, _ = network_manager.add_veth()

        async def device(managed: bool):
            found = {d["interface"]: d for d in await client.devices()}
            mine = found.get(name)
            if mine and mine["managed"] is managed and (mine["state"] != "unmanaged") is managed:
                return found
            return None
        devices = await eventually(lambda: device(True), f"NetworkManager to manage {name}")
        assert devices[name]["type"] == "veth"
        assert set(devices) <= {"lo", name}, "NetworkManager saw interfaces outside its namespace"

        await client.set_managed(name, False)
        devices = await eventually(lambda: device(False), f"{name} unmanaged")
        assert devices[name]["state"] == "unmanaged"
        assert await threads.deferToThread(network_manager.nmcli_state, name) == "unmanaged"

        await client.set_managed(name, True)
        await eventually(lambda: device(True), f"NetworkManager to manage {name} again")
        assert await threads.deferToThread(network_manager.nmcli_state, name) != "unmanaged"
    finally:
        client.disconnect()


@pytest_twisted.ensureDeferred
async def test_unknown_or_hostile_interface_names_are_refused(network_manager):
    client = await NetworkManagerClient.connect(reactor, network_manager.bus_address)
    try:
        with pytest.raises(NotFound) as missing:
            await client.set_managed("pdnosuch0", False)
        assert missing.value.field == "interface"
        for hostile in ("", "x" * 16, "a/b", "lo\n", "lo lo", "lo:1", "..", None, 7):
            with pytest.raises(InvalidInput) as refused:
                await client.set_managed(hostile, False)
            assert refused.value.field == "interface"
        with pytest.raises(InvalidInput) as refused:
            await client.set_managed("lo", "no")
        assert refused.value.field == "managed"
    finally:
        client.disconnect()


@pytest_twisted.ensureDeferred
async def test_without_networkmanager_connect_answers_none_fast(short_tmp):
    """No socket, a dead socket, a bus without NetworkManager, a bus that never answers: None, in bounded time."""
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(short_tmp / "dead"))
    dead.close()
    silent = socket.socket(socket.AF_UNIX)
    silent.bind(str(short_tmp / "silent"))
    silent.listen(1)
    bus, address = start_bus(short_tmp)
    try:
        for where, limit in ((f"unix:path={short_tmp / 'absent'}", 0.5), (f"unix:path={short_tmp / 'dead'}", 0.5),
                             (address, 0.5), (f"unix:path={short_tmp / 'silent'}", 1.5)):
            began = reactor.seconds()
            assert await NetworkManagerClient.connect(reactor, where, timeout=1.0) is None, where
            assert reactor.seconds() - began < limit, where
    finally:
        silent.close()
        stop_process(bus)
