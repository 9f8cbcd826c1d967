"""Several controller backends on one router, without the router: who owns which node, the owner alone sending and
writing, the relay between backends, and the take-over when a backend dies in the middle of a delivery. The
backends share one store and one set of node doubles, as they share one database and one router in production
(tests/integration/test_controller_backends.py runs the real processes)."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.cloud import protocol
from pdserver.controller.fleet import Fleet
from pdserver.controller.ownership import Backends, owner
from pdserver.controller.wamp import IFleetObserver, INodeCaller
from tests.fleet_store import MemoryFleetStore

NODES = [f"{i:016x}" for i in range(1, 41)]


class Nodes:
    """Node doubles that run each key once: a key seen again answers as a duplicate when its change ends.
    ``hold`` names keys whose first call is answered only when the test fires ``held[key]``."""

    def __init__(self):
        self.runs = {}  # (node id, key) -> times run
        self.calls = []  # (backend, node id, key)
        self.hold = set()
        self.held = {}

    def call(self, backend, node_id, procedure, on_progress=None, **kwargs):
        if procedure == protocol.GET_STATE:
            return defer.succeed({"chutes": []})
        key = kwargs["key"]
        self.calls.append((backend, node_id, key))
        duplicate = (node_id, key) in self.runs
        if not duplicate:
            self.runs[(node_id, key)] = 1
        if on_progress is not None and not duplicate:
            on_progress({"change_id": 7, "key": key, "state": "running"})
        answer = {"change_id": 7, "duplicate": duplicate, "state": "succeeded", "chutes": [
            {"name": "web", "version": "1", "state": "running"}]}
        if key in self.hold and not duplicate:
            self.held[key] = defer.Deferred()
            return self.held[key]
        return defer.succeed(answer)


@implementer(INodeCaller)
class Link:
    """One backend's way to the nodes and to the other backends (relayed messages arrive synchronously)."""

    def __init__(self, backend, nodes, bus):
        self.backend, self._nodes, self._bus = backend, nodes, bus
        self.relayed = []

    def call_node(self, node_id, procedure, on_progress=None, **kwargs):
        return self._nodes.call(self.backend, node_id, procedure, on_progress, **kwargs)

    def relay(self, message):
        self.relayed.append(message)
        for backend, fleet in list(self._bus.items()):
            if backend != self.backend:
                fleet.relayed(message)


def backends(count=2):
    """``count`` fleets on one store, each listing the others as the router would; every node joined on each."""
    store, nodes, clock, bus = MemoryFleetStore(), Nodes(), Clock(), {}
    clock.advance(1000)
    for backend in range(1, count + 1):
        fleet = Fleet(store, clock, Link(backend, nodes, bus))
        fleet.connected()
        fleet.backends_listed(backend, [b for b in range(1, count + 1) if b != backend])
        bus[backend] = fleet
    for session, node_id in enumerate(NODES, start=100):
        for fleet in bus.values():
            fleet.node_joined(session, node_id)
    for node_id in NODES:
        for fleet in bus.values():
            fleet.node_published(node_id, protocol.STATE, {"chutes": []})
    clock.advance(0)
    for fleet in bus.values():
        del fleet.caller.relayed[:]
    return store, nodes, clock, bus


def owned(backend, ids):
    return [n for n in NODES if owner(n, ids) == backend]


def test_the_owners_split_the_fleet_and_a_change_of_backends_moves_only_what_it_must():
    ids = [101, 202]
    share = [len([n for n in (f"{i:016x}" for i in range(2000)) if owner(n, ids) == b]) for b in ids]
    assert all(800 < count < 1200 for count in share)
    nodes = [f"{i:016x}" for i in range(2000)]
    before = {n: owner(n, ids) for n in nodes}
    after = {n: owner(n, ids + [303]) for n in nodes}
    moved = [n for n in nodes if before[n] != after[n]]
    assert all(after[n] == 303 for n in moved) and 500 < len(moved) < 830  # about a third, all to the newcomer
    assert owner(nodes[0], []) is None

    alone = Backends()
    assert alone.owns(nodes[0])  # before it knows its session: a controller alone
    alone.reset(5, [6])
    assert alone.owns(nodes[0]) != (alone.owner_of(nodes[0]) == 6)
    assert not alone.remove(5) and alone.remove(6) and not alone.remove(6)
    assert alone.alone and all(alone.owns(n) for n in nodes[:50])


