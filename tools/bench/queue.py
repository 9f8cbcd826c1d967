"""Per-change overhead of the change queue, over 1,000 no-op changes, in-process on the real reactor.

Goal: under 2 ms per change.

Ours: a ChangeQueue over a ChangeJournal on a fresh SQLite file (the daemon's own open_database: WAL,
synchronous=NORMAL), with one change type whose handler reports progress once and returns a result. 1,000
changes are submitted at once; the clock stops when the observer of the last one gets its final event.

Baseline: the same 1,000 handler calls with no queue and no journal, each one a reactor turn after the previous
(deferLater(reactor, 0, ...) chained), as the queue also runs each change a reactor turn after the last one
ended. So the difference is the queue's own work: journal writes, state changes, events, scheduling.
"""
import os
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from twisted.internet import defer, task  # noqa: E402

import _common as c  # noqa: E402

CHANGES = 1000
ROUNDS = 3
GOAL_MS = 2.0


def handler(context):
    context.progress("working")
    return {"message": "ok"}


class _NoContext:
    def progress(self, message):
        pass


@defer.inlineCallbacks
def time_queue(reactor, db_path):
    from pdserver.changes.journal import ChangeJournal
    from pdserver.changes.queue import ChangeQueue
    from pdserver.storage import open_database

    conn = open_database(db_path)
    queue = ChangeQueue(ChangeJournal(conn), {"noop": handler}, reactor)
    yield queue.startService()
    finished = defer.Deferred()
    t0 = time.perf_counter()
    for _ in range(CHANGES):
        last = queue.submit("noop", None, "bench")
    submitted = time.perf_counter() - t0
    queue.observe(last.id, lambda event: "state" in event and finished.callback(event["state"]))
    state = yield finished
    total = time.perf_counter() - t0
    yield queue.stopService()
    succeeded = conn.execute("SELECT COUNT(*) FROM changes WHERE state = 'succeeded'").fetchone()[0]
    conn.close()
    return total, submitted, state, succeeded


@defer.inlineCallbacks
def time_baseline(reactor):
    context = _NoContext()
    t0 = time.perf_counter()
    for _ in range(CHANGES):
        yield task.deferLater(reactor, 0, handler, context)
    return time.perf_counter() - t0


@defer.inlineCallbacks
def bench(reactor, scratch_dir):
    rounds = []
    for i in range(ROUNDS):  # interleaved, each queue round on a fresh database; the median round is reported
        base = yield time_baseline(reactor)
        ours, submitted, state, succeeded = yield time_queue(reactor, scratch_dir / f"node-{i}.db")
        rounds.append((ours - base, ours, base, submitted, state, succeeded))
    overhead, ours, base, submitted, state, succeeded = sorted(rounds)[ROUNDS // 2]
    per_change_ms = overhead / CHANGES * 1000
    print(f"{CHANGES} no-op changes through the change queue, median of {ROUNDS} rounds (last one {state}; "
          f"{succeeded} succeeded in the journal); submitting them all took {submitted * 1000:.0f} ms "
          f"({submitted / CHANGES * 1000:.3f} ms each); overheads of all rounds (ms per change): "
          + ", ".join(f"{r[0] / CHANGES * 1000:.3f}" for r in rounds))
    c.table("queue: 1,000 no-op changes", [
        ("total wall (s)", f"{ours:.3f}", f"{base:.3f}", f"{ours / base:.1f}", "-", None),
        ("per change (ms)", f"{ours / CHANGES * 1000:.3f}", f"{base / CHANGES * 1000:.3f}",
         f"{ours / base:.1f}", "-", None),
        ("queue overhead per change (ms)", f"{per_change_ms:.3f}", "-", "-", f"< {GOAL_MS:.0f} ms",
         per_change_ms < GOAL_MS),
    ])


def main():
    with c.Scratch("queue") as scratch:
        task.react(bench, (scratch.dir,))


if __name__ == "__main__":
    main()
