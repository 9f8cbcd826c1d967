"""The deployment websocket's protocol on the real event hub: the snapshot, then updates of unfinished deliveries
only, and one close once the last delivery is final (updates that race the snapshot are applied after it)."""
import json

from twisted.internet import defer

from pdserver.controller.api.deployments import DeploymentStreamProtocol
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

    def __init__(self, events, deployments):
        self.events, self.deployments, self.principal, self.deployment_id = events, deployments, "alice", "d1"
        self.sent, self.closed = [], []

    def sendMessage(self, payload, isBinary=False):
        self.sent.append(json.loads(payload))

    def sendClose(self, code=None, reason=None):
        self.closed.append(code)


def delivery(node, state):
    return {"node_id": node, "state": state, "message": None, "updated": 1.0}


def event(node, state):
    return {"node_id": node, "state": state, "message": None, "time": 2.0}


def test_updates_follow_the_snapshot_and_the_stream_closes_once_when_all_are_final():
    hub, deployments = EventHub(), Deployments()
    stream = Stream(hub, deployments)
    stream.onOpen()
    hub.emit("d1", event("n1", "running"))  # before the snapshot: kept for after it
    deployments.reads[0].callback({"deliveries": [delivery("n1", "sent"), delivery("n2", "succeeded"),
                                                  delivery("n3", "queued")]})
    assert [(m["node_id"], m["state"]) for m in stream.sent] == [
        ("n1", "sent"), ("n2", "succeeded"), ("n3", "queued"), ("n1", "running")]
    hub.emit("d1", event("n2", "failed"))  # a final delivery does not change again
    hub.emit("d1", event("n7", "running"))  # nor does one of another deployment's nodes
    hub.emit("d1", event("n1", "succeeded"))
    assert stream.closed == [] and len(stream.sent) == 5
    hub.emit("d1", event("n3", "running"))
    hub.emit("d1", event("n3", "failed"))
    assert stream.closed == [1000] and [m["state"] for m in stream.sent[-2:]] == ["running", "failed"]
    hub.emit("d1", event("n3", "succeeded"))  # unsubscribed: nothing more
    assert len(stream.sent) == 7 and stream.closed == [1000]


def test_a_deployment_already_finished_closes_after_its_snapshot():
    hub, deployments = EventHub(), Deployments()
    stream = Stream(hub, deployments)
    stream.onOpen()
    deployments.reads[0].callback({"deliveries": [delivery("n1", "succeeded"), delivery("n2", "failed")]})
    assert len(stream.sent) == 2 and stream.closed == [1000]
