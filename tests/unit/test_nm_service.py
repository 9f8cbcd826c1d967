"""The node's NetworkManager service with a Clock and a scripted client: the search at start never holds the start
up, a link NetworkManager has not seen yet is waited for (bounded), only ports it managed are given back, and a
NetworkManager that fails is reported, never a failed chute network."""
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.errors import InvalidInput, NotFound, Unavailable
from pdserver.sysconfig.networkmanager import INetworkManager
from pdserver.sysconfig.nm_service import NetworkManagerService
from tests.unit.auth_helpers import result_of


@implementer(INetworkManager)
class ScriptedNetworkManager:
    """Devices by name: {interface: managed}; ``appear_after`` lookups answer NotFound first."""

    def __init__(self, devices, appear_after=0, fail_set=False):
        self.managed = dict(devices)
        self.appear_after = appear_after
        self.fail_set = fail_set
        self.sets = []
        self.connected = True

    def devices(self):
        return defer.succeed([{"interface": n, "type": "veth", "state": "disconnected" if m else "unmanaged",
                               "managed": m} for n, m in sorted(self.managed.items())])

    def device(self, interface):
        if self.appear_after > 0 or interface not in self.managed:
            self.appear_after -= 1
            return defer.fail(NotFound(f"no {interface}", field="interface"))
        return defer.succeed({"interface": interface, "type": "veth", "state": "x",
                              "managed": self.managed[interface]})

    def set_managed(self, interface, managed):
        if self.fail_set:
            return defer.fail(Unavailable("NetworkManager: Set failed: the bus went away"))
        self.sets.append((interface, managed))
        self.managed[interface] = managed
        return defer.succeed(None)

    def disconnect(self):
        self.connected = False


def service_with(client, clock=None, connecting=None):
    clock = clock or Clock()
    found = connecting if connecting is not None else defer.succeed(client)
    service = NetworkManagerService(clock, "unix:path=/nonexistent", seen_within=1.0, poll=0.1,
                                    connect=lambda reactor, address, timeout: found)
    service.startService()
    return service, clock


def test_the_scripted_client_is_a_network_manager():
    verifyObject(INetworkManager, ScriptedNetworkManager({}))


def test_the_start_is_not_held_and_a_release_waits_for_the_search():
    client = ScriptedNetworkManager({"pd1": True})
    connecting = defer.Deferred()
    service, _ = service_with(client, connecting=connecting)  # returned though the bus has not answered
    released = service.release("pd1")
    assert not released.called and result_of(service.status())["searching"] is True
    connecting.callback(client)
    assert result_of(released) is None and client.sets == [("pd1", False)]
    status = result_of(service.status())
    assert status["present"] is True and status["unmanaged"] == ["pd1"]
    assert status["devices"] == [{"interface": "pd1", "type": "veth", "state": "unmanaged", "managed": False}]


def test_without_networkmanager_everything_succeeds_at_once_and_does_nothing():
    service, _ = service_with(None)
    assert result_of(service.release("pd1")) is None
    assert result_of(service.give_back("pd1")) is None
    assert result_of(service.status()) == {"present": False, "searching": False, "unmanaged": [], "devices": [],
                                           "errors": {}}


def test_a_new_link_is_waited_for_until_networkmanager_sees_it():
    client = ScriptedNetworkManager({"pd1": True}, appear_after=3)
    service, clock = service_with(client)
    released = service.release("pd1")
    clock.pump([0.1, 0.1])
    assert not released.called
    clock.pump([0.1])
    assert released.called and client.sets == [("pd1", False)]


def test_a_link_networkmanager_never_sees_is_left_after_the_bounded_wait():
    client = ScriptedNetworkManager({})
    service, clock = service_with(client)
    released = service.release("pd1")
    clock.pump([0.1] * 9)
    assert not released.called
    clock.pump([0.1] * 2)
    assert result_of(released) is None and client.sets == []
    assert result_of(service.status())["unmanaged"] == []


def test_only_a_port_networkmanager_managed_is_given_back():
    client = ScriptedNetworkManager({"eth1": True, "eth2": False})
    service, _ = service_with(client)
    result_of(service.release("eth1"))
    result_of(service.release("eth2"))  # unmanaged already (NetworkManager's config, or udev not done yet)
    assert client.sets == [("eth1", False), ("eth2", False)]
    result_of(service.give_back("eth1"))
    result_of(service.give_back("eth2"))  # it was not NetworkManager's: stays unmanaged
    assert client.sets[2:] == [("eth1", True)] and client.managed == {"eth1": True, "eth2": False}
    service.forget("eth1")
    assert result_of(service.status())["unmanaged"] == []


def test_a_failing_networkmanager_is_reported_not_raised():
    client = ScriptedNetworkManager({"pd1": True}, fail_set=True)
    service, _ = service_with(client)
    assert result_of(service.release("pd1")) is None
    assert "the bus went away" in result_of(service.status())["errors"]["pd1"]


def test_hostile_names_are_refused_before_the_bus():
    client = ScriptedNetworkManager({})
    service, _ = service_with(client)
    for name in ("", "a/b", "x" * 16, "lo\n", None):
        for call in (service.release, service.give_back):
            try:
                call(name)
            except InvalidInput as e:
                assert e.field == "interface"
            else:
                raise AssertionError(f"{name!r} accepted")


def test_stop_cancels_the_search_or_disconnects():
    connecting = defer.Deferred()
    service, _ = service_with(None, connecting=connecting)
    service.stopService()
    assert connecting.called and result_of(service.status())["present"] is False
    client = ScriptedNetworkManager({})
    service, _ = service_with(client)
    service.stopService()
    assert client.connected is False
