"""Telemetry samples shared between readers, and the status hub: telemetry pushed on a clock only while someone
listens, chute container events and unexpected deaths pushed as they happen."""
import psutil
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.monitor.status import StatusHub
from pdserver.monitor.telemetry import Telemetry, thd_sample
from tests.unit.test_monitor_events import World


class Thread:
    """run_in_thread whose calls stay pending until the test answers them."""

    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, d))
        return d

    def answer(self):
        f, d = self.calls.pop(0)
        d.callback(f())


def test_a_sample_reads_this_machine():
    sample = thd_sample()
    assert sample["memory"]["total"] == psutil.virtual_memory().total
    assert sample["disk"]["total"] == psutil.disk_usage("/").total
    assert "lo" in sample["interfaces"] and set(sample["load"]) == {"1m", "5m", "15m"}


def test_readers_share_one_sample_under_way_and_reuse_it_until_it_is_too_old():
    clock, thread = Clock(), Thread()
    taken = []
    telemetry = Telemetry(thread, clock, max_age=1.0, sample=lambda: taken.append(1) or {"n": len(taken)})
    answers = []
    for _ in range(10):
        telemetry.current().addCallback(answers.append)
    assert len(thread.calls) == 1 and answers == []
    thread.answer()
    assert answers == [{"n": 1}] * 10
    clock.advance(0.9)
    telemetry.current().addCallback(answers.append)
    assert not thread.calls and answers[-1] == {"n": 1}
    clock.advance(0.1)
    telemetry.current().addCallback(answers.append)
    thread.answer()
    assert answers[-1] == {"n": 2}


class Instant:
    def __init__(self):
        self.samples = 0

    def current(self):
        self.samples += 1
        return defer.succeed({"n": self.samples})


def test_telemetry_is_pushed_every_interval_only_while_someone_listens():
    world, telemetry = World(), Instant()
    hub = StatusHub(world.events, world.deaths, telemetry, world.clock, interval=5.0)
    first, second = [], []
    stop_first = hub.listen(first.append)
    assert first == [{"type": "telemetry", "n": 1}]
    stop_second = hub.listen(second.append)
    assert second == [{"type": "telemetry", "n": 2}]
    world.clock.advance(5)
    assert first[-1] == second[-1] == {"type": "telemetry", "n": 3}
    stop_first()
    world.clock.advance(5)
    assert len(first) == 2 and second[-1] == {"type": "telemetry", "n": 4}
    stop_second()
    world.clock.advance(60)
    assert telemetry.samples == 4


def test_chute_container_events_and_unexpected_deaths_are_pushed_as_they_happen():
    world = World()
    hub = StatusHub(world.events, world.deaths, Instant(), world.clock)
    world.events.startService()
    pushed = []
    stop = hub.listen(pushed.append)
    _, container = world.install()
    world.memory.stop_container(container)
    kinds = [(m["type"], m.get("action")) for m in pushed]
    assert kinds == [("telemetry", None), ("container", "start"), ("chute_died", None), ("container", "die")]
    assert pushed[2] == {"type": "chute_died", "chute": "web", "service": "main", "container": container,
                         "time": 0.0, "exit_code": 143}
    assert pushed[3]["exit_code"] == 143 and pushed[3]["deployment"] == "3"
    stop()
    world.memory.start_container(container)
    assert len(pushed) == 4
    world.events.stopService()


def test_chute_usage_is_pushed_with_the_telemetry_and_to_each_new_listener():
    world, telemetry, reads = World(), Instant(), []

    def usage():
        reads.append(1)
        return defer.succeed({"web": {"main": {"cpu_seconds": float(len(reads))}}})
    hub = StatusHub(world.events, world.deaths, telemetry, world.clock, usage, interval=5.0)
    first, second = [], []
    hub.listen(first.append)
    assert first[1] == {"type": "usage", "time": 0.0, "chutes": {"web": {"main": {"cpu_seconds": 1.0}}}}
    hub.listen(second.append)
    assert second[1]["chutes"]["web"]["main"]["cpu_seconds"] == 2.0
    world.clock.advance(5)
    assert first[-1] == second[-1] == {"type": "usage", "time": 5.0,
                                       "chutes": {"web": {"main": {"cpu_seconds": 3.0}}}}
