"""NetworkManagerClient over a scripted bus connection: how answers, vanished devices, refusals and silence
become the node's devices and errors (the real NetworkManager is in tests/integration/test_networkmanager.py)."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from txdbus.error import RemoteError

from pdserver.errors import InvalidInput, NotFound, Unavailable
from pdserver.sysconfig.networkmanager import (DEVICE_INTERFACE, NM_PATH, NetworkManagerClient, device_info,
                                              missing_sockets)
from tests.unit.auth_helpers import result_of

DEV1 = "/org/freedesktop/NetworkManager/Devices/1"
DEV2 = "/org/freedesktop/NetworkManager/Devices/2"


def remote_error(name: str) -> RemoteError:
    error = RemoteError(name)
    error.message = "scripted"
    return error


class ScriptedBus:
    """Answers (path, method) from a script: a value, an exception, or a Deferred that never fires."""

    def __init__(self, script: dict):
        self.script = script
        self.calls = []

    def callRemote(self, path, method, **kwargs):
        self.calls.append((path, method, kwargs))
        answer = self.script[(path, method)]
        if isinstance(answer, defer.Deferred):
            return answer
        if isinstance(answer, Exception):
            return defer.fail(answer)
        return defer.succeed(answer)


def client_for(script: dict, clock=None) -> (NetworkManagerClient, ScriptedBus):
    bus = ScriptedBus(script)
    return NetworkManagerClient(clock or Clock(), bus, timeout=5.0), bus


def props(name: str, kind: int, state: int, managed: bool) -> dict:
    return {"Interface": name, "DeviceType": kind, "State": state, "Managed": managed, "Udi": "/sys/x"}


def test_devices_are_named_as_nmcli_names_them_and_sorted():
    client, _ = client_for({(NM_PATH, "GetDevices"): [DEV1, DEV2],
                            (DEV1, "GetAll"): props("veth0", 20, 30, True),
                            (DEV2, "GetAll"): props("br0", 13, 10, False)})
    assert result_of(client.devices()) == [
        {"interface": "br0", "type": "bridge", "state": "unmanaged", "managed": False},
        {"interface": "veth0", "type": "veth", "state": "disconnected", "managed": True}]


def test_a_device_that_vanished_meanwhile_is_left_out():
    client, _ = client_for({(NM_PATH, "GetDevices"): [DEV1, DEV2],
                            (DEV1, "GetAll"): remote_error("org.freedesktop.DBus.Error.UnknownObject"),
                            (DEV2, "GetAll"): props("eth0", 1, 100, True)})
    assert [d["interface"] for d in result_of(client.devices())] == ["eth0"]


def test_a_refused_device_read_is_unavailable():
    client, _ = client_for({(NM_PATH, "GetDevices"): [DEV1],
                            (DEV1, "GetAll"): remote_error("org.freedesktop.DBus.Error.AccessDenied")})
    failure = result_of(client.devices())
    assert isinstance(failure, Failure) and failure.check(Unavailable)
    assert "AccessDenied" in failure.value.message


def test_unknown_numbers_read_as_unknown():
    assert device_info({"Interface": "x", "DeviceType": 999, "State": 5}) == {
        "interface": "x", "type": "unknown", "state": "unknown", "managed": False}


def test_set_managed_sets_the_property_of_that_device_without_starting_anything():
    client, bus = client_for({(NM_PATH, "GetDeviceByIpIface"): DEV2, (DEV2, "Set"): None})
    assert result_of(client.set_managed("veth0", False)) is None
    (_, _, lookup), (path, method, setting) = bus.calls
    assert lookup["body"] == ["veth0"]
    assert (path, method, setting["signature"], setting["body"]) == (
        DEV2, "Set", "ssv", [DEVICE_INTERFACE, "Managed", False])
    assert not lookup["autoStart"] and not setting["autoStart"]


def test_unknown_device_is_not_found():
    client, _ = client_for({(NM_PATH, "GetDeviceByIpIface"):
                            remote_error("org.freedesktop.NetworkManager.UnknownDevice")})
    failure = result_of(client.set_managed("pd0", True))
    assert failure.check(NotFound) and failure.value.field == "interface"


@pytest.mark.parametrize("name", ["", "x" * 16, "a/b", "lo\n", "lo lo", "lo:1", "..", "\x00", None, 3])
def test_hostile_interface_names_never_reach_the_bus(name):
    client, bus = client_for({})
    failure = result_of(client.set_managed(name, False))
    assert failure.check(InvalidInput) and failure.value.field == "interface"
    assert bus.calls == []


def test_managed_must_be_a_boolean():
    client, bus = client_for({})
    assert result_of(client.set_managed("eth0", "false")).value.field == "managed"
    assert bus.calls == []


def test_a_silent_networkmanager_is_unavailable_after_the_timeout():
    clock = Clock()
    client, _ = client_for({(NM_PATH, "GetDevices"): defer.Deferred()}, clock)
    d = client.devices()
    clock.advance(4.9)
    assert not d.called
    clock.advance(0.2)
    failure = result_of(d)
    assert failure.check(Unavailable) and "GetDevices" in failure.value.message


def test_only_an_address_of_socket_files_that_all_do_not_exist_is_missing(tmp_path):
    (tmp_path / "bus").touch()
    gone = f"{tmp_path}/gone"
    assert missing_sockets(f"unix:path={gone}") == [gone]
    assert missing_sockets(f"unix:path={gone},guid=0123;unix:path={gone}2") == [gone, f"{gone}2"]
    assert missing_sockets(f"unix:path={gone};unix:path={tmp_path}/bus") == []  # one may answer
    assert missing_sockets(f"unix:path={tmp_path}/bus") == []
    assert missing_sockets("unix:abstract=/tmp/dbus-x") == []  # only txdbus can tell
    assert missing_sockets("tcp:host=127.0.0.1,port=1") == []
    assert missing_sockets("unix:guid=0123") == []
