"""The supervisor on a Clock with fake processes: backoff, crash loop, stop and remove, stale children, output."""
import json
import os
import signal
import sys

import pytest
from twisted.internet import error
from twisted.internet.interfaces import IProcessTransport, IReactorProcess, IReactorTime
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from zope.interface import implementer
from zope.interface.verify import verifyObject

from pdserver.backoff import backoff
from pdserver.errors import InvalidInput, Unavailable
from pdserver.sysconfig.supervisor import ChildSpec, ChildStatus, IProcessTable, ProcTable, Supervisor, describe_exit

SLEEP = ("sleep", "1000")


@implementer(IProcessTransport)
class FakeProcess:
    """A spawned process that exits when the test says so (or on a signal it does not ignore)."""

    def __init__(self, reactor, protocol, args, env, pid):
        self.reactor, self.protocol, self.args, self.env, self.pid = reactor, protocol, args, env, pid
        self.signals = []
        self.ignores = set()
        self.stdin_closed = False

    def exit(self, code=0, sig=None):
        """The process ends: reaped (processExited), then its pipes close (processEnded)."""
        assert self.pid is not None, "exited twice"
        if sig is None and code == 0:
            reason = Failure(error.ProcessDone(0))
        else:
            reason = Failure(error.ProcessTerminated(exitCode=None if sig else code, signal=sig))
        self.pid = None
        self.reactor.alive.remove(self)
        self.protocol.processExited(reason)
        self.protocol.processEnded(reason)

    def signalProcess(self, signalID):
        if self.pid is None:
            raise error.ProcessExitedAlready()
        self.signals.append(signalID)

    def closeStdin(self):
        self.stdin_closed = True

    def closeStdout(self):
        pass

    def closeStderr(self):
        pass

    def closeChildFD(self, descriptor):
        pass

    def writeToChild(self, childFD, data):
        pass

    def write(self, data):
        pass

    def writeSequence(self, data):
        pass

    def loseConnection(self):
        pass

    def getPeer(self):
        return None

    def getHost(self):
        return None


@implementer(IReactorProcess)
class ProcessClock(Clock):
    """A Clock whose spawnProcess makes FakeProcesses; ``fail_spawn`` makes the next spawn raise."""

    def __init__(self):
        super().__init__()
        self.spawned = []
        self.alive = []
        self.fail_spawn = None
        self.exit_in_spawn = False
        self._next_pid = 1000

    def spawnProcess(self, processProtocol, executable, args=(), env=None, path=None, uid=None, gid=None,
                     usePTY=False, childFDs=None):
        if self.fail_spawn is not None:
            raise self.fail_spawn
        self._next_pid += 1
        process = FakeProcess(self, processProtocol, list(args), env, self._next_pid)
        self.spawned.append(process)
        self.alive.append(process)
        processProtocol.makeConnection(process)
        if self.exit_in_spawn:  # Twisted reaps at spawn time when the child has already exited
            process.exit(2)
        return process

    def last(self) -> FakeProcess:
        return self.spawned[-1]


@implementer(IProcessTable)
class FakeTable:
    """Processes left by a previous daemon: pid -> (argv, start); they go away when signalled unless stubborn."""

    def __init__(self, reactor):
        self.reactor = reactor
        self.procs = {}
        self.stubborn = set()
        self.sent = []

    def identity(self, pid):
        return self.procs.get(pid)

    def kill(self, pid, sig):
        self.sent.append((pid, sig))
        if sig == signal.SIGKILL or pid not in self.stubborn:
            self.procs.pop(pid, None)


class Events(list):
    def __call__(self, name, event, details):
        self.append((name, event, details))

    def kinds(self, name=None):
        return [e for n, e, _ in self if name is None or n == name]


def no_jitter(attempt):
    return backoff(attempt, jitter=0.0)


@pytest.fixture
def clock():
    return ProcessClock()


@pytest.fixture
def events():
    return Events()


@pytest.fixture
def make(clock, events, tmp_path):
    def make(table=None, **kwargs):
        kwargs.setdefault("policy", no_jitter)
        kwargs.setdefault("on_event", events)
        return Supervisor(clock, tmp_path / "pids", processes=table or FakeTable(clock), **kwargs)
    return make


