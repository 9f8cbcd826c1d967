"""The change queue on a Clock: order, one at a time, cancel, failure, crash recovery, observers."""
import pytest
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.changes.journal import ChangeJournal
from pdserver.changes.model import ChangeFailed, ChangeState
from pdserver.changes.queue import ChangeQueue, NotCancellable, UnknownChangeType
from pdserver.errors import Throttled
from pdserver.storage import open_database


class Gates:
    def __init__(self):
        self.started = []
        self.gates = {}

    def __call__(self, context):
        self.started.append(context.change.target)
        gate = self.gates[context.change.target] = defer.Deferred()
        return gate


@pytest.fixture
def conn(tmp_path):
    c = open_database(tmp_path / "node.db")
    yield c
    c.close()


def make_queue(conn, handlers, recover=None, finished=None):
    clock = Clock()
    queue = ChangeQueue(ChangeJournal(conn), handlers, clock, recover=recover,
                        on_finished=(finished.append if finished is not None else None))
    queue.startService()
    clock.advance(0)
    return clock, queue


def test_changes_run_one_at_a_time_in_submission_order(conn):
    gates = Gates()
    finished = []
    clock, queue = make_queue(conn, {"t": gates}, finished=finished)
    ids = [queue.submit("t", name, "u").id for name in ("a", "b", "c")]
    assert ids == sorted(ids)
    assert gates.started == []
    clock.advance(0)
    assert gates.started == ["a"]
    gates.gates["a"].callback({"message": "ok"})
    assert gates.started == ["a"]
    clock.advance(0)
    assert gates.started == ["a", "b"]
    gates.gates["b"].errback(ChangeFailed("no space left", {"disk": "full"}))
    clock.advance(0)
    gates.gates["c"].callback(None)
    states = [queue.get(i).state for i in ids]
    assert states == [ChangeState.SUCCEEDED, ChangeState.FAILED, ChangeState.SUCCEEDED]
    assert queue.get(ids[1]).result == {"message": "no space left", "disk": "full"}
    assert [c.id for c in finished] == ids


def test_only_queued_changes_can_be_cancelled(conn):
    gates = Gates()
    clock, queue = make_queue(conn, {"t": gates})
    first, second = queue.submit("t", "a", "u"), queue.submit("t", "b", "u")
    clock.advance(0)
    with pytest.raises(NotCancellable):
        queue.cancel(first.id, "u")
    assert queue.cancel(second.id, "admin").state is ChangeState.CANCELLED
    gates.gates["a"].callback(None)
    clock.advance(0)
    assert gates.started == ["a"]
    with pytest.raises(UnknownChangeType):
        queue.submit("nope", None, "u")


def test_an_unexpected_exception_fails_the_change_without_stopping_the_queue(conn):
    def boom(context):
        raise ZeroDivisionError("oops")
    clock, queue = make_queue(conn, {"boom": boom, "ok": lambda context: {"message": "fine"}})
    a, b = queue.submit("boom", None, "u"), queue.submit("ok", None, "u")
    clock.advance(0)
    clock.advance(0)
    assert queue.get(a.id).state is ChangeState.FAILED
    assert "internal error" in queue.get(a.id).result["message"]
    assert queue.get(b.id).state is ChangeState.SUCCEEDED


def test_observers_get_progress_then_the_final_event(conn):
    def work(context):
        context.progress("one")
        context.progress("two")
        return {"message": "done"}
    clock, queue = make_queue(conn, {"w": work})
    change = queue.submit("w", None, "u")
    events = []
    queue.observe(change.id, events.append)
    clock.advance(0)
    assert [e["message"] for e in events[:-1]] == [f"change {change.id} started", "one", "two"]
    assert events[-1]["state"] == "succeeded" and events[-1]["result"] == {"message": "done"}
    assert queue._observers == {}


