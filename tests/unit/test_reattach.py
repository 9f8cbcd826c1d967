"""The re-attach service against the in-memory engine and configurator: what a container restarted by the engine
gets back, what it leaves alone, and how it follows the engine's events when they stop."""
import pytest
from twisted.application.service import MultiService
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from pdserver.chutes import naming
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import NetworkFacts, Radio
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, ChuteRecord, ChuteStore
from pdserver.containers.errors import EngineUnavailable
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.memory import MemoryEngine
from pdserver.containers.spec import ContainerSpec
from pdserver.monitor.events import ContainerEvents
from pdserver.monitor.reattach import InterfaceReattach
from pdserver.sysconfig.memory import MemoryNetwork
from tests.unit.memory_node import memory_database

NAMES = ChuteNames("node-1")
FACTS = NetworkFacts(radios=(Radio(id="radio0", driver="wired", interface="veth-ap"), Radio(id="phy1", channel=11)))
IMAGE = "paradrop/busybox:latest"


def spec(name="ap"):
    return build({"name": name, "version": 1, "services": {
        "main": {"type": "image", "image": IMAGE, "command": "sleep 1000", "interfaces": {
            "wlan0": {"type": "wifi-ap", "dhcp": {}, "wireless": {"ssid": "Hi"}}}},
        "side": {"type": "image", "image": IMAGE, "command": "sleep 1000"}}})


class World:
    def __init__(self):
        self.clock = Clock()
        self.engine = MemoryEngine(self.clock, images={IMAGE: {}}, owner_label=naming.LABEL_NODE)
        self.network = MemoryNetwork()
        self.chutes = ChuteStore(memory_database())
        self.events = ContainerEvents(self.clock, self.engine, naming.LABEL_NODE, rand=lambda: 0.5)
        self.reattach = InterfaceReattach(self.engine, self.events, self.network, self.chutes, NAMES, lambda: FACTS)
        self.service = MultiService()
        for part in (self.events, self.reattach):
            part.setServiceParent(self.service)

    def install(self, name="ap", deployment=7, save=True):
        chute = spec(name)
        assigned = {"main.wlan0": {"subnet": "10.128.3.0/24", "radio": "radio0"}}
        if save:
            self.chutes.save(ChuteRecord(name, "1", RUNNING, chute.raw, deployment, None, 0.0, 0.0, "vol", assigned))
        self.network.ensure_bridge(NAMES.link("pd", name, "main", "wlan0"), "10.128.3.1/24")
        for service in ("main", "side"):
            container = NAMES.container(name, service, deployment)
            self.engine.create_container(ContainerSpec(container, IMAGE, labels={
                **naming.labels(name, "1", deployment, service), **NAMES.node_labels()}))
            self.engine.start_container(container)
        return NAMES.container(name, "main", deployment)

    def pid(self, container):
        return self.engine.inspect_container(container).result.pid

    def veth(self, name="ap", deployment=7):
        return self.network.attached.get(NAMES.link("pv", name, "main", "wlan0", deployment))


@pytest.fixture
def world():
    made = World()
    yield made
    made.service.stopService()


def test_the_memory_engine_still_provides_the_engine_interface():
    assert verifyObject(IContainerEngine, MemoryEngine())


def test_a_container_restarted_by_its_policy_gets_its_interface_back_in_its_new_process(world):
    container = world.install()
    world.service.startService()
    caught_up = world.veth()
    assert caught_up == {"pid": world.pid(container), "bridge": NAMES.link("pd", "ap", "main", "wlan0"),
                         "inner": "wlan0", "address": "10.128.3.2/24", "mac": NAMES.mac("ap", "main", "wlan0")}
    world.network.attached.clear()
    world.engine.exit_container(container, 137)  # the process died; unless-stopped starts it again
    again = world.veth()
    assert again is not None and again["pid"] == world.pid(container) != caught_up["pid"]
    assert again["inner"] == "wlan0" and again["address"] == "10.128.3.2/24" and again["mac"] == caught_up["mac"]


def test_services_without_networks_and_containers_of_other_deployments_are_left_alone(world):
    world.install()
    world.service.startService()
    world.network.attached.clear()
    world.engine.exit_container(NAMES.container("ap", "side", 7), 1)
    assert world.network.attached == {}
    update = world.install(deployment=8, save=False)  # an update's new containers: its plan attaches them
    world.engine.exit_container(update, 1)
    assert world.network.attached == {}
    stranger = world.install(name="gone", save=False)  # no record (being installed, or removed)
    world.engine.exit_container(stranger, 1)
    assert world.network.attached == {}


def test_an_attach_that_fails_is_logged_and_the_next_restart_is_handled(world):
    container = world.install()
    world.service.startService()
    world.network.fail["attach_interface"] = RuntimeError("netlink said no")
    world.network.attached.clear()
    world.engine.exit_container(container, 137)
    assert world.network.attached == {}
    world.engine.exit_container(container, 137)
    assert world.veth()["pid"] == world.pid(container)


def test_when_the_engine_ends_its_events_they_are_followed_again_with_backoff_and_missed_restarts_caught_up(world):
    container = world.install()
    world.service.startService()
    world.engine.end_events()
    world.network.attached.clear()
    unavailable = world.engine.fail_when(lambda method, args: method == "follow_events",
                                         EngineUnavailable("socket gone"))
    world.engine.exit_container(container, 137)  # nobody listens
    assert world.network.attached == {}
    world.clock.advance(0.5)  # first retry (0.5 s): the engine does not answer yet
    world.clock.advance(0.9)  # 1 s after that is not yet the second retry
    assert world.network.attached == {}
    unavailable()
    world.clock.advance(0.1)
    assert world.veth()["pid"] == world.pid(container)  # caught up as the stream opened
    world.network.attached.clear()
    world.engine.exit_container(container, 137)
    assert world.veth()["pid"] == world.pid(container)


def test_stopped_it_no_longer_follows_events(world):
    container = world.install()
    world.service.startService()
    assert world.service.stopService().called
    world.network.attached.clear()
    world.engine.exit_container(container, 137)
    world.clock.advance(60)
    assert world.network.attached == {}


def test_a_restarted_container_of_a_monitor_chute_gets_its_radio_in_its_new_process(world):
    chute = build({"name": "mon", "version": 1, "services": {"main": {
        "type": "image", "image": IMAGE, "command": "sleep 1000", "interfaces": {"mon0": {"type": "monitor"}}}}})
    world.chutes.save(ChuteRecord("mon", "1", RUNNING, chute.raw, 3, None, 0.0, 0.0, "vol", {
        "main.mon0": {"radio": "phy1"}}))
    container = NAMES.container("mon", "main", 3)
    world.engine.create_container(ContainerSpec(container, IMAGE, labels={
        **naming.labels("mon", "1", 3, "main"), **NAMES.node_labels()}))
    world.engine.start_container(container)
    world.service.startService()
    first = world.network.radios["phy1"]
    assert first == {"pid": world.pid(container), "inner": "mon0", "frequency": 2462}
    world.engine.exit_container(container, 137)
    assert world.network.radios["phy1"]["pid"] == world.pid(container) != first["pid"]
