"""Rebooting and powering off the host through systemd-logind's D-Bus API, against a real dbus-daemon the test
starts. logind itself cannot run here (and must never reboot this machine): a small service the test exports on
that bus as org.freedesktop.login1 records the calls, with logind's method names and signatures."""
import pytest
import pytest_twisted
from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.errors import Conflict, Unavailable
from pdserver.execution.host_power import HostPowerHandlers
from pdserver.sysconfig.host_power import LOGIND_NAME, LOGIND_PATH, MANAGER, IHostPower, LogindPower
from tests.integration.http import get_json, post_json, wait_for, wait_for_change
from tests import nm_lab
from tests.nm_lab import start_bus, stop_process

short_tmp = nm_lab.short_tmp  # a fixture


def logind_object(answer: str):
    from txdbus import objects
    from txdbus.interface import DBusInterface, Method

    class RecordingLogind(objects.DBusObject):
        dbusInterfaces = [DBusInterface(MANAGER, Method("Reboot", arguments="b"), Method("PowerOff", arguments="b"),
                                        Method("CanReboot", returns="s"), Method("CanPowerOff", returns="s"))]

        def __init__(self):
            super().__init__(LOGIND_PATH)
            self.calls = []

        def dbus_Reboot(self, interactive):
            self.calls.append(("Reboot", interactive))

        def dbus_PowerOff(self, interactive):
            self.calls.append(("PowerOff", interactive))

        def dbus_CanReboot(self):
            return answer

        def dbus_CanPowerOff(self):
            return answer
    return RecordingLogind()


class Bus:
    """A dbus-daemon of the test's own; ``serve_logind`` puts the recording service on it."""

    def __init__(self, address):
        self.address = address
        self.connections = []

    async def serve_logind(self, answer="yes"):
        from txdbus import client
        conn = await client.connect(reactor, self.address)
        self.connections.append(conn)
        service = logind_object(answer)
        conn.exportObject(service)
        await conn.requestBusName(LOGIND_NAME)
        return service

    def power(self, allowed=True, markers=()):
        return LogindPower(reactor, allowed, self.address, container_markers=markers)


@pytest.fixture
def bus(short_tmp):
    proc, address = start_bus(short_tmp)
    made = Bus(address)
    try:
        yield made
    finally:
        for conn in made.connections:
            conn.disconnect()
        stop_process(proc)


@pytest_twisted.ensureDeferred
async def test_reboot_and_power_off_call_logind_without_interaction(bus):
    logind = await bus.serve_logind()
    power = bus.power()
    verifyObject(IHostPower, power)
    await power.check("reboot")
    await power.check("poweroff")
    assert logind.calls == []
    await power.act("reboot")
    await power.act("poweroff")
    assert logind.calls == [("Reboot", False), ("PowerOff", False)]


@pytest_twisted.ensureDeferred
async def test_where_the_node_may_not_power_its_host_the_check_says_why_and_calls_nothing(bus, tmp_path):
    logind = await bus.serve_logind()
    with pytest.raises(Conflict) as off:
        await bus.power(allowed=False).check("reboot")
    assert off.value.code == "host_power_disallowed" and "allow_host_power is off" in off.value.message
    marker = tmp_path / ".dockerenv"
    marker.touch()
    with pytest.raises(Conflict) as contained:
        await bus.power(markers=("/nonexistent/.containerenv", str(marker))).check("poweroff")
    assert contained.value.code == "host_power_in_container" and str(marker) in contained.value.message
    assert logind.calls == []


@pytest_twisted.ensureDeferred
async def test_without_logind_on_the_bus_or_without_a_bus_the_check_is_unavailable(bus, short_tmp):
    with pytest.raises(Unavailable) as absent:
        await bus.power().check("reboot")
    assert "systemd-logind is not on the system bus" in absent.value.message
    no_bus = LogindPower(reactor, True, f"unix:path={short_tmp}/no-bus", container_markers=())
    with pytest.raises(Unavailable) as missing:
        await no_bus.check("reboot")
    assert "no system bus" in missing.value.message


@pytest_twisted.ensureDeferred
async def test_logind_refusing_the_action_is_unavailable(bus):
    logind = await bus.serve_logind(answer="na")
    with pytest.raises(Unavailable) as refused:
        await bus.power().check("reboot")
    assert "CanReboot: 'na'" in refused.value.message and logind.calls == []