def test_doubles_provide_their_interfaces():
    _, _, _, bus = backends()
    verifyObject(IFleetObserver, bus[1])
    verifyObject(INodeCaller, bus[1].caller)


def test_presence_is_written_once_per_node_by_its_owner():
    store, _, _, bus = backends()
    joined = [n for n, online, _, state in store.seen if online and state is None]
    reported = [n for n, online, _, state in store.seen if online and state is not None]
    assert sorted(joined) == sorted(reported) == sorted(NODES)  # one of each per node, from either backend
    for fleet in bus.values():
        fleet.node_left(100)
    assert [(n, online) for n, online, _, _ in store.seen[-1:]] == [(NODES[0], False)]
    assert len([1 for n, online, _, _ in store.seen if n == NODES[0] and not online]) == 1


def test_a_deployment_made_on_one_backend_goes_out_from_each_node_s_owner_once():
    store, nodes, clock, bus = backends()
    fresh = [store.add_delivery(n, chute="web", version="1") for n in NODES]
    bus[1].wake(NODES, [dict(d) for d in fresh])
    clock.advance(0)
    assert sorted((backend, node_id) for backend, node_id, _ in nodes.calls) == sorted(
        [(1, n) for n in owned(1, [1, 2])] + [(2, n) for n in owned(2, [1, 2])])
    assert owned(1, [1, 2]) and owned(2, [1, 2])
    assert all(store.deliveries[d["key"]]["state"] == "succeeded" for d in fresh)
    assert set(nodes.runs.values()) == {1}
    assert [m for m in bus[2].caller.relayed if "wake" in m] == []  # woken through the relay, not bounced back


def test_progress_stored_by_the_owner_reaches_listeners_on_the_other_backend():
    store, nodes, clock, bus = backends()
    node_id = owned(1, [1, 2])[0]
    delivery = store.add_delivery(node_id, chute="web", version="1", deployment_id="dep9")
    heard, presence = [], []
    bus[2].events.listen("dep9", heard.append)
    bus[2].node_events.listen(node_id, presence.append)
    bus[2].wake([node_id])  # the other backend's HTTP API made it
    assert heard == []  # relayed at the end of the reactor's turn, together
    clock.advance(0)
    assert [(m["key"], m["state"]) for m in heard] == [(delivery["key"], "running"), (delivery["key"], "succeeded")]
    assert presence and presence[-1]["online"] is True
    assert [len(m["updates"]) for m in bus[1].caller.relayed if "updates" in m] == [3]


def test_a_backend_killed_in_the_middle_of_its_deliveries_has_them_finished_by_another_each_run_once():
    store, nodes, clock, bus = backends()
    first = owned(1, [1, 2])
    fresh = {n: store.add_delivery(n, chute="web", version="1") for n in NODES}
    nodes.hold = {fresh[n]["key"] for n in first}
    bus[1].wake(NODES, [dict(d) for d in fresh.values()])
    assert set(nodes.held) == nodes.hold  # every node of backend 1 runs its change; no answer comes back
    assert {store.deliveries[fresh[n]["key"]]["state"] for n in first} == {"running"}
    assert {store.deliveries[fresh[n]["key"]]["state"] for n in NODES if n not in first} == {"succeeded"}

    del bus[1]  # kill -9: its calls never answer, its session leaves
    bus[2].node_left(999)
    bus[2].backend_left(1)
    assert all(store.deliveries[d["key"]]["state"] == "succeeded" for d in fresh.values())
    assert set(nodes.runs.values()) == {1} and len(nodes.runs) == len(NODES)
    assert sorted(n for b, n, _ in nodes.calls if b == 2) == sorted(NODES)  # resent with the same keys
    bus[2].backend_left(1)  # the router's leave heard twice changes nothing
    assert len(nodes.calls) == len(NODES) + len(first)


def test_deliveries_another_backend_had_sent_are_sent_again_by_the_new_owner_but_its_own_are_not():
    store, nodes, clock, bus = backends()
    node_id = owned(1, [1, 2])[0]
    delivery = store.add_delivery(node_id, chute="web", version="1")
    nodes.hold = {delivery["key"]}
    bus[1].wake([node_id])
    store.update_delivery(delivery["key"], "running", 1001.0)
    bus[1].wake([node_id])  # read again while its own call is out: not sent twice
    assert len(nodes.calls) == 1
    bus[2].backend_left(1)
    assert [(b, n) for b, n, _ in nodes.calls] == [(1, node_id), (2, node_id)]
    assert store.deliveries[delivery["key"]]["state"] == "succeeded"


