"""Start-up time of the node daemon: process start -> GET /api/v1/health answers 200.

Goal: under 1.0 s with a state dir that holds 1,000 finished changes.

The state dir is made by the daemon itself (one start and a SIGTERM), then 1,000 succeeded changes with three
progress messages each are written into its database with the project's own journal. Each run spawns
``python -m pdserver.main node`` and polls health every 10 ms; the daemon is stopped with SIGTERM and must
exit 0.

Baseline, timed the same way: a bare python that imports exactly the library modules the daemon's code loads
(everything in sys.modules after importing pdserver.main/node/logs and the reactor, pdserver's own modules
excepted) and serves a plain twisted.web resource. The difference is therefore what pdserver itself adds:
its own modules, the database, the service tree, the routes.
"""
import os
import statistics
import sys
import time
from pathlib import Path

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import _common as c  # noqa: E402

RUNS = 5
OLD_CHANGES = 1000
GOAL = 1.0


def seed(scratch: c.Scratch) -> Path:
    """A state dir made by a real first start, plus OLD_CHANGES finished changes."""
    from pdserver.changes.journal import ChangeJournal
    from pdserver.changes.model import ChangeState
    from pdserver.storage import open_database

    state = scratch.dir / "state"
    port = c.free_port()
    proc = scratch.spawn_daemon(state, port)
    c.wait_healthy(proc, port, time.perf_counter())
    code = c.stop(proc)
    if code != 0:
        raise RuntimeError(f"the seeding start exited {code}")
    conn = open_database(state / "node.db")
    journal = ChangeJournal(conn)
    now = time.time() - 86400
    conn.execute("BEGIN")
    for i in range(OLD_CHANGES):
        change = journal.create("hostconfig", None, "paradrop", {"config": {"wifi": [], "index": i}}, now)
        journal.set_running(change.id, now)
        for message in ("change queued", "change started", "applying the configuration"):
            journal.add_message(change.id, now, message)
        journal.finish(change.id, ChangeState.SUCCEEDED, {"message": "ok", "steps": 3}, now)
    conn.execute("COMMIT")
    conn.close()
    return state


def time_start(start):
    """``start(port)`` spawns a child; returns its seconds to health and its exit code after SIGTERM."""
    port = c.free_port()
    t0 = time.perf_counter()
    proc = start(port)
    seconds = c.wait_healthy(proc, port, t0)
    return seconds, c.stop(proc)


def main():
    with c.Scratch("startup") as scratch:
        state = seed(scratch)
        modules = c.library_modules()
        ours, our_codes, base, base_codes = [], [], [], []
        for _ in range(RUNS):  # interleaved, so drift in the machine's load hits both alike
            seconds, code = time_start(lambda port: scratch.spawn_daemon(state, port))
            ours.append(seconds)
            our_codes.append(code)
            seconds, code = time_start(lambda port: scratch.spawn_baseline(modules, port))
            base.append(seconds)
            base_codes.append(code)
        if any(our_codes):
            print(scratch.log_tail("daemon.log"))

    print(f"daemon start-up, {RUNS} runs each, {OLD_CHANGES} old changes in the state dir; baseline imports "
          f"{len(modules)} library modules ({', '.join(c.third_party(modules))})")
    med, base_med = statistics.median(ours), statistics.median(base)
    c.table("startup: process start -> health 200", [
        ("median start (s)", f"{med:.3f}", f"{base_med:.3f}", f"{med / base_med:.2f}", f"< {GOAL:.1f} s",
         med < GOAL),
        ("max start (s)", f"{max(ours):.3f}", f"{max(base):.3f}", f"{max(ours) / max(base):.2f}",
         f"< {GOAL:.1f} s", max(ours) < GOAL),
        ("overhead over baseline (s)", f"{med - base_med:.3f}", "-", "-", "-", None),
        ("exit codes after SIGTERM", " ".join(map(str, our_codes)), " ".join(map(str, base_codes)), "-",
         "all 0", not any(our_codes)),
    ])


if __name__ == "__main__":
    main()
