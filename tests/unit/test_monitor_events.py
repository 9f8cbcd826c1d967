"""The node's one follow of the engine's events, the state cache it makes safe, and the death watch, against the
in-memory engine: what a status read costs, when it must ask the engine again, and which deaths are news."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.chutes import naming
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord, ChuteStore
from pdserver.containers.errors import EngineUnavailable
from pdserver.containers.memory import MemoryEngine
from pdserver.containers.spec import ContainerSpec
from pdserver.monitor.chutes import ChuteMonitor
from pdserver.monitor.deaths import DeathWatch
from pdserver.monitor.events import ContainerEvents
from tests.unit.memory_node import memory_database

NAMES = ChuteNames("node-1")
IMAGE = "paradrop/busybox:latest"
LABEL = f"{naming.LABEL_NODE}={NAMES.node_id}"


class HeldEngine:
    """The memory engine, with inspects held back while ``hold`` is set (an inspect under way) and counted."""

    def __init__(self, engine):
        self._engine = engine
        self.hold = False
        self.held = []
        self.inspects = 0

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def inspect_container(self, name):
        self.inspects += 1
        if not self.hold:
            return self._engine.inspect_container(name)
        d = defer.Deferred()
        self.held.append(lambda: self._engine.inspect_container(name).chainDeferred(d))
        return d

    def release(self):
        held, self.held = self.held, []
        for each in held:
            each()


class World:
    def __init__(self):
        self.clock = Clock()
        self.memory = MemoryEngine(self.clock, images={IMAGE: {}}, owner_label=naming.LABEL_NODE)
        self.engine = HeldEngine(self.memory)
        self.chutes = ChuteStore(memory_database())
        self.changing = set()
        self.audit = []
        self.events = ContainerEvents(self.clock, self.engine, LABEL, rand=lambda: 0.5)
        self.deaths = DeathWatch(self.events, self.chutes, self.changing.__contains__,
                                 lambda *args, **kw: self.audit.append((args, kw)))
        self.monitor = ChuteMonitor(self.engine, NAMES, self.clock, self.events, self.deaths)

    def install(self, name="web", deployment=3, state=RUNNING):
        description = {"name": name, "version": 1, "services": {"main": {"type": "image", "image": IMAGE}}}
        build(description)
        record = ChuteRecord(name, "1", state, description, deployment, None, 0.0, 0.0, "vol")
        self.chutes.save(record)
        container = NAMES.container(name, "main", deployment)
        self.memory.create_container(ContainerSpec(container, IMAGE, labels={
            **naming.labels(name, "1", deployment, "main"), **NAMES.node_labels()}))
        self.memory.start_container(container)
        return record, container

    def status(self, record):
        return self.monitor.services(record).result[0]


@pytest.fixture
def world():
    made = World()
    yield made
    made.events.stopService()


def test_every_subscriber_hears_the_events_of_one_follow_of_the_engine(world):
    heard = ([], [])
    for log in heard:
        world.events.subscribe(log.append)
    world.events.startService()
    _, container = world.install()
    assert len(world.memory._event_followers) == 1
    assert [e.action for e in heard[0]] == [e.action for e in heard[1]] == ["start"]
    world.memory.exit_container(container, 1)
    assert [e.action for e in heard[1]] == ["start", "die", "start"]  # unless-stopped started it again


def test_a_failing_subscriber_does_not_keep_the_event_from_the_others(world):
    heard = []
    world.events.subscribe(lambda event: 1 / 0)
    world.events.subscribe(heard.append)
    world.events.startService()
    world.install()
    assert len(heard) == 1


def test_the_stream_is_opened_again_with_backoff_after_the_engine_ends_it_and_subscribers_hear_it(world):
    opened, closed = [], []
    world.events.subscribe(lambda e: None, on_open=lambda: opened.append(1), on_close=lambda: closed.append(1))
    world.events.startService()
    assert world.events.following and opened == [1]
    unavailable = world.memory.fail_when(lambda method, args: method == "follow_events",
                                         EngineUnavailable("socket gone"))
    world.memory.end_events()
    assert not world.events.following and closed == [1]
    world.clock.advance(0.5)
    world.clock.advance(0.9)
    assert not world.events.following
    unavailable()
    world.clock.advance(0.1)
    assert world.events.following and opened == [1, 1]


def test_an_unchanged_chute_is_read_without_asking_the_engine_and_any_event_makes_it_ask_again(world):
    world.events.startService()
    record, container = world.install()
    assert world.status(record)["running"]
    assert world.engine.inspects == 1
    for _ in range(5):
        assert world.status(record)["running"]
    assert world.engine.inspects == 1
    world.memory.exit_container(container, 3)  # unless-stopped: it died and started again
    assert world.status(record)["running"]
    assert world.engine.inspects == 2
    world.memory.stop_container(container)
    assert world.status(record)["status"] == "exited"
    assert world.engine.inspects == 3


def test_an_inspect_during_which_the_container_had_an_event_is_not_kept(world):
    world.events.startService()
    record, container = world.install()
    world.engine.hold = True
    read = world.monitor.services(record)
    world.memory.stop_container(container)  # while the inspect is under way
    world.engine.release()
    assert read.result[0]["status"] == "exited"
    world.engine.hold = False
    world.status(record)
    assert world.engine.inspects == 2


def test_nothing_is_kept_while_the_stream_is_down_nor_across_its_reopening(world):
    world.events.startService()
    record, container = world.install()
    world.status(record)
    world.memory.end_events()  # the engine stopped: what it did meanwhile is not heard
    world.memory.stop_container(container)
    assert world.status(record)["status"] == "exited"
    world.status(record)
    assert world.engine.inspects == 3
    world.engine.hold = True
    read = world.monitor.services(record)
    world.clock.advance(0.5)  # the stream opens again while that inspect is under way
    world.engine.release()
    world.engine.hold = False
    assert read.result[0]["status"] == "exited"
    world.status(record)
    world.status(record)
    assert world.engine.inspects == 5


def test_a_container_that_dies_while_no_change_is_at_work_is_audited_and_shown_in_status(world):
    world.events.startService()
    record, container = world.install()
    world.memory.stop_container(container)
    assert world.audit == [(("node", "chute_died", "failed"), {
        "target": "web", "detail": {"service": "main", "container": container, "exit_code": 143}})]
    shown = world.status(record)
    assert not shown["running"] and shown["exit_code"] == 143
    assert shown["unexpected_exit"] == {"time": 0.0, "exit_code": 143, "count": 1}


def test_deaths_a_change_causes_or_of_stopped_or_older_deployments_are_not_news(world):
    world.events.startService()
    heard = []
    world.deaths.listen(heard.append)
    record, container = world.install()
    world.changing.add("web")
    world.memory.stop_container(container)
    _, stopped = world.install("off", state=STOPPED)
    world.memory.stop_container(stopped)
    _, old = world.install("new", deployment=4)
    world.memory.create_container(ContainerSpec(NAMES.container("new", "main", 2), IMAGE, labels={
        **naming.labels("new", "1", 2, "main"), **NAMES.node_labels()}))
    world.memory.start_container(NAMES.container("new", "main", 2))
    world.memory.stop_container(NAMES.container("new", "main", 2))
    assert world.audit == [] and heard == []
    assert world.status(record)["unexpected_exit"] is None


def test_when_a_change_ends_the_states_read_so_far_and_under_way_are_not_kept(world):
    world.events.startService()
    record, _ = world.install()
    world.status(record)
    world.monitor.forget()
    world.engine.hold = True
    read = world.monitor.services(record)
    world.monitor.forget()
    world.engine.release()
    world.engine.hold = False
    assert read.result[0]["running"]
    world.status(record)
    world.status(record)
    assert world.engine.inspects == 3
