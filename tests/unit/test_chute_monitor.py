"""The chute monitor reads service states from the engine; readers of the same chute share one engine call."""
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, ChuteRecord
from pdserver.containers.errors import EngineUnavailable
from pdserver.containers.spec import ContainerState
from pdserver.monitor.chutes import ChuteMonitor, StatusUnavailable


class SlowEngine:
    """inspect_container answers only when the test says so: the calls in flight are visible."""

    def __init__(self):
        self.pending = []

    def inspect_container(self, name):
        d = defer.Deferred()
        self.pending.append((name, d))
        return d


def record():
    description = {"name": "web", "version": 1, "services": {"main": {"type": "image", "image": "busybox"}}}
    build(description)
    return ChuteRecord("web", "1", RUNNING, description, 3, None, 0.0, 0.0, "vol")


def state(name):
    return ContainerState(id="c", name=name, image="busybox", image_id="sha256:1", status="running", running=True,
                          exit_code=0, health=None, health_output=None, restart_count=0, started_at="",
                          labels={}, addresses={})


def test_readers_of_one_chute_at_the_same_time_share_one_engine_call():
    engine = SlowEngine()
    monitor = ChuteMonitor(engine, ChuteNames("n"), Clock())
    answers = []
    for _ in range(50):
        monitor.services(record()).addCallback(answers.append)
    assert len(engine.pending) == 1 and answers == []
    name, d = engine.pending.pop()
    d.callback(state(name))
    assert len(answers) == 50 and all(a[0]["running"] for a in answers)
    monitor.services(record())
    assert len(engine.pending) == 1, "a later reader asks the engine again"


def test_an_engine_failure_reaches_every_waiting_reader_as_503():
    engine = SlowEngine()
    monitor = ChuteMonitor(engine, ChuteNames("n"), Clock())
    failures = []
    for _ in range(3):
        monitor.services(record()).addErrback(failures.append)
    engine.pending.pop()[1].errback(EngineUnavailable("socket gone"))
    assert len(failures) == 3 and all(f.check(StatusUnavailable) for f in failures)
    assert failures[0].value.status == 503