def test_a_node_that_left_while_its_owner_died_is_marked_offline_by_the_new_owner():
    store, _, _, bus = backends()
    node_id = owned(1, [1, 2])[0]
    session = 100 + NODES.index(node_id)
    bus[2].node_left(session)  # heard before the owner's own leave: not this backend's to write
    assert store.last_seen(node_id)[1] is True
    bus[2].backend_left(1)
    assert store.last_seen(node_id)[1] is False


def test_a_backend_that_joins_takes_its_share_and_the_others_let_it_go():
    store, nodes, clock, bus = backends(count=1)
    fresh = {n: store.add_delivery(n, chute="web", version="1") for n in NODES}
    late = Fleet(store, clock, Link(2, nodes, bus))
    late.connected()
    late.backends_listed(2, [1])
    bus[2] = late
    bus[1].backend_joined(2)
    for session, node_id in enumerate(NODES, start=100):
        late.node_joined(session, node_id)
    late.listed()
    bus[1].wake(NODES)
    assert sorted((b, n) for b, n, _ in nodes.calls) == sorted(
        [(1, n) for n in owned(1, [1, 2])] + [(2, n) for n in owned(2, [1, 2])])
    assert all(store.deliveries[d["key"]]["state"] == "succeeded" for d in fresh.values())


def test_what_arrives_on_the_relay_is_checked():
    _, nodes, clock, bus = backends()
    for message in ({"wake": "x"}, {"wake": [1, None, "../../x", "0" * 65]}, {"updates": "x"},
                    {"updates": [None, {"deployment": 5, "update": {}}, {"node": "bad id", "update": {}},
                                 {"deployment": "d", "update": "x"}]}, {}):
        bus[2].relayed(message)
    clock.advance(0)
    assert nodes.calls == [] and bus[2].caller.relayed == []


def _counting_reads(store):
    reads, read = [], store.pending_deliveries_of
    store.pending_deliveries_of = lambda node_ids: reads.append(sorted(node_ids)) or read(node_ids)
    return reads


def test_a_relayed_wake_carries_the_new_deliveries_so_the_other_backend_reads_none():
    store, nodes, clock, bus = backends()
    reads = _counting_reads(store)
    fresh = [store.add_delivery(n, chute="web", version="2") for n in NODES]
    bus[1].wake(NODES, [dict(d) for d in fresh])
    clock.advance(0)
    (relayed,) = [m for m in bus[1].caller.relayed if "wake" in m]
    assert relayed["wake"] == sorted(owned(2, [1, 2])) and len(relayed["each"]) == len(owned(2, [1, 2]))
    assert relayed["shared"]["config"] == {"name": "web", "version": "2"}  # once, not once per node
    assert reads == []
    assert all(store.deliveries[d["key"]]["state"] == "succeeded" for d in fresh)
    assert sorted(n for b, n, _ in nodes.calls[-len(NODES):] if b == 2) == sorted(owned(2, [1, 2]))


@pytest.mark.parametrize("damage", [
    lambda m: m.update(shared="x"),
    lambda m: m["shared"].pop("config"),
    lambda m: m["shared"].update(chute=["web"]),
    lambda m: m["shared"].update(config="not a dict"),
    lambda m: m.update(each=[["x"] * 4]),
    lambda m: m["each"].append([NODES[0], "k", "owner", "succeeded"]),
    lambda m: m["each"].append([NODES[0], "k", "owner"]),
    lambda m: m["each"].append([NODES[0], 5, "owner", "pending"]),
])
def test_a_relayed_wake_whose_deliveries_are_malformed_has_them_read_from_the_database(damage):
    store, nodes, clock, bus = backends()
    mine = owned(2, [1, 2])
    fresh = [store.add_delivery(n, chute="web", version="2") for n in mine]
    message = {"wake": mine, "shared": {"deployment_id": "d1", "command": None, "chute": "web", "version": "2",
                                        "config": {"name": "web", "version": "2"}, "source": None, "user": "alice"},
               "each": [[d["node_id"], d["key"], "owner", "pending"] for d in fresh]}
    damage(message)
    reads = _counting_reads(store)
    bus[2].relayed(message)
    clock.advance(0)
    assert reads == [sorted(mine)]
    assert all(store.deliveries[d["key"]]["state"] == "succeeded" for d in fresh)
    assert "k" not in store.deliveries
