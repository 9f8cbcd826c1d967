"""The deployment websocket's protocol on the real event hub: the snapshot in one message, then the updates of
unfinished deliveries, those of one turn of the reactor in one message, and one close once the last delivery is
final (updates that race the snapshot come after it)."""
import json

from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.controller.api.deployments import UPDATES_PER_MESSAGE, DeploymentStreamProtocol
from pdserver.controller.fleet import EventHub


class Deployments:
    """The deployment read the stream starts from, fired when the test says."""

    def __init__(self):
        self.reads = []

    def get(self, principal, deployment_id):
        self.reads.append(defer.Deferred())
        return self.reads[-1]


class Stream(DeploymentStreamProtocol):
    """The protocol with autobahn's two send methods writing to lists: what a browser would receive."""

    def __init__(self, events, deployments, reactor):
        self.events, self.deployments, self.principal, self.deployment_id = events, deployments, "alice", "d1"
        self.reactor = reactor
        self.sent, self.closed = [], []

    def sendMessage(self, payload, isBinary=False):
        assert not isBinary
        self.sent.append([(m["node_id"], m["state"]) for m in json.loads(payload)])

    def sendClose(self, code=None, reason=None):
        self.closed.append(code)


def delivery(node, state):
    return {"node_id": node, "state": state, "message": None, "updated": 1.0}


def event(node, state):
    return {"node_id": node, "state": state, "message": None, "time": 2.0}


def opened():
    hub, deployments, clock = EventHub(), Deployments(), Clock()
    stream = Stream(hub, deployments, clock)
    stream.onOpen()
    return hub, deployments, clock, stream


def test_the_snapshot_then_each_turns_updates_in_one_message_and_one_close_when_all_are_final():
    hub, deployments, clock, stream = opened()
    hub.emit("d1", event("n1", "running"))  # before the snapshot: sent with it, after it
    deployments.reads[0].callback({"deliveries": [delivery("n1", "sent"), delivery("n2", "succeeded"),
                                                  delivery("n3", "queued")]})
    assert stream.sent == [[("n1", "sent"), ("n2", "succeeded"), ("n3", "queued"), ("n1", "running")]]
    hub.emit("d1", event("n2", "failed"))  # a final delivery does not change again
    hub.emit("d1", event("n7", "running"))  # nor is a node of another deployment's shown
    hub.emit("d1", event("n1", "succeeded"))
    hub.emit("d1", event("n3", "running"))
    assert len(stream.sent) == 1  # until the turn ends
    clock.advance(0)
    assert stream.sent[1:] == [[("n1", "succeeded"), ("n3", "running")]] and stream.closed == []
    clock.advance(0)
    assert len(stream.sent) == 2  # nothing new, no message
    hub.emit("d1", event("n3", "failed"))
    clock.advance(0)
    assert stream.sent[2:] == [[("n3", "failed")]] and stream.closed == [1000]
    hub.emit("d1", event("n3", "succeeded"))  # unsubscribed: nothing more
    clock.advance(0)
    assert len(stream.sent) == 3 and stream.closed == [1000]


def test_a_deployment_already_finished_closes_after_its_snapshot():
    hub, deployments, clock, stream = opened()
    deployments.reads[0].callback({"deliveries": [delivery("n1", "succeeded"), delivery("n2", "failed")]})
    assert stream.sent == [[("n1", "succeeded"), ("n2", "failed")]] and stream.closed == [1000]


def test_a_large_deployment_goes_in_bounded_messages_and_a_closed_stream_sends_nothing_more():
    hub, deployments, clock, stream = opened()
    nodes = [f"n{i}" for i in range(2 * UPDATES_PER_MESSAGE + 5)]
    deployments.reads[0].callback({"deliveries": [delivery(n, "sent") for n in nodes]})
    assert [len(m) for m in stream.sent] == [UPDATES_PER_MESSAGE, UPDATES_PER_MESSAGE, 5]
    for n in nodes:
        hub.emit("d1", event(n, "succeeded"))
    stream.onClose(True, 1001, None)  # the browser left before the turn ended
    clock.advance(0)
    assert len(stream.sent) == 3 and stream.closed == [] and not clock.getDelayedCalls()