@pytest.fixture
def sup(make):
    s = make()
    s.startService()
    return s


def result_of(d):
    out = []
    d.addBoth(out.append)
    assert out, "the Deferred has not fired"
    if isinstance(out[0], Failure):
        out[0].raiseException()
    return out[0]


def fired(d) -> bool:
    out = []
    d.addBoth(lambda r: out.append(r) or r)
    return bool(out)


# --- specs: names end up in file names, argv and env in an exec

@pytest.mark.parametrize("name", ["", "../etc", "a/b", ".hidden", "x\n", "-rf", "a" * 65, None])
def test_hostile_child_names_are_refused(name):
    with pytest.raises(InvalidInput) as e:
        ChildSpec(name, SLEEP)
    assert e.value.field == "name"


@pytest.mark.parametrize("argv", [(), [], ("",), ("sleep", "1\0--x"), "sleep 1", (b"sleep",)])
def test_hostile_argv_is_refused(argv):
    with pytest.raises(InvalidInput) as e:
        ChildSpec("c", argv)
    assert e.value.field == "argv"


@pytest.mark.parametrize("env", [{"A=B": "x"}, {"": "x"}, {"A": "x\0y"}, {"A": 1}])
def test_hostile_env_is_refused(env):
    with pytest.raises(InvalidInput) as e:
        ChildSpec("c", SLEEP, env)
    assert e.value.field == "env"


def test_a_list_argv_equals_the_same_tuple():
    assert ChildSpec("c", ["sleep", "1"]) == ChildSpec("c", ("sleep", "1"))


# --- the fakes stand in for the real interfaces

def test_fakes_provide_the_interfaces_they_stand_in_for(clock):
    verifyObject(IReactorProcess, clock)
    verifyObject(IReactorTime, clock)
    verifyObject(IProcessTable, FakeTable(clock))
    verifyObject(IProcessTable, ProcTable())
    from twisted.internet.protocol import ProcessProtocol
    verifyObject(IProcessTransport, clock.spawnProcess(ProcessProtocol(), "x", ["x"]))


def test_proc_table_reads_this_process_and_nothing_for_a_dead_pid():
    argv, start = ProcTable().identity(os.getpid())
    assert argv[0] == sys.executable or os.path.basename(argv[0]).startswith("python")
    assert isinstance(start, int)
    assert ProcTable().identity(2 ** 22 + 1) is None


# --- starting

def test_ensure_spawns_once_and_fires_with_the_running_status(sup, clock, events):
    status = result_of(sup.ensure(ChildSpec("dns", SLEEP)))
    assert status == ChildStatus("dns", clock.last().pid, True, 0, False, None, 0.0)
    assert clock.last().args == list(SLEEP) and clock.last().stdin_closed
    assert result_of(sup.ensure(ChildSpec("dns", list(SLEEP)))).pid == status.pid
    assert len(clock.spawned) == 1
    assert events.kinds() == ["started"]


def test_children_do_not_inherit_the_daemons_environment(sup, clock, monkeypatch):
    monkeypatch.setenv("PARADROP_ADMIN_PASSWORD", "secret")
    sup.ensure(ChildSpec("dns", SLEEP, {"LANG": "C"}))
    assert set(clock.last().env) == {"PATH", "LANG"}


def test_a_missing_program_fails_ensure_with_unavailable(sup, clock):
    with pytest.raises(Unavailable) as e:
        result_of(sup.ensure(ChildSpec("ap", ("no-such-hostapd-binary",))))
    assert "no-such-hostapd-binary" in e.value.message
    assert clock.spawned == [] and sup.children() == {}


def test_ensure_before_start_waits_for_the_service(make, clock):
    s = make()
    d = s.ensure(ChildSpec("dns", SLEEP))
    assert not fired(d) and clock.spawned == []
    s.startService()
    assert result_of(d).running


def test_a_changed_argv_replaces_the_process_only_after_the_old_one_is_gone(sup, clock, tmp_path):
    sup.ensure(ChildSpec("dns", SLEEP))
    old = clock.last()
    d = sup.ensure(ChildSpec("dns", ("sleep", "2000")))
    assert old.signals == [signal.SIGTERM] and len(clock.spawned) == 1 and not fired(d)
    old.exit(sig=signal.SIGTERM)
    assert result_of(d).pid == clock.last().pid != old.pid
    assert clock.last().args == ["sleep", "2000"]
    record = json.loads((tmp_path / "pids" / "dns.pid").read_text())
    assert record["pid"] == clock.last().pid and record["argv"] == ["sleep", "2000"]