def test_at_start_running_changes_are_interrupted_and_recovered_and_queued_ones_resume(conn, tmp_path):
    journal = ChangeJournal(conn)
    crashed = journal.create("t", "a", "u", {}, 1.0)
    journal.set_running(crashed.id, 2.0)
    journal.record_plan(crashed.id, [{"action": "x", "args": {}, "description": "d", "undo": None}])
    journal.step_state(crashed.id, 0, "started", 2.0)
    waiting = journal.create("t", "b", "u", {}, 3.0)
    recovered = []

    def recover(context, steps):
        recovered.append((context.change.id, [s["index"] for s in steps]))
        return {"rolled_back_steps": len(steps)}
    gates = Gates()
    clock, queue = make_queue(conn, {"t": gates}, recover=recover)
    assert recovered == [(crashed.id, [0])]
    change = queue.get(crashed.id)
    assert change.state is ChangeState.INTERRUPTED and change.result["rolled_back_steps"] == 1
    assert gates.started == ["b"]
    assert queue.get(waiting.id).state is ChangeState.RUNNING


def test_a_failed_recovery_flags_the_change_for_attention(conn):
    journal = ChangeJournal(conn)
    crashed = journal.create("t", "a", "u", {}, 1.0)
    journal.set_running(crashed.id, 2.0)

    def recover(context, steps):
        raise ChangeFailed("rollback failed", {"undo_errors": ["nope"]}, needs_attention=True)
    make_queue(conn, {"t": Gates()}, recover=recover)
    change = journal.get(crashed.id)
    assert change.state is ChangeState.INTERRUPTED and change.needs_attention


def test_stop_waits_for_the_running_change_but_not_forever(conn):
    gates = Gates()
    clock, queue = make_queue(conn, {"t": gates})
    queue.submit("t", "a", "u")
    clock.advance(0)
    stopped = queue.stopService()
    assert not stopped.called
    gates.gates["a"].callback(None)
    assert stopped.called
    queue.startService()
    queue.submit("t", "b", "u")
    clock.advance(0)
    stopped = queue.stopService()
    clock.advance(ChangeQueue.STOP_GRACE)
    assert stopped.called


def test_ids_keep_growing_after_reopening_the_database(tmp_path):
    conn = open_database(tmp_path / "a.db")
    first = ChangeJournal(conn).create("t", None, "u", {}, 1.0).id
    conn.execute("DELETE FROM changes")
    conn.close()
    conn = open_database(tmp_path / "a.db")
    assert ChangeJournal(conn).create("t", None, "u", {}, 2.0).id > first
    conn.close()


def test_a_raising_observer_or_finish_hook_neither_fails_the_change_nor_stops_the_queue(conn):
    gates = Gates()

    def broken_hook(change):
        raise RuntimeError("audit is down")

    clock = Clock()
    queue = ChangeQueue(ChangeJournal(conn), {"t": gates}, clock, on_finished=broken_hook)
    queue.startService()
    first, second = queue.submit("t", "a", "u"), queue.submit("t", "b", "u")
    seen = []
    queue.observe(first.id, lambda event: (_ for _ in ()).throw(ConnectionError("socket closed")))
    queue.observe(first.id, seen.append)
    clock.advance(0)
    gates.gates["a"].callback({"message": "done"})
    clock.advance(0)
    gates.gates["b"].callback(None)
    assert queue.get(first.id).state is ChangeState.SUCCEEDED
    assert queue.get(second.id).state is ChangeState.SUCCEEDED
    assert seen[-1]["state"] == "succeeded"


def test_a_plan_that_cannot_be_journaled_leaves_no_half_written_steps(conn):
    journal = ChangeJournal(conn)
    change = journal.create("t", "a", "u", {}, 0.0)
    with pytest.raises(TypeError):
        journal.record_plan(change.id, [{"action": "ok"}, {"action": object()}])
    assert journal.steps(change.id) == []
    journal.record_plan(change.id, [{"action": "ok"}])
    assert [s["step"] for s in journal.steps(change.id)] == [{"action": "ok"}]


def test_a_full_queue_refuses_more_changes_until_some_have_run(conn):
    gates = Gates()
    clock = Clock()
    queue = ChangeQueue(ChangeJournal(conn), {"t": gates}, clock, max_queued=3)
    queue.startService()
    for name in ("a", "b", "c"):
        queue.submit("t", name, "u")
    with pytest.raises(Throttled) as refused:
        queue.submit("t", "d", "u")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"]
    clock.advance(0)
    assert gates.started == ["a"]
    assert queue.submit("t", "d", "u").target == "d"
