"""The fleet without a router: presence, state ingest, and the dispatcher against a node double that answers
calls as the test says (autobahn's ApplicationError for refusals, Deferreds it fires later)."""
import pytest
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer
from twisted.internet.task import Clock
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.cloud import protocol
from pdserver.controller.fleet import RETRY_CAP, RETRY_INITIAL, EventHub, Fleet, clean_state
from pdserver.controller.wamp import IFleetObserver, INodeCaller
from pdserver.errors import MAX_MESSAGE
from tests.fleet_store import MemoryFleetStore

NODE = "0123456789abcdef"
OTHER = "fedcba9876543210"


@implementer(INodeCaller)
class FakeNodes:
    """Answers install/update/commands with increasing change ids as an older node does (when queued), or with what
    ``answers`` holds; ``progress`` keeps each call's progress callable."""

    def __init__(self):
        self.calls = []
        self.answers = []
        self.states = {}
        self.progress = []
        self.next_change = 1
        self.relayed = []

    def relay(self, message):
        self.relayed.append(message)

    def call_node(self, node_id, procedure, on_progress=None, **kwargs):
        self.calls.append((node_id, procedure, kwargs))
        self.progress.append(on_progress)
        if procedure == protocol.GET_STATE:
            return defer.succeed(self.states.get(node_id, {"chutes": []}))
        if self.answers:
            answer = self.answers.pop(0)
            return answer if isinstance(answer, defer.Deferred) else defer.succeed(answer)
        self.next_change += 1
        return defer.succeed({"change_id": self.next_change - 1, "duplicate": False})


@pytest.fixture
def world():
    store = MemoryFleetStore()
    nodes = FakeNodes()
    clock = Clock()
    clock.advance(1000)
    fleet = Fleet(store, clock, nodes)
    return store, nodes, fleet, clock


def state(*chutes, commands=()):
    return {"node_id": NODE, "version": "0.1", "time": 1.0,
            "chutes": [{"name": n, "version": v, "state": "running"} for n, v in chutes], "commands": list(commands)}


def test_doubles_provide_their_interfaces(world):
    store, nodes, fleet, _ = world
    verifyObject(IFleetObserver, fleet)
    verifyObject(INodeCaller, nodes)
    interfaces = pytest.importorskip("pdserver.controller.interfaces")  # H2's module: present once merged
    verifyObject(interfaces.IFleetStore, store, tentative=True)
    verifyObject(interfaces.IFleet, fleet, tentative=True)
    verifyObject(interfaces.IDeploymentEvents, fleet.events, tentative=True)


def test_presence_follows_sessions_and_is_recorded_in_the_store(world):
    store, _, fleet, clock = world
    fleet.node_joined(1, NODE)
    fleet.node_joined(2, NODE)  # a reconnect before the old session's leave
    assert fleet.online() == {NODE}
    fleet.node_left(1)
    assert fleet.is_online(NODE)
    fleet.node_left(2)
    fleet.node_left(99)  # a session that was no node's
    assert not fleet.is_online(NODE)
    assert [(n, online) for n, online, _, _ in store.seen] == [(NODE, True), (NODE, False)]
    assert store.seen[-1][2] == clock.seconds()


def test_a_controller_rejoin_marks_offline_only_the_nodes_gone_meanwhile(world):
    store, _, fleet, _ = world
    fleet.node_joined(1, NODE)
    fleet.node_joined(2, OTHER)
    fleet.connected()
    fleet.node_joined(7, NODE)  # the router's session list after the rejoin
    fleet.listed()
    assert fleet.online() == {NODE}
    assert store.last_seen(OTHER)[1] is False
    assert store.last_seen(NODE)[1] is True


def test_state_is_ingested_under_the_topics_node_id_and_cleaned(world):
    store, _, fleet, _ = world
    fleet.node_joined(1, NODE)
    message = state(("web", "2"))
    message.update(node_id=OTHER, chutes=message["chutes"] + ["junk", {"version": 3}], extra="x" * 10)
    fleet.node_published(NODE, protocol.STATE, message)
    node_id, online, _, seen = store.last_seen(NODE)
    assert online is True and seen["node_id"] == NODE and seen["chutes"] == [
        {"name": "web", "version": "2", "state": "running"}] and "extra" not in seen
    assert store.last_seen(OTHER) is None
    assert clean_state(NODE, ["not", "a", "dict"]) is None