def test_a_changed_spec_during_backoff_starts_at_once(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    clock.last().exit(1)
    assert result_of(sup.ensure(ChildSpec("dns", ("sleep", "5")))).running
    assert len(clock.spawned) == 2


# --- restarting

def test_a_dead_child_comes_back_after_the_backoff_and_not_before(sup, clock, events):
    sup.ensure(ChildSpec("dns", SLEEP))
    first = clock.last()
    first_pid = first.pid
    clock.advance(3)
    first.exit(sig=signal.SIGKILL)
    status = sup.children()["dns"]
    assert not status.running and status.last_exit == "killed by SIGKILL" and status.since == 3
    clock.advance(0.49)
    assert len(clock.spawned) == 1
    clock.advance(0.02)
    assert len(clock.spawned) == 2 and sup.children()["dns"].pid == clock.last().pid
    assert events.kinds() == ["started", "exited", "started"]
    assert events[1][2] == {"pid": first_pid, "exit": "killed by SIGKILL", "expected": False, "restart_in": 0.5}


def restart_gaps(sup, clock, deaths):
    """Kill the child ``deaths`` times at once after each start; the seconds each restart waited (checked to the
    hundredth: not spawned 10 ms before, spawned at that time)."""
    gaps = []
    for _ in range(deaths):
        clock.last().exit(1)
        count = len(clock.spawned)
        due = min(call.getTime() for call in clock.getDelayedCalls())
        gap = due - clock.seconds()
        clock.advance(gap - 0.01)
        assert len(clock.spawned) == count
        clock.advance(due - clock.seconds())
        assert len(clock.spawned) == count + 1
        gaps.append(round(gap, 2))
    return gaps


def test_restarts_back_off_doubling_to_the_cap(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    assert restart_gaps(sup, clock, 9) == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_crash_loop_is_reported_once_then_recovers_after_a_stable_run(sup, clock, events):
    sup.ensure(ChildSpec("dns", SLEEP))
    restart_gaps(sup, clock, 4)
    assert not sup.children()["dns"].crash_loop and "crash_loop" not in events.kinds()
    restart_gaps(sup, clock, 3)
    status = sup.children()["dns"]
    assert status.crash_loop and status.restarts == 7
    assert events.kinds().count("crash_loop") == 1
    assert [d for _, e, d in events if e == "crash_loop"][0] == {"restarts": 5, "exit": "exited with code 1"}
    clock.advance(59.9)
    assert sup.children()["dns"].crash_loop
    clock.advance(0.2)
    status = sup.children()["dns"]
    assert not status.crash_loop and status.restarts == 0 and status.running
    assert events.kinds()[-1] == "recovered"
    assert restart_gaps(sup, clock, 1) == [0.5]


def test_a_child_reaped_while_being_spawned_is_reported_in_order_and_restarted(sup, clock, events):
    clock.exit_in_spawn = True
    status = result_of(sup.ensure(ChildSpec("dns", SLEEP)))
    assert status.pid == clock.last().protocol.pid
    assert events.kinds() == ["started", "exited"]
    assert sup.children()["dns"] == ChildStatus("dns", None, False, 0, False, "exited with code 2", 0.0)
    assert restart_gaps_of_instant_exits(clock, 5) == [0.5, 1, 2, 4]
    assert sup.children()["dns"].restarts == 4 and not sup.children()["dns"].crash_loop
    assert restart_gaps_of_instant_exits(clock, 6) == [8]
    assert sup.children()["dns"].crash_loop and events.kinds().count("crash_loop") == 1


def restart_gaps_of_instant_exits(clock, spawns):
    starts = [clock.seconds()]
    while len(clock.spawned) < spawns:
        count = len(clock.spawned)
        clock.advance(min(call.getTime() for call in clock.getDelayedCalls()) - clock.seconds())
        if len(clock.spawned) > count:
            starts.append(clock.seconds())
    return [round(b - a, 2) for a, b in zip(starts, starts[1:])]


def test_a_failed_spawn_backs_off_like_a_crash(sup, clock, events):
    sup.ensure(ChildSpec("dns", SLEEP))
    clock.fail_spawn = OSError("fork failed")
    clock.last().exit(1)
    clock.advance(0.5)
    status = sup.children()["dns"]
    assert not status.running and status.last_exit == "could not start: fork failed"
    clock.fail_spawn = None
    clock.advance(1.0)
    assert sup.children()["dns"].running


def test_a_failing_event_observer_does_not_stop_supervision(make, clock):
    def explode(*_):
        raise RuntimeError("observer bug")
    s = make(on_event=explode)
    s.startService()
    s.ensure(ChildSpec("dns", SLEEP))
    clock.last().exit(1)
    clock.advance(0.5)
    assert s.children()["dns"].running


# --- removing, signalling, stopping

def test_remove_fires_when_the_process_is_reaped_and_it_stays_gone(sup, clock, tmp_path):
    sup.ensure(ChildSpec("dns", SLEEP))
    proc = clock.last()
    assert (tmp_path / "pids" / "dns.pid").exists()
    d = sup.remove("dns")
    assert proc.signals == [signal.SIGTERM] and not fired(d)
    proc.exit(sig=signal.SIGTERM)
    assert fired(d) and sup.children() == {}
    clock.advance(100)
    assert len(clock.spawned) == 1 and not (tmp_path / "pids" / "dns.pid").exists()


def test_remove_kills_a_child_that_ignores_term_after_the_stop_timeout(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    proc = clock.last()
    d = sup.remove("dns")
    clock.advance(4.9)
    assert proc.signals == [signal.SIGTERM]
    clock.advance(0.2)
    assert proc.signals == [signal.SIGTERM, signal.SIGKILL] and not fired(d)
    proc.exit(sig=signal.SIGKILL)
    assert fired(d)


def test_remove_of_an_unknown_or_backing_off_child_fires_at_once(sup, clock):
    assert fired(sup.remove("nobody"))
    sup.ensure(ChildSpec("dns", SLEEP))
    clock.last().exit(1)
    assert fired(sup.remove("dns"))
    clock.advance(10)
    assert len(clock.spawned) == 1


def test_ensure_during_remove_starts_it_again_once_gone(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    old = clock.last()
    removed = sup.remove("dns")
    again = sup.ensure(ChildSpec("dns", SLEEP))
    old.exit(sig=signal.SIGTERM)
    assert fired(removed) and result_of(again).pid == clock.last().pid != old.pid


def test_signal_reaches_a_running_child_only(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    sup.signal("dns", signal.SIGHUP)
    sup.signal("nobody", signal.SIGHUP)
    assert clock.last().signals == [signal.SIGHUP]
    clock.last().exit(1)
    sup.signal("dns", signal.SIGHUP)


def test_stop_fires_when_every_child_is_gone_and_nothing_restarts(sup, clock):
    sup.ensure(ChildSpec("a", SLEEP))
    sup.ensure(ChildSpec("b", SLEEP))
    sup.ensure(ChildSpec("c", SLEEP))
    a, b, c = clock.spawned
    c.exit(1)
    d = sup.stopService()
    a.exit(sig=signal.SIGTERM)
    assert not fired(d)
    clock.advance(5.0)
    assert b.signals == [signal.SIGTERM, signal.SIGKILL] and not fired(d)
    b.exit(sig=signal.SIGKILL)
    assert fired(d)
    clock.advance(100)
    assert len(clock.spawned) == 3 and not any(s.running for s in sup.children().values())


def test_start_after_stop_runs_the_children_again(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    d = sup.stopService()
    clock.last().exit(sig=signal.SIGTERM)
    assert fired(d)
    sup.startService()
    assert sup.children()["dns"].running and len(clock.spawned) == 2


def test_stop_fails_an_ensure_still_waiting_to_spawn_and_start_runs_it(sup, clock):
    sup.ensure(ChildSpec("dns", SLEEP))
    old = clock.last()
    waiting = sup.ensure(ChildSpec("dns", ("sleep", "5")))
    stopped = sup.stopService()
    with pytest.raises(Unavailable):
        result_of(waiting)
    old.exit(sig=signal.SIGTERM)
    assert fired(stopped) and len(clock.spawned) == 1
    sup.startService()
    assert clock.last().args == ["sleep", "5"] and sup.children()["dns"].running


# --- stale children of a kill -9'd daemon

def write_pid(tmp_path, name, pid, argv, start):
    (tmp_path / "pids").mkdir(exist_ok=True)
    (tmp_path / "pids" / f"{name}.pid").write_text(json.dumps({"pid": pid, "argv": list(argv), "start": start}))


def test_start_kills_stale_children_before_starting_its_own(make, clock, tmp_path):
    table = FakeTable(clock)
    table.procs = {50: (SLEEP, 7), 60: (("dnsmasq", "-k"), 9), 70: (("bash",), 3)}
    table.stubborn = {60}
    write_pid(tmp_path, "old-sleep", 50, SLEEP, 7)
    write_pid(tmp_path, "old-dns", 60, ("dnsmasq", "-k"), 9)
    write_pid(tmp_path, "reused", 70, ("hostapd", "x"), 3)  # pid 70 is now someone else's bash
    write_pid(tmp_path, "restarted", 50, SLEEP, 8)  # same argv, but another start time: not that process
    (tmp_path / "pids" / "torn.pid").write_text('{"pid": 4')
    s = make(table)
    s.ensure(ChildSpec("dns", SLEEP))
    d = s.startService()
    assert table.sent == [(60, signal.SIGTERM), (50, signal.SIGTERM)]
    assert not fired(d) and clock.spawned == []
    clock.advance(5.0)
    assert (60, signal.SIGKILL) in table.sent
    clock.advance(0.05)
    assert fired(d) and 70 in table.procs and len(clock.spawned) == 1
    assert sorted(p.name for p in (tmp_path / "pids").iterdir()) == ["dns.pid"]


def test_a_stale_child_started_through_a_wrapper_that_execs_it_is_killed_too(make, clock, tmp_path):
    table = FakeTable(clock)
    # `ip netns exec NS dnsmasq -k` is, once running, dnsmasq with its own argv (same pid and start time)
    table.procs = {60: (("dnsmasq", "-k"), 9), 70: (("sh", "-c", "dnsmasq -k"), 3)}
    write_pid(tmp_path, "dns", 60, ("ip", "netns", "exec", "ns", "dnsmasq", "-k"), 9)
    write_pid(tmp_path, "other", 70, ("ip", "netns", "exec", "ns", "dnsmasq", "-k"), 3)  # not a tail of it
    s = make(table)
    assert fired(s.startService())
    assert table.sent == [(60, signal.SIGTERM)] and 70 in table.procs


def test_start_without_pid_files_starts_at_once(make, clock):
    s = make()
    s.ensure(ChildSpec("dns", SLEEP))
    assert fired(s.startService()) and len(clock.spawned) == 1


# --- output to the node log

def test_output_lines_go_to_the_log_with_the_child_name_and_bounded_length(sup, clock):
    with capturedLogs() as events:
        sup.ensure(ChildSpec("dns", SLEEP))
        proto = clock.last().protocol
        proto.outReceived(b"first li")
        proto.outReceived(b"ne\nsecond {braces}\r\n" + b"x" * 3000)
        proto.outReceived(b"y" * 3000 + b"\nafter\n")
        proto.errReceived(b"bad \xff byte\npartial")
        clock.last().exit(1)
    lines = [(e["child"], e["stream"], e["line"]) for e in events if "line" in e]
    assert lines == [("dns", "stdout", "first line"), ("dns", "stdout", "second {braces}"),
                     ("dns", "stdout", "x" * 1024), ("dns", "stdout", "after"),
                     ("dns", "stderr", "bad \ufffd byte"), ("dns", "stderr", "partial")]


def test_exit_descriptions():
    assert describe_exit(Failure(error.ProcessDone(0))) == "exited with code 0"
    assert describe_exit(Failure(error.ProcessTerminated(exitCode=3))) == "exited with code 3"
    assert describe_exit(Failure(error.ProcessTerminated(signal=9))) == "killed by SIGKILL"
    assert describe_exit(Failure(error.ProcessTerminated(signal=200))) == "killed by signal 200"
