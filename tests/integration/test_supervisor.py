"""The supervisor with real processes on the real reactor: kill -9 brings a child back within 2 s, an instantly
exiting command backs off and is reported as a crash loop, stop leaves no process, the children a kill -9'd daemon
left are killed at the next start, and child output reaches the node log."""
import functools
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.logger import globalLogPublisher

from pdserver.backoff import backoff
from pdserver.sysconfig.supervisor import ChildSpec, ProcTable, Supervisor

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROCS = ProcTable()


class Events(list):
    """What the supervisor reported, with the reactor time; remembers each started process's identity."""

    def __init__(self):
        super().__init__()
        self.started = {}

    def __call__(self, name, event, details):
        if event == "started":
            self.started[details["pid"]] = PROCS.identity(details["pid"])
        self.append((reactor.seconds(), name, event, details))

    def of(self, kind):
        return [(t, d) for t, _, e, d in self if e == kind]


async def until(predicate, timeout, what):
    """Poll ``predicate`` on the reactor every 10 ms; fail after ``timeout`` seconds."""
    deadline = reactor.seconds() + timeout
    while not predicate():
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await task.deferLater(reactor, 0.01, lambda: None)


def gone(identity, pid) -> bool:
    """The process that had ``identity`` no longer runs (its pid may since belong to another one)."""
    return PROCS.identity(pid) != identity


def kill_if_same(pid, identity):
    if identity is not None and PROCS.identity(pid) == identity:
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def supervised(tmp_path):
    """Makes started Supervisors; all are stopped, and any process they started is killed, at the end."""
    made = []

    def make(**kwargs):
        events = Events()
        sup = Supervisor(reactor, tmp_path / "pids", on_event=events, **kwargs)
        made.append((sup, events))
        sup.startService()
        return sup, events

    yield make
    for sup, events in made:
        if sup.running:
            pytest_twisted.blockon(sup.stopService())
        for pid, identity in events.started.items():
            kill_if_same(pid, identity)


@pytest_twisted.ensureDeferred
async def test_a_child_killed_with_sigkill_is_back_within_two_seconds(supervised):
    sup, events = supervised()
    status = await sup.ensure(ChildSpec("sleeper", ("sleep", "1000")))
    identity = PROCS.identity(status.pid)
    assert identity[0] == ("sleep", "1000")
    killed_at = reactor.seconds()
    os.kill(status.pid, signal.SIGKILL)
    await until(lambda: sup.children()["sleeper"].running and sup.children()["sleeper"].pid != status.pid, 2.0,
                "the child to be back")
    back = sup.children()["sleeper"]
    assert PROCS.identity(back.pid)[0] == ("sleep", "1000") and gone(identity, status.pid)
    assert back.last_exit == "killed by SIGKILL" and back.restarts == 1
    assert reactor.seconds() - killed_at < 2.0
    assert [e for _, _, e, _ in events] == ["started", "exited", "started"]


@pytest_twisted.ensureDeferred
async def test_an_instantly_exiting_command_backs_off_and_is_reported_as_a_crash_loop(supervised):
    sup, events = supervised(policy=functools.partial(backoff, initial=0.1))  # the default's shape, 5x faster
    lines = []
    globalLogPublisher.addObserver(lines.append)
    try:
        await sup.ensure(ChildSpec("flaky", ("sh", "-c", "echo 'cannot bind {port}' >&2; exit 3")))
        await until(lambda: events.of("crash_loop"), 6.0, "the crash loop report")
    finally:
        globalLogPublisher.removeObserver(lines.append)
    starts = [t for t, _ in events.of("started")]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 6, starts
    for i, gap in enumerate(gaps):  # 0.1 s doubling, +-10 % jitter, plus the time a start and exit take
        assert 0.09 * 2 ** i <= gap <= 0.11 * 2 ** i + 0.3, gaps
    status = sup.children()["flaky"]
    assert status.crash_loop and status.restarts == 5 and status.last_exit == "exited with code 3"
    assert events.of("crash_loop")[0][1] == {"restarts": 5, "exit": "exited with code 3"}
    said = [e for e in lines if e.get("child") == "flaky" and e.get("stream") == "stderr"]
    assert said and all(e["line"] == "cannot bind {port}" for e in said)