def test_a_pending_delivery_goes_out_on_the_state_message_and_follows_the_nodes_events(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE, chute="web", version="2", user="alice", role="admin")
    heard = []
    fleet.events.listen("d1", heard.append)
    fleet.node_joined(1, NODE)
    assert nodes.calls == []  # its procedures exist once it has published its state
    fleet.node_published(NODE, protocol.STATE, state())
    assert nodes.calls == [(NODE, protocol.INSTALL_CHUTE, {"key": delivery["key"], "user": "alice", "role": "admin",
                                                            "config": {"name": "web", "version": "2"}})]
    assert store.deliveries[delivery["key"]]["state"] == "sent"
    assert store.deliveries[delivery["key"]]["change_id"] == 1
    for event_state in ("queued", "running", "succeeded"):
        fleet.node_published(NODE, protocol.CHANGE, {"change_id": 1, "key": delivery["key"], "state": event_state,
                                                     "message": f"now {event_state}"})
    assert store.history[delivery["key"]] == ["pending", "sent", "queued", "running", "succeeded"]
    assert [m["state"] for m in heard] == ["sent", "queued", "running", "succeeded"]
    assert heard[-1] == {"node_id": NODE, "key": delivery["key"], "state": "succeeded", "message": "now succeeded",
                         "time": 1000.0}


def test_update_when_another_version_is_installed_nothing_when_the_same_is(world):
    store, nodes, fleet, _ = world
    newer = store.add_delivery(NODE, chute="web", version="3")
    same = store.add_delivery(NODE, chute="db", version="5")
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state(("web", "2"), ("db", "5")))
    assert [(p, kw["key"]) for _, p, kw in nodes.calls] == [(protocol.UPDATE_CHUTE, newer["key"])]
    assert store.deliveries[same["key"]]["state"] == "succeeded"
    assert "already installed" in store.deliveries[same["key"]]["message"]


def test_commands_call_their_procedure_and_unknown_ones_fail(world):
    store, nodes, fleet, _ = world
    stop = store.add_delivery(NODE, chute="web", command="stop")
    bogus = store.add_delivery(NODE, chute="web", command="explode")
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state(("web", "2")))
    assert nodes.calls == [(NODE, protocol.STOP_CHUTE, {"key": stop["key"], "user": "alice", "role": "owner",
                                                         "chute": "web"})]
    assert store.deliveries[bogus["key"]]["state"] == "failed"


def test_an_archive_is_fetched_from_the_backend_that_sends_its_delivery(world):
    store, nodes, fleet, _ = world
    fleet.base_url = lambda: "http://backend-b:8000"
    ours = store.add_delivery(NODE, chute="web", version="3")
    ours["config"], ours["source"] = None, {"path": "/api/v1/store/chutes/web/versions/3/archive", "token": "t",
                                            "sha256": "0" * 64}
    older = store.add_delivery(NODE, chute="db", version="1")  # stored by an earlier release: a whole URL
    older["config"], older["source"] = None, {"url": "http://old:8000/x", "token": "u", "sha256": "1" * 64}
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert [kw["source"] for _, _, kw in nodes.calls] == [
        {"url": "http://backend-b:8000/api/v1/store/chutes/web/versions/3/archive", "token": "t", "sha256": "0" * 64},
        {"url": "http://old:8000/x", "token": "u", "sha256": "1" * 64}]


