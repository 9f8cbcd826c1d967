"""wait_ready on a Clock with an engine that replays container states: what counts as ready, and the reasons."""
import dataclasses

from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.containers.errors import NotReady
from pdserver.containers.health import wait_ready
from pdserver.containers.spec import ContainerState

RUNNING = ContainerState(id="c1", name="web", image="img", image_id="sha256:1", status="running", running=True,
                         exit_code=0, health=None, health_output=None, restart_count=0,
                         started_at="2026-01-01T00:00:00Z", labels={}, addresses={"net": "10.0.0.2"})


class StatesEngine:
    """inspect_container answers the next scripted state (the last one repeats)."""

    def __init__(self, *states):
        self.states = list(states)
        self.looks = 0

    def inspect_container(self, name):
        self.looks += 1
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return defer.succeed(state)


def state(**changes):
    return dataclasses.replace(RUNNING, **changes)


def start(engine, **kwargs):
    clock = Clock()
    results = []
    d = wait_ready(engine, "web", "net", clock, **kwargs)
    d.addBoth(results.append)
    return clock, results


def advance(clock, seconds, step=0.1):
    for _ in range(int(round(seconds / step))):
        clock.advance(step)


def reason(results):
    [failure] = results
    assert failure.check(NotReady), failure
    return failure.value.reason


def test_a_running_container_is_ready_after_the_grace_period_and_not_before():
    clock, results = start(StatesEngine(RUNNING), grace=1.0)
    advance(clock, 0.9)
    assert results == []
    advance(clock, 0.1)
    assert results == [RUNNING]


def test_an_exit_fails_at_once_with_the_exit_code():
    clock, results = start(StatesEngine(state(status="restarting", exit_code=3)), service="main")
    assert reason(results) == "service main exited with code 3"


def test_a_restart_during_the_grace_period_fails():
    restarted = state(restart_count=1, started_at="2026-01-01T00:00:01Z")
    clock, results = start(StatesEngine(RUNNING, RUNNING, restarted))
    advance(clock, 0.2)
    assert reason(results) == "container web exited and was restarted (restart count 1)"


def test_a_health_check_must_become_healthy():
    engine = StatesEngine(state(health="starting"), state(health="starting"), state(health="healthy"))
    clock, results = start(engine, grace=0.0)
    advance(clock, 0.1)
    assert results == []
    advance(clock, 0.1)
    assert results[0].health == "healthy"


def test_an_unhealthy_check_fails_with_its_output():
    clock, results = start(StatesEngine(state(health="unhealthy", health_output="db down")), service="main")
    assert reason(results) == "service main: health check unhealthy: db down"


def test_a_check_that_stays_starting_times_out():
    clock, results = start(StatesEngine(state(health="starting")), timeout=5.0)
    advance(clock, 4.9)
    assert results == []
    advance(clock, 0.1)
    assert reason(results) == "container web: health check still starting after 5 s"


def test_the_web_port_is_probed_on_the_container_address_until_it_answers():
    urls = []
    answers = [defer.fail(ConnectionRefusedError("refused")), defer.fail(ConnectionRefusedError("refused")),
               defer.succeed(200)]

    def probe(reactor, url, timeout):
        urls.append(url)
        return answers.pop(0)
    clock, results = start(StatesEngine(RUNNING), grace=0.0, web_port=8000, probe=probe)
    advance(clock, 0.2)
    assert results == [RUNNING]
    assert urls == ["http://10.0.0.2:8000/"] * 3


def test_no_http_answer_times_out_naming_the_port_and_the_last_error():
    def probe(reactor, url, timeout):
        return defer.fail(ConnectionRefusedError("Connection refused"))
    clock, results = start(StatesEngine(RUNNING), web_port=8000, timeout=30.0, probe=probe, service="main")
    advance(clock, 30.0)
    assert reason(results) == "service main: no HTTP answer on port 8000 within 30 s (Connection refused)"


def test_without_an_address_on_the_network_no_probe_is_made():
    def probe(reactor, url, timeout):
        raise AssertionError("probed")
    clock, results = start(StatesEngine(state(addresses={})), web_port=8000, timeout=1.0, probe=probe)
    advance(clock, 1.0)
    assert reason(results) == "container web: no HTTP answer on port 8000 within 1 s (no address on network net)"


def test_a_missing_container_fails():
    clock, results = start(StatesEngine(None))
    assert reason(results) == "container web does not exist"


def test_cancelling_the_wait_stops_polling():
    engine = StatesEngine(RUNNING)
    clock = Clock()
    d = wait_ready(engine, "web", "net", clock, grace=10.0)
    d.addErrback(lambda f: f.trap(defer.CancelledError))
    advance(clock, 0.3)
    d.cancel()
    looks = engine.looks
    advance(clock, 1.0)
    assert engine.looks == looks and clock.getDelayedCalls() == []


def test_an_http_probe_that_gets_no_answer_fails_with_a_timeout_when_its_time_is_up():
    from twisted.internet.testing import MemoryReactorClock

    from pdserver.containers.health import ProbeTimeout, http_probe
    reactor = MemoryReactorClock()
    outcome = []
    http_probe(reactor, "http://10.0.0.2:8000/", timeout=2.0).addBoth(outcome.append)
    assert reactor.tcpClients[0][:2] == ("10.0.0.2", 8000)
    reactor.advance(1.9)
    assert outcome == []
    reactor.advance(0.2)
    assert outcome[0].check(ProbeTimeout) and "2 s" in outcome[0].getErrorMessage()
