"""The fleet tells a node's listeners (the /ws/nodes route) of its presence and reported state only once the store
has it, so a listener that re-reads the node sees the change."""
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from pdserver.cloud import protocol
from pdserver.controller import interfaces
from pdserver.controller.fleet import Fleet
from tests.fleet_store import MemoryFleetStore

NODE = "0123456789abcdef"
OTHER = "fedcba9876543210"


class SlowStore(MemoryFleetStore):
    """Its writes of presence complete when the test says."""

    def __init__(self):
        super().__init__()
        self.writes = []

    def node_seen(self, node_id, online, at, state):
        super().node_seen(node_id, online, at, state)
        d = defer.Deferred()
        self.writes.append(d)
        return d


def test_join_state_and_leave_are_heard_after_they_are_stored():
    store, clock = SlowStore(), Clock()
    clock.advance(50)
    fleet = Fleet(store, clock)
    verifyObject(interfaces.INodeEvents, fleet.node_events)
    heard, other = [], []
    fleet.node_events.listen(NODE, heard.append)
    fleet.node_events.listen(OTHER, other.append)

    fleet.node_joined(1, NODE)
    assert heard == []  # not stored yet
    store.writes.pop(0).callback(None)
    assert heard == [{"node_id": NODE, "online": True, "time": 50.0}]

    clock.advance(1)
    fleet.node_published(NODE, protocol.STATE, {"version": "1", "chutes": [], "commands": []})
    assert len(heard) == 1
    store.writes.pop(0).callback(None)
    assert heard[-1] == {"node_id": NODE, "online": True, "time": 51.0}

    fleet.node_joined(2, NODE)  # a second session of an online node: no change
    clock.advance(1)
    fleet.node_left(1)
    fleet.node_left(2)
    store.writes.pop(0).callback(None)
    assert heard[-1] == {"node_id": NODE, "online": False, "time": 52.0} and len(heard) == 3
    assert other == [] and store.writes == []