def test_a_failed_call_leaves_the_delivery_pending_until_the_next_state_message(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    nodes.answers.append(defer.fail(ApplicationError("wamp.error.no_such_procedure")))
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert store.deliveries[delivery["key"]]["state"] == "pending"
    fleet.node_published(NODE, protocol.STATE, state())
    assert [kw["key"] for _, _, kw in nodes.calls] == [delivery["key"]] * 2
    assert store.deliveries[delivery["key"]]["state"] == "sent"


def test_a_nodes_refusal_ends_the_delivery_failed_with_its_reason_and_it_is_not_sent_again(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    nodes.answers.append(defer.fail(ApplicationError(
        protocol.ERROR_PREFIX + "conflict", code="conflict", field="interfaces.wlan0",
        message="interfaces.wlan0: a wifi-ap needs a radio and this node has none")))
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert store.history[delivery["key"]] == ["pending", "failed"]
    assert store.deliveries[delivery["key"]]["message"] == (
        "the node refused it: interfaces.wlan0: a wifi-ap needs a radio and this node has none")
    fleet.node_published(NODE, protocol.STATE, state())
    assert len(nodes.calls) == 1


@pytest.mark.parametrize("message, shown", [
    ("x" * 100_000, "x"), (["not", "text"], "conflict"), ({"nested": {"deep": 1}}, "conflict"), (None, "conflict"),
    ("", "conflict"), ("bad \udcff utf-8", "bad"),
])
def test_a_hostile_refusal_is_kept_short_and_plain(world, message, shown):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    nodes.answers.append(defer.fail(ApplicationError(protocol.ERROR_PREFIX + "conflict", message=message)))
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    stored = store.deliveries[delivery["key"]]
    assert stored["state"] == "failed"
    assert stored["message"].startswith("the node refused it: " + shown) and len(stored["message"]) <= MAX_MESSAGE + 40
    stored["message"].encode("utf-8")


@pytest.mark.parametrize("error", [
    ApplicationError(protocol.ERROR_PREFIX + "service_unavailable", code="service_unavailable",
                     message="cannot fetch the archive: connection refused"),  # the archive's backend went away
    ApplicationError(protocol.ERROR_PREFIX + "too_many_requests", code="too_many_requests", message="busy"),
    ApplicationError("wamp.error.canceled", "timed out"),
    ApplicationError("org.example.other", "not the node's own error"),
])
def test_a_refusal_that_may_pass_leaves_the_delivery_pending_to_be_sent_again(world, error):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    nodes.answers.append(defer.fail(error))
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert store.deliveries[delivery["key"]]["state"] == "pending"
    fleet.node_published(NODE, protocol.STATE, state())
    assert [kw["key"] for _, _, kw in nodes.calls] == [delivery["key"]] * 2


def test_a_failed_call_is_sent_again_after_a_growing_backoff_even_from_an_idle_node(world):
    """An idle node sends no state message: without the retry its delivery would wait for its next reconnect."""
    store, nodes, fleet, clock = world
    delivery = store.add_delivery(NODE)
    nodes.answers += [defer.fail(ApplicationError("wamp.error.canceled", "timed out")),
                      defer.fail(ApplicationError(protocol.ERROR_PREFIX + "service_unavailable", message="busy"))]
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert len(nodes.calls) == 1
    clock.advance(RETRY_INITIAL * 0.85)
    assert len(nodes.calls) == 1
    clock.advance(RETRY_INITIAL * 0.3)  # 5 s +-10%: the second try, which fails again
    assert len(nodes.calls) == 2 and store.deliveries[delivery["key"]]["state"] == "pending"
    clock.advance(RETRY_INITIAL * 1.5)
    assert len(nodes.calls) == 2  # now 10 s +-10%
    clock.advance(RETRY_INITIAL * 0.7)
    assert [kw["key"] for _, _, kw in nodes.calls] == [delivery["key"]] * 3
    assert store.deliveries[delivery["key"]]["state"] == "sent"
    clock.advance(RETRY_CAP)
    assert len(nodes.calls) == 3  # answered: no more tries


def test_a_node_that_leaves_takes_its_retry_with_it_and_its_return_starts_the_backoff_afresh(world):
    store, nodes, fleet, clock = world
    delivery = store.add_delivery(NODE)
    nodes.answers += [defer.fail(ApplicationError("wamp.error.canceled", "timed out")) for _ in range(2)]
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    fleet.node_left(1)
    clock.advance(RETRY_CAP)
    assert len(nodes.calls) == 1
    fleet.node_joined(2, NODE)
    fleet.node_published(NODE, protocol.STATE, state())  # its return: sent at once, fails again
    clock.advance(RETRY_INITIAL * 1.15)  # the first step of the backoff, not the second
    assert [kw["key"] for _, _, kw in nodes.calls] == [delivery["key"]] * 3
    assert store.deliveries[delivery["key"]]["state"] == "sent"


def test_reported_commands_settle_a_delivery_whose_answer_was_lost_without_sending_it_again(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state(commands=[{"key": delivery["key"], "change_id": 9,
                                                                "state": "succeeded"}]))
    assert nodes.calls == []
    assert store.deliveries[delivery["key"]]["state"] == "succeeded"
    assert store.deliveries[delivery["key"]]["change_id"] == 9


def test_states_only_move_forward_whatever_order_answer_and_events_come_in(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    answer = defer.Deferred()
    nodes.answers.append(answer)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    fleet.node_published(NODE, protocol.CHANGE, {"change_id": 4, "key": delivery["key"], "state": "running"})
    answer.callback({"change_id": 4, "duplicate": False})  # the answer arrives after the node's event
    fleet.node_published(NODE, protocol.CHANGE, {"change_id": 4, "key": delivery["key"], "state": "failed"})
    fleet.node_published(NODE, protocol.CHANGE, {"change_id": 4, "key": delivery["key"], "state": "running"})
    assert store.history[delivery["key"]] == ["pending", "running", "failed"]


def test_after_a_controller_restart_the_first_change_event_finds_its_delivery(world):
    store, nodes, fleet, clock = world
    delivery = store.add_delivery(NODE)
    store.update_delivery(delivery["key"], "sent", 1.0, change_id=3)
    restarted = Fleet(store, clock, nodes)
    restarted.node_joined(1, NODE)
    restarted.node_published(NODE, protocol.CHANGE, {"change_id": 3, "key": delivery["key"], "state": "running"})
    assert store.deliveries[delivery["key"]]["state"] == "running"
    assert nodes.calls == []


def test_a_node_cannot_touch_another_nodes_delivery(world):
    store, _, fleet, _ = world
    theirs = store.add_delivery(OTHER)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.CHANGE, {"change_id": 1, "key": theirs["key"], "state": "failed"})
    fleet.node_published(NODE, protocol.STATE, state(commands=[{"key": theirs["key"], "change_id": 1,
                                                                "state": "succeeded"}]))
    assert store.history[theirs["key"]] == ["pending"]


def test_wake_sends_only_to_online_nodes_and_asks_for_state_when_unknown(world):
    store, nodes, fleet, _ = world
    fleet.node_joined(1, NODE)
    here = store.add_delivery(NODE, chute="web", version="2")
    away = store.add_delivery(OTHER)
    nodes.states[NODE] = state(("web", "1"))
    fleet.wake([NODE, OTHER])
    assert [(n, p) for n, p, _ in nodes.calls] == [(NODE, protocol.GET_STATE), (NODE, protocol.UPDATE_CHUTE)]
    assert store.deliveries[here["key"]]["state"] == "sent"
    assert store.deliveries[away["key"]]["state"] == "pending"


def test_without_the_nodes_state_nothing_is_sent_until_its_state_message(world):
    store, nodes, fleet, _ = world
    fleet.node_joined(1, NODE)
    delivery = store.add_delivery(NODE, chute="web", version="2")
    nodes.call_node = lambda node_id, procedure, **kw: (nodes.calls.append((node_id, procedure, kw)) or
                                                        defer.fail(ApplicationError("wamp.error.no_such_procedure")))
    fleet.wake([NODE])
    assert [p for _, p, _ in nodes.calls] == [protocol.GET_STATE]
    assert store.deliveries[delivery["key"]]["state"] == "pending"


def test_deliveries_of_one_node_go_out_one_at_a_time_in_order(world):
    store, nodes, fleet, _ = world
    first, second = store.add_delivery(NODE, chute="a"), store.add_delivery(NODE, chute="b")
    answer = defer.Deferred()
    nodes.answers.append(answer)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    fleet.wake([NODE])  # while the first call is out
    assert [kw["key"] for _, _, kw in nodes.calls] == [first["key"]]
    answer.callback({"change_id": 1, "duplicate": False})
    assert [kw["key"] for _, _, kw in nodes.calls] == [first["key"], second["key"]]


class TestHostileNodeMessages:
    """What a node publishes is input: wrong types, sizes, integers past 64 bits, invalid Unicode."""

    def test_a_state_message_is_bounded_and_typed(self):
        message = {"version": ["x"], "time": "soon", "chutes": [{"name": f"c{i}", "version": i} for i in range(5000)]
                   + [{"name": True}, {"name": {"a": 1}}, {"name": "v" * 201}],
                   "commands": [{"key": "k", "change_id": 2 ** 64, "state": "running"}, {"key": None}] * 500}
        state = clean_state(NODE, message)
        assert state["version"] is None and state["time"] is None
        assert len(state["chutes"]) == 1000 and state["chutes"][7] == {"name": "c7", "version": "7", "state": None}
        assert len(state["commands"]) == 100 and state["commands"][0] == {"key": "k", "change_id": None,
                                                                         "state": "running"}
        assert clean_state(NODE, {"chutes": "many", "commands": {"k": 1}}) == {
            "node_id": NODE, "version": None, "time": None, "chutes": [], "commands": []}

    def test_invalid_unicode_is_replaced_before_it_reaches_the_store(self, world):
        store, _, fleet, _ = world
        fleet.node_joined(1, NODE)
        fleet.node_published(NODE, protocol.STATE, {"version": "1\ud800", "chutes": [{"name": "w\udfff"}]})
        seen = store.last_seen(NODE)[3]
        assert seen["version"] == "1?" and seen["chutes"][0]["name"] == "w?"
        seen["version"].encode("utf-8")

    def test_change_events_with_bad_fields_change_nothing_or_only_what_is_valid(self, world):
        store, _, fleet, _ = world
        delivery = store.add_delivery(NODE)
        fleet.node_joined(1, NODE)
        fleet.node_published(NODE, protocol.STATE, state())
        for event in ({"key": delivery["key"], "state": "exploded"}, {"key": [delivery["key"]], "state": "failed"},
                      {"key": delivery["key"] + "x" * 300, "state": "failed"}, "not a dict", None):
            fleet.node_published(NODE, protocol.CHANGE, event)
        assert store.history[delivery["key"]] == ["pending", "sent"]
        fleet.node_published(NODE, protocol.CHANGE, {"key": delivery["key"], "state": "failed",
                                                     "change_id": -1, "message": "m" * 100000 + "\ud800"})
        assert store.deliveries[delivery["key"]]["state"] == "failed"
        assert store.deliveries[delivery["key"]]["change_id"] == 1
        assert len(store.deliveries[delivery["key"]]["message"]) < 2100


def test_telemetry_is_kept_per_node():
    fleet = Fleet(MemoryFleetStore(), Clock())
    fleet.node_published(NODE, protocol.TELEMETRY, {"cpu": 3})
    fleet.node_published(NODE, protocol.TELEMETRY, "not a document")
    assert fleet.telemetry == {NODE: {"cpu": 3}}


def test_event_hub_unsubscribe_and_a_failing_listener():
    hub = EventHub()
    heard = []

    def broken(message):
        raise RuntimeError("listener bug")
    hub.listen(5, broken)
    stop = hub.listen("5", heard.append)
    hub.emit(5, {"n": 1})
    stop()
    stop()
    hub.emit(5, {"n": 2})
    assert heard == [{"n": 1}]


class CountingStore(MemoryFleetStore):
    """Counts the reads of pending deliveries; its delivery writes stay unfired until the test fires them."""

    def __init__(self):
        super().__init__()
        self.reads = 0
        self.writes = []

    def pending_deliveries_of(self, node_ids):
        self.reads += 1
        return super().pending_deliveries_of(node_ids)

    def update_delivery(self, key, state, at, change_id=None, message=None):
        super().update_delivery(key, state, at, change_id, message)
        self.writes.append(defer.Deferred())
        return self.writes[-1]


def test_wake_with_the_new_deliveries_reads_nothing_back_for_a_node_it_knows():
    store, nodes, clock = CountingStore(), FakeNodes(), Clock()
    fleet = Fleet(store, clock, nodes)
    fleet.node_joined(1, NODE)
    fleet.node_joined(2, OTHER)
    fleet.node_published(NODE, protocol.STATE, state())
    fleet.node_published(OTHER, protocol.STATE, state())
    assert store.reads == 2
    fresh = [store.add_delivery(n, chute="web", version="1", deployment_id="d9") for n in (NODE, OTHER)]
    fleet.wake([NODE, OTHER], [dict(d) for d in fresh])
    assert store.reads == 2
    assert sorted((n, p, kw["key"]) for n, p, kw in nodes.calls) == sorted(
        (d["node_id"], protocol.INSTALL_CHUTE, d["key"]) for d in fresh)
    fleet.node_published(NODE, protocol.STATE, state(("web", "1")))
    assert store.reads == 2  # its state message neither
    fleet.wake([NODE])  # without the deliveries: read again
    assert store.reads == 3
    fleet.connected()
    fleet.node_joined(3, NODE)
    fleet.listed()  # a controller rejoin reads everything again
    assert store.reads == 4


def test_listeners_hear_progress_before_its_write_and_an_end_once_it_is_written():
    store, nodes, clock = CountingStore(), FakeNodes(), Clock()
    fleet = Fleet(store, clock, nodes)
    delivery = store.add_delivery(NODE, chute="web", version="1", deployment_id="d7")
    heard = []
    fleet.events.listen("d7", heard.append)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    fleet.node_published(NODE, protocol.CHANGE, {"key": delivery["key"], "change_id": 1, "state": "succeeded"})
    assert [m["state"] for m in heard] == ["sent"]
    assert [w.called for w in store.writes] == [False, False]
    store.writes[1].callback(True)
    assert [m["state"] for m in heard] == ["sent", "succeeded"]
    store.writes[0].callback(True)


def test_a_delivery_answered_when_its_change_ends_is_final_with_its_progress_and_the_node_s_chutes_stored(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE, chute="web", version="2", deployment_id="d3")
    heard = []
    fleet.events.listen("d3", heard.append)
    answer = defer.Deferred()
    nodes.answers.append(answer)
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    [progress] = [p for p in nodes.progress if p is not None]
    progress({"change_id": 5, "key": delivery["key"], "state": "running", "message": "pulling"})
    progress("junk")
    progress({"change_id": 5, "key": delivery["key"], "state": "exploded"})
    answer.callback({"change_id": 5, "duplicate": False, "state": "succeeded", "message": "change 5 succeeded",
                     "version": "0.2", "chutes": [{"name": "web", "version": "2", "state": "running"}, "junk"]})
    assert store.history[delivery["key"]] == ["pending", "running", "succeeded"]
    assert [(m["state"], m["message"]) for m in heard] == [("running", "pulling"),
                                                           ("succeeded", "change 5 succeeded")]
    assert store.deliveries[delivery["key"]]["change_id"] == 5
    node_id, online, _, seen = store.last_seen(NODE)
    assert online and seen["version"] == "0.2" and seen["chutes"] == [{"name": "web", "version": "2",
                                                                        "state": "running"}]
    again = store.add_delivery(NODE, chute="web", version="2")
    fleet.wake([NODE])
    assert store.deliveries[again["key"]]["state"] == "succeeded"  # the answer's chutes: already installed
    assert len(nodes.calls) == 1


def test_a_duplicate_answered_at_its_change_s_end_says_so_when_the_node_gives_no_message(world):
    store, nodes, fleet, _ = world
    delivery = store.add_delivery(NODE)
    nodes.answers.append({"change_id": 2, "duplicate": True, "state": "failed", "chutes": []})
    fleet.node_joined(1, NODE)
    fleet.node_published(NODE, protocol.STATE, state())
    assert store.deliveries[delivery["key"]]["state"] == "failed"
    assert store.deliveries[delivery["key"]]["message"] == "the node had it already"


def test_a_wake_of_many_nodes_sends_a_slice_per_turn_of_the_reactor_and_fires_when_all_were_tried():
    store, nodes, clock = MemoryFleetStore(), FakeNodes(), Clock()
    fleet = Fleet(store, clock, nodes)
    many = [f"{i:016x}" for i in range(450)]
    for session, node_id in enumerate(many):
        fleet.node_joined(session, node_id)
        fleet.node_published(node_id, protocol.STATE, dict(state(), node_id=node_id))
    fresh = [store.add_delivery(n, chute="web", version="1") for n in many]
    done = []
    fleet.wake(many, [dict(d) for d in fresh]).addCallback(done.append)
    assert len(nodes.calls) == 200 and not done  # the first calls leave before the rest are made
    clock.advance(0)  # the reactor's next turns (a Clock runs the slices each schedules for now at once)
    assert len(nodes.calls) == 450 and done == [None]
    assert sorted(kw["key"] for _, _, kw in nodes.calls) == sorted(d["key"] for d in fresh)
