"""The node's WAMP session around autobahn's Component: started again when the Component gives up, never after
stop(). The Component is replaced by a stand-in whose end the test decides; time is a Clock."""
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.cloud.provisioning import ProvisionRecord
from pdserver.cloud.wamp import WampSession

RETRY = {"initial": 1.0, "max": 60.0, "growth": 1.5, "jitter": 0.1}


class StandIn:
    def __init__(self):
        self.done = defer.Deferred()
        self.stopped = False

    def start(self, reactor):
        return self.done

    def stop(self):
        self.stopped = True
        self.done.callback(None)


class Session(WampSession):
    def __init__(self, clock, left):
        super().__init__(clock, ProvisionRecord("ab" * 8, "s", None, "ws://127.0.0.1:9/ws"), RETRY, {},
                         lambda: None, left.append)
        self.components = []

    def _make_component(self):
        self.components.append(StandIn())
        return self.components[-1]


def test_a_component_that_ends_on_its_own_is_started_again_after_the_initial_delay():
    clock, left = Clock(), []
    session = Session(clock, left)
    session.start()
    session.components[0].done.callback(None)
    assert left == ["the session ended"] and len(session.components) == 1
    clock.advance(0.9)
    assert len(session.components) == 1
    clock.advance(0.2)
    assert len(session.components) == 2
    session.components[1].done.errback(RuntimeError("Exhausted all transport connect attempts"))
    assert "Exhausted" in left[-1]
    clock.advance(1.0)
    assert len(session.components) == 3


def test_a_stopped_session_is_not_started_again():
    clock, left = Clock(), []
    session = Session(clock, left)
    session.start()
    stopped = session.stop()
    assert session.components[0].stopped and stopped.called
    clock.advance(120)
    assert len(session.components) == 1 and left == []


def test_stop_while_waiting_to_start_again_cancels_the_restart():
    clock, left = Clock(), []
    session = Session(clock, left)
    session.start()
    session.components[0].done.callback(None)
    assert session.stop().called
    clock.advance(120)
    assert len(session.components) == 1


def _endpoint_answer(endpoint, **kwargs):
    outcome = []
    endpoint(**kwargs).addBoth(outcome.append)
    return outcome[0]


def test_a_command_gets_progress_only_when_its_caller_asked_and_a_caller_cannot_pass_its_own():
    from types import SimpleNamespace as CallDetails  # autobahn's CallDetails wants a live registration

    from pdserver.cloud.wamp import _wrap
    got = []

    def command(progress=None, **kwargs):
        got.append(progress)
        return {"ok": True}
    sent = []
    asked = CallDetails(progress=sent.append)
    assert _endpoint_answer(_wrap(command, True), details=asked, key="k") == {"ok": True}
    got[-1]({"state": "running"})
    assert sent == [{"state": "running"}]
    assert _endpoint_answer(_wrap(command, True), details=CallDetails(progress=None), key="k") == {"ok": True}
    assert _endpoint_answer(_wrap(command, False), details=asked, key="k") == {"ok": True}
    assert got[1:] == [None, None]
    refused = _endpoint_answer(_wrap(command, True), details=asked, progress="mine")
    assert refused.value.kwargs["field"] == "progress" and len(got) == 3


def test_progress_the_session_can_no_longer_send_is_dropped():
    from pdserver.cloud.wamp import _sender

    def gone(message):
        raise RuntimeError("transport lost")
    _sender(gone)({"state": "running"})