@implementer(IHostPower)
class RecordingPower:
    """Records what it was asked; ``refusal`` makes check fail."""

    def __init__(self, refusal=None):
        self.refusal = refusal
        self.acted = []

    def check(self, action):
        return defer.fail(self.refusal) if self.refusal else defer.succeed(None)

    def act(self, action):
        self.acted.append(action)
        return defer.succeed(None)


def test_the_change_ends_before_the_host_is_asked():
    clock = Clock()
    power = RecordingPower()
    verifyObject(IHostPower, power)
    handlers = HostPowerHandlers(power, clock, lambda *a, **k: None, delay=2.0).handlers()

    class Context:
        class change:
            user = "paradrop"
        messages = []
        progress = messages.append
    result = []
    handlers["host-reboot"](Context).addBoth(result.append)
    assert result == [{"message": "the host reboots in 2 s"}] and power.acted == []
    clock.advance(1.9)
    assert power.acted == []
    clock.advance(0.1)
    assert power.acted == ["reboot"]


@pytest.fixture
def node_on_bus(bus, make_settings):
    """An in-process node whose host power is logind on the test's bus (conftest's start_node, with the
    IHostPower build_node takes)."""
    from pdserver.node import build_node
    from tests.conftest import InProcessNode, remove_docker_objects
    built = build_node(make_settings(), reactor, host_power=bus.power())
    pytest_twisted.blockon(built.service.startService())
    try:
        yield InProcessNode(built)
    finally:
        pytest_twisted.blockon(built.service.stopService())
        built.conn.close()
        remove_docker_objects(built.settings.state_dir)


@pytest_twisted.ensureDeferred
async def test_the_owner_reboots_the_host_through_a_change_that_ends_before_logind_is_called(bus, node_on_bus):
    logind = await bus.serve_logind()
    node = node_on_bus
    owner = await node.login()
    code, body, _ = await post_json(node.url + "/api/v1/users",
                                    {"username": "admin1", "password": "password-admin1", "role": "admin"}, owner)
    admin = await node.login("admin1", "password-admin1")
    code, body, _ = await post_json(node.url + "/api/v1/host/reboot", None, admin)
    assert code == 403 and body["error"]["code"] == "forbidden"

    code, body, _ = await post_json(node.url + "/api/v1/host/reboot", None, owner)
    assert code == 202, body
    change = await wait_for_change(node.url, body["change_id"], owner)
    assert change["state"] == "succeeded" and change["result"]["message"] == "the host reboots in 2 s"
    await wait_for(lambda: logind.calls, timeout=10)
    assert logind.calls == [("Reboot", False)]

    code, body, _ = await post_json(node.url + "/api/v1/changes/", {"name": "__PARADROP__", "updateClass": "ROUTER",
                                                                    "updateType": "shutdown"}, owner)
    assert code == 202, body
    assert (await wait_for_change(node.url, body["change_id"], owner))["state"] == "succeeded"
    await wait_for(lambda: len(logind.calls) == 2, timeout=10)
    assert logind.calls[1] == ("PowerOff", False)
    code, records = await get_json(node.url + "/api/v1/audit?actor=paradrop", owner)
    assert {(r["action"], r["result"]) for r in records} >= {("change:host-reboot", "succeeded"),
                                                             ("change:host-shutdown", "succeeded")}


@pytest_twisted.ensureDeferred
async def test_where_power_is_disallowed_the_answer_says_why_and_nothing_is_queued(node):
    owner = await node.login()
    for route in ("reboot", "shutdown"):
        code, body, _ = await post_json(f"{node.url}/api/v1/host/{route}", None, owner)
        assert code == 409, body
        assert body["error"]["code"] == "host_power_disallowed" and body["error"]["field"] == "allow_host_power"
    code, changes = await get_json(node.url + "/api/v1/changes", owner)
    assert not [c for c in changes if c["type"].startswith("host-")]
    code, records = await get_json(node.url + "/api/v1/audit?actor=paradrop", owner)
    assert {(r["action"], r["result"]) for r in records} >= {("host-reboot", "refused"), ("host-shutdown", "refused")}

    code, body, _ = await post_json(node.url + "/api/v1/changes", {"name": "__PARADROP__", "updateClass": "ROUTER",
                                                                   "updateType": "reboot"}, owner)
    assert code == 202  # ParaDrop's form: the change says why
    change = await wait_for_change(node.url, body["change_id"], owner)
    assert change["state"] == "failed" and "allow_host_power is off" in change["result"]["message"]
    code, body, _ = await post_json(node.url + "/api/v1/changes", {"updateClass": "ROUTER", "updateType": "rm -rf"},
                                    owner)
    assert code == 400 and body["error"]["field"] == "updateType"