@pytest_twisted.ensureDeferred
async def test_stop_leaves_no_process_even_one_that_ignores_term(supervised, tmp_path):
    sup, events = supervised(stop_timeout=0.5)
    children = [ChildSpec("a", ("sleep", "1000")), ChildSpec("b", ("sleep", "1001")),
                ChildSpec("stubborn", ("sh", "-c", "trap '' TERM; exec sleep 1002"))]
    pids = {}
    for spec in children:
        status = await sup.ensure(spec)
        pids[status.pid] = PROCS.identity(status.pid)
    stubborn = sup.children()["stubborn"].pid
    # mid-exec, /proc shows the process with an empty command line for a moment
    await until(lambda: (PROCS.identity(stubborn) or ((),))[0][:1] == ("sleep",), 2.0, "the shell to exec sleep")
    pids[stubborn] = PROCS.identity(stubborn)
    started = reactor.seconds()
    await sup.stopService()
    assert reactor.seconds() - started >= 0.5  # the stubborn one needed the KILL
    assert all(gone(identity, pid) for pid, identity in pids.items())
    assert list((tmp_path / "pids").iterdir()) == []
    assert not any(s.running for s in sup.children().values())
    assert [d["exit"] for _, d in events.of("exited")].count("killed by SIGKILL") == 1


@pytest_twisted.ensureDeferred
async def test_remove_and_replace_reap_the_old_process(supervised):
    sup, _ = supervised()
    old = await sup.ensure(ChildSpec("c", ("sleep", "1000")))
    old_identity = PROCS.identity(old.pid)
    new = await sup.ensure(ChildSpec("c", ("sleep", "1003")))
    assert gone(old_identity, old.pid)
    await until(lambda: (PROCS.identity(new.pid) or ((),))[0] == ("sleep", "1003"), 2.0, "the new child's exec")
    new_identity = PROCS.identity(new.pid)
    await sup.remove("c")
    assert gone(new_identity, new.pid) and sup.children() == {}


DAEMON = textwrap.dedent("""
    import sys
    from pathlib import Path
    from twisted.internet import reactor
    from pdserver.sysconfig.supervisor import ChildSpec, Supervisor
    sup = Supervisor(reactor, Path(sys.argv[1]))
    sup.startService()
    sup.ensure(ChildSpec("left", ("sleep", "1004"))).addCallback(lambda s: print(s.pid, flush=True))
    reactor.run()
""")


@pytest_twisted.ensureDeferred
async def test_the_children_of_a_kill_9d_daemon_are_killed_at_the_next_start(supervised, tmp_path):
    daemon = subprocess.Popen([sys.executable, "-c", DAEMON, str(tmp_path / "pids")], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ, PYTHONPATH=REPO))
    bystander = subprocess.Popen(["sleep", "1004"])  # the same command line, but not the daemon's child
    left, left_identity = None, None
    try:
        left = int(daemon.stdout.readline())
        left_identity = PROCS.identity(left)
        daemon.kill()
        daemon.wait()
        assert PROCS.identity(left) == left_identity  # the daemon died; its child did not
        started = reactor.seconds()
        sup, _ = supervised()
        await sup.ensure(ChildSpec("left", ("sleep", "1004")))
        assert reactor.seconds() - started < 2.0  # TERM did it; no wait for the 5 s KILL
        await until(lambda: gone(left_identity, left), 1.0, "the stale child to be gone")
        assert bystander.poll() is None
        assert sup.children()["left"].running and sup.children()["left"].pid != left
    finally:
        daemon.kill()
        daemon.wait()
        bystander.kill()
        bystander.wait()
        if left is not None:
            kill_if_same(left, left_identity)


@pytest_twisted.ensureDeferred
async def test_child_output_reaches_the_node_log_line_by_line(supervised):
    sup, _ = supervised()
    lines = []
    globalLogPublisher.addObserver(lines.append)
    try:
        await sup.ensure(ChildSpec("talker", ("sh", "-c", "printf 'one\\ntwo\\n'; echo three >&2; exec sleep 1000")))
        await until(lambda: len([e for e in lines if e.get("child") == "talker" and "line" in e]) == 3, 2.0,
                    "three output lines")
    finally:
        globalLogPublisher.removeObserver(lines.append)
    said = [(e["stream"], e["line"]) for e in lines if e.get("child") == "talker" and "line" in e]
    assert sorted(said) == [("stderr", "three"), ("stdout", "one"), ("stdout", "two")]
