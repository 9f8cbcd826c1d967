"""The child-process supervisor: hostapd and dnsmasq as children of the reactor.

A child that dies is restarted after a backoff (0.5 s doubling to 30 s, with jitter) that resets once it has run
``stable_after`` seconds; five restarts without such a stable run are a crash loop, reported once. Each running
child has a pid file (pid, argv, start time): a daemon that was kill -9'd leaves its children running, and the
next start kills exactly those before it starts anything. Stopping sends TERM, then KILL after ``stop_timeout``,
and fires only when the process has been reaped. Child output goes to the node log, one event per line.

One ``_Child`` record per name holds what is wanted (spec, wanted) and what is (the current run, counters); one
``_Run`` protocol per spawned process holds that process's own state, so output of a dying run never mixes with
its successor's.
"""
import json
import os
import re
import shutil
import signal as signals
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from twisted.application.service import Service
from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from zope.interface import Interface, implementer

from pdserver.backoff import backoff
from pdserver.errors import InvalidInput, Unavailable

CRASH_LOOP_RESTARTS = 5
MAX_LINE = 1024  # bytes of one logged output line; the rest of a longer line is dropped
STALE_POLL = 0.02  # seconds between checks that a stale child is gone
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

log = Logger()


@dataclass(frozen=True)
class ChildSpec:
    """What to run: ``env`` is the child's whole environment besides PATH (the daemon's own environment holds
    secrets such as PARADROP_* settings, so it is not inherited)."""
    name: str
    argv: tuple
    env: Optional[dict] = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not _NAME.fullmatch(self.name):
            raise InvalidInput("a child name is 1-64 letters, digits, '.', '_' or '-'", field="name")
        argv = tuple(self.argv) if isinstance(self.argv, (list, tuple)) else ()
        if not argv or not all(isinstance(a, str) and "\0" not in a for a in argv) or not argv[0]:
            raise InvalidInput("argv is a non-empty list of strings without NUL", field="argv")
        object.__setattr__(self, "argv", argv)
        if self.env is not None:
            if not all(isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
                       for k, v in self.env.items()):
                raise InvalidInput("env maps names (no '=' or NUL) to strings without NUL", field="env")
            object.__setattr__(self, "env", dict(self.env))

    def environment(self) -> dict:
        env = {"PATH": os.environ.get("PATH", DEFAULT_PATH)}
        env.update(self.env or {})
        return env


@dataclass(frozen=True)
class ChildStatus:
    """``restarts``: restarts since the last stable run (0 once it has run ``stable_after``); ``since``: reactor
    time of the last start or exit."""
    name: str
    pid: Optional[int]
    running: bool
    restarts: int
    crash_loop: bool
    last_exit: Optional[str]
    since: float


class IProcessTable(Interface):
    """The host's processes, to find the stale children of a previous daemon (they are not our children)."""

    def identity(pid):
        """(argv tuple, start time in clock ticks) of a live process, or None when it is gone or a zombie."""

    def kill(pid, sig):
        """Send ``sig`` to ``pid``; a process that is already gone is fine."""


@implementer(IProcessTable)
class ProcTable:
    """IProcessTable on /proc."""

    def __init__(self, proc=Path("/proc")):
        self._proc = proc

    def identity(self, pid):
        try:
            stat = (self._proc / str(pid) / "stat").read_text()
            cmdline = (self._proc / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        fields = stat[stat.rindex(")") + 2:].split()  # the command name in parentheses may contain spaces
        if fields[0] in ("Z", "X"):
            return None
        argv = tuple(part.decode("utf-8", "surrogateescape") for part in cmdline.split(b"\0")[:-1])
        return argv, int(fields[19])

    def kill(self, pid, sig):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


class _PidFiles:
    """``<dir>/<name>.pid``: JSON {pid, argv, start}; written when a child starts, removed when it is reaped."""

    def __init__(self, directory: Path):
        self.dir = Path(directory)

    def write(self, name, pid, argv, start):
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = self.dir / f".{name}.pid.tmp"
        tmp.write_text(json.dumps({"pid": pid, "argv": list(argv), "start": start}))
        tmp.replace(self.dir / f"{name}.pid")

    def remove(self, name):
        (self.dir / f"{name}.pid").unlink(missing_ok=True)

    def read_all(self) -> List[Tuple[Path, Optional[dict]]]:
        """Every pid file with its record, None for one that cannot be parsed (a torn write)."""
        found = []
        for path in sorted(self.dir.glob("*.pid")) if self.dir.is_dir() else ():
            try:
                record = json.loads(path.read_text())
                record = record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None
            except (OSError, ValueError):
                record = None
            found.append((path, record))
        return found


def describe_exit(reason) -> str:
    value = reason.value
    if isinstance(value, error.ProcessTerminated) and value.signal is not None:
        try:
            return f"killed by {signals.Signals(value.signal).name}"
        except ValueError:
            return f"killed by signal {value.signal}"
    return f"exited with code {getattr(value, 'exitCode', None) or 0}"


def _same_process(identity, record: dict) -> bool:
    """Whether a live process is the one a pid file recorded: the same start time, and the recorded command line
    or its tail (a wrapper such as `ip netns exec NS` execs the program, which then shows its own argv)."""
    argv, start = identity
    recorded = tuple(record.get("argv") or ())
    return start == record.get("start") and bool(argv) and recorded[len(recorded) - len(argv):] == argv


class _Run(ProcessProtocol):
    """One spawned process: its output lines to the log; its exit to the supervisor."""

    def __init__(self, supervisor, child, spec):
        self.supervisor = supervisor
        self.child = child
        self.spec = spec
        self.pid = None
        self.started_at = 0.0
        self.stopping = False
        self.registered = False
        self.early_exit = None
        self.kill_call = None
        self.stable_call = None
        self.gone: List[defer.Deferred] = []
        self._buffers = {"stdout": b"", "stderr": b""}
        self._cut = {"stdout": False, "stderr": False}

    def connectionMade(self):
        self.pid = self.transport.pid
        self.transport.closeStdin()

    def outReceived(self, data):
        self._lines("stdout", data)

    def errReceived(self, data):
        self._lines("stderr", data)

    def _lines(self, stream, data):
        buffered = self._buffers[stream] + data
        *lines, rest = buffered.split(b"\n")
        for line in lines:
            if not self._cut[stream]:
                self._emit(stream, line)
            self._cut[stream] = False
        if len(rest) > MAX_LINE and not self._cut[stream]:
            self._emit(stream, rest)
            self._cut[stream] = True
        self._buffers[stream] = b"" if self._cut[stream] else rest

    def _emit(self, stream, line):
        text = line[:MAX_LINE].rstrip(b"\r").decode("utf-8", "replace")
        log.info("{child} {stream}: {line}", child=self.spec.name, stream=stream, line=text, pid=self.pid)

    def processExited(self, reason):
        if self.registered:
            self.supervisor._exited(self.child, self, reason)
        else:  # reaped inside spawnProcess: the supervisor hears of it once it has recorded the start
            self.early_exit = reason

    def processEnded(self, reason):
        for stream, rest in self._buffers.items():
            if rest and not self._cut[stream]:
                self._emit(stream, rest)
        self._buffers = {"stdout": b"", "stderr": b""}


class _Child:
    """Everything about one name: what is wanted, the current run, and the restart bookkeeping."""

    def __init__(self, spec):
        self.spec = spec
        self.wanted = True
        self.run: Optional[_Run] = None
        self.restart_call = None
        self.restarts = 0
        self.crash_loop = False
        self.last_exit: Optional[str] = None
        self.since = 0.0
        self.spawned: List[defer.Deferred] = []


class Supervisor(Service):
    """Runs named children; ``on_event(name, event, details)`` hears "started", "exited", "crash_loop" and
    "recovered" (for the audit log and pdconf). ``policy(attempt) -> seconds`` is the restart backoff."""

    def __init__(self, reactor, pid_dir: Path, stable_after=60.0, stop_timeout=5.0, on_event=None,
                 policy: Callable[[int], float] = backoff, processes: Optional[IProcessTable] = None):
        self._reactor = reactor
        self._pid_files = _PidFiles(pid_dir)
        self._stable_after = stable_after
        self._stop_timeout = stop_timeout
        self._on_event = on_event
        self._policy = policy
        self._processes = processes or ProcTable()
        self._children: Dict[str, _Child] = {}
        self._ready = False

    # --- the public surface

    def ensure(self, spec: ChildSpec) -> defer.Deferred:
        """Run ``spec``; fires with its ChildStatus once spawned. The same spec again is a no-op; another argv or
        env for the name stops the old process and starts the new one."""
        try:
            self._executable(spec)
        except Unavailable:
            return defer.fail()
        child = self._children.get(spec.name)
        if child is None:
            child = self._children[spec.name] = _Child(spec)
            child.since = self._reactor.seconds()
        elif child.wanted and child.spec == spec and (
                child.restart_call is not None or (child.run is not None and not child.run.stopping)):
            return defer.succeed(self._status(child))  # running, or waiting out its backoff: leave it be
        child.wanted = True
        if child.spec != spec:  # a new command line is a new child: fresh restart counters
            child.spec = spec
            child.restarts, child.crash_loop = 0, False
        d = defer.Deferred()
        child.spawned.append(d)
        if child.run is not None:
            if child.run.spec != spec:
                self._terminate(child.run)
        else:
            self._cancel_restart(child)
            self._spawn(child)
        return d

    def remove(self, name: str) -> defer.Deferred:
        """Stop ``name`` for good; fires when its process is gone (at once for an unknown name)."""
        child = self._children.get(name)
        if child is None:
            return defer.succeed(None)
        child.wanted = False
        self._cancel_restart(child)
        self._fail_waiters(child, f"{name} was removed before it started")
        if child.run is None:
            del self._children[name]
            return defer.succeed(None)
        return self._terminate(child.run)

    def signal(self, name: str, sig: int) -> None:
        """Send ``sig`` (SIGHUP to make dnsmasq re-read its hosts, say) to a running child; no-op otherwise."""
        child = self._children.get(name)
        if child is not None and child.run is not None:
            try:
                child.run.transport.signalProcess(sig)
            except error.ProcessExitedAlready:
                pass

    def children(self) -> Dict[str, ChildStatus]:
        return {name: self._status(child) for name, child in self._children.items()}

    def startService(self):
        """Kill what a kill -9'd daemon left running (by its pid files), then start the wanted children."""
        super().startService()
        d = self._kill_stale()

        def ready(_):
            if self.running:
                self._ready = True
                for child in list(self._children.values()):
                    if child.wanted and child.run is None and child.restart_call is None:
                        self._spawn(child)
        return d.addCallback(ready)

    def stopService(self):
        """TERM every child, KILL what is left after ``stop_timeout``; fires when all are reaped. Children stay
        known, and a later startService starts them again."""
        super().stopService()
        self._ready = False
        gone = []
        for child in self._children.values():
            self._cancel_restart(child)
            self._fail_waiters(child, "the supervisor stopped")
            if child.run is not None:
                gone.append(self._terminate(child.run))
        return defer.gatherResults(gone).addCallback(lambda _: None)

    # --- lifecycle of one child

    def _executable(self, spec) -> str:
        path = shutil.which(spec.argv[0], path=spec.environment()["PATH"])
        if path is None:
            raise Unavailable(f"{spec.argv[0]} is not installed (not found on PATH)", field="argv")
        return path

    def _spawn(self, child: _Child):
        if not self._ready:
            return
        spec = child.spec
        run = _Run(self, child, spec)
        try:
            self._reactor.spawnProcess(run, self._executable(spec), args=list(spec.argv), env=spec.environment())
        except Exception as e:
            log.failure("could not start {child}", child=spec.name)
            child.last_exit = f"could not start: {e}"
            child.since = self._reactor.seconds()
            self._fail_waiters(child, f"could not start {spec.name}: {e}")
            self._schedule_restart(child)
            return
        run.registered = True
        run.started_at = child.since = self._reactor.seconds()
        child.run = run
        identity = self._processes.identity(run.pid)
        self._pid_files.write(spec.name, run.pid, spec.argv, identity[1] if identity else None)
        run.stable_call = self._reactor.callLater(self._stable_after, self._stable, child, run)
        log.info("started {child} (pid {pid})", child=spec.name, pid=run.pid)
        self._event(spec.name, "started", {"pid": run.pid, "argv": list(spec.argv)})
        waiters, child.spawned = child.spawned, []
        status = self._status(child)
        for d in waiters:
            d.callback(status)
        if run.early_exit is not None:
            self._exited(child, run, run.early_exit)

    def _stable(self, child: _Child, run: _Run):
        run.stable_call = None
        child.restarts = 0
        if child.crash_loop:
            child.crash_loop = False
            log.info("{child} is running stably again", child=child.spec.name)
            self._event(child.spec.name, "recovered", {"pid": run.pid})

    def _exited(self, child: _Child, run: _Run, reason):
        for call in (run.stable_call, run.kill_call):
            if call is not None and call.active():
                call.cancel()
        run.stable_call = run.kill_call = None
        child.run = None
        child.last_exit = describe_exit(reason)
        child.since = self._reactor.seconds()
        self._pid_files.remove(child.spec.name)
        expected = run.stopping
        delay = None
        if not child.wanted:
            del self._children[child.spec.name]
        elif self._ready and (expected or run.spec != child.spec):
            self._spawn(child)
        elif self._ready:
            delay = self._schedule_restart(child)
        if expected:
            log.info("{child} stopped: {exit}", child=run.spec.name, exit=child.last_exit)
        elif delay is None:
            log.warn("{child} {exit}", child=run.spec.name, exit=child.last_exit)
        else:
            log.warn("{child} {exit}; restart in {delay:.2f} s", child=run.spec.name, exit=child.last_exit,
                     delay=delay)
        self._event(run.spec.name, "exited", {"pid": run.pid, "exit": child.last_exit, "expected": expected,
                                              "restart_in": delay})
        gone, run.gone = run.gone, []
        for d in gone:
            d.callback(None)

    def _schedule_restart(self, child: _Child) -> float:
        delay = self._policy(child.restarts)
        child.restart_call = self._reactor.callLater(delay, self._restart, child)
        return delay

    def _check_crash_loop(self, child: _Child):
        """Report a crash loop once, when it begins; ``_stable`` ends it."""
        if child.restarts >= CRASH_LOOP_RESTARTS and not child.crash_loop:
            child.crash_loop = True
            log.error("{child} is in a crash loop: {n} restarts without a stable run", child=child.spec.name,
                      n=child.restarts)
            self._event(child.spec.name, "crash_loop", {"restarts": child.restarts, "exit": child.last_exit})

    def _restart(self, child: _Child):
        child.restart_call = None
        if child.wanted and child.run is None:
            child.restarts += 1
            self._check_crash_loop(child)
            self._spawn(child)

    def _cancel_restart(self, child: _Child):
        if child.restart_call is not None and child.restart_call.active():
            child.restart_call.cancel()
        child.restart_call = None

    def _terminate(self, run: _Run) -> defer.Deferred:
        """TERM now, KILL after stop_timeout; the Deferred fires when the process has been reaped."""
        d = defer.Deferred()
        run.gone.append(d)
        if not run.stopping:
            run.stopping = True
            self._send(run, signals.SIGTERM)
            run.kill_call = self._reactor.callLater(self._stop_timeout, self._kill, run)
        return d

    def _kill(self, run: _Run):
        run.kill_call = None
        log.warn("{child} ignored TERM for {t} s; killing it", child=run.spec.name, t=self._stop_timeout)
        self._send(run, signals.SIGKILL)

    @staticmethod
    def _send(run: _Run, sig):
        try:
            run.transport.signalProcess(sig)
        except error.ProcessExitedAlready:
            pass

    def _fail_waiters(self, child: _Child, message: str):
        waiters, child.spawned = child.spawned, []
        for d in waiters:
            d.errback(Unavailable(message))

    def _status(self, child: _Child) -> ChildStatus:
        run = child.run
        return ChildStatus(child.spec.name, run.pid if run else None, run is not None, child.restarts,
                           child.crash_loop, child.last_exit, child.since)

    def _event(self, name, event, details):
        if self._on_event is None:
            return
        try:
            self._on_event(name, event, details)
        except Exception:
            log.failure("the observer of {child} {event} failed", child=name, event=event)

    # --- stale children of a previous daemon

    def _kill_stale(self) -> defer.Deferred:
        stale = []
        for path, record in self._pid_files.read_all():
            identity = self._processes.identity(record["pid"]) if record else None
            if identity is not None and _same_process(identity, record):
                log.warn("killing {child} (pid {pid}) left by a previous run", child=path.stem, pid=record["pid"])
                self._processes.kill(record["pid"], signals.SIGTERM)
                stale.append((record["pid"], identity))
            path.unlink(missing_ok=True)
        if not stale:
            return defer.succeed(None)
        done = defer.Deferred()
        deadline = self._reactor.seconds() + self._stop_timeout
        killed = []

        def poll():
            left = [(pid, ident) for pid, ident in stale if self._processes.identity(pid) == ident]
            if not left:
                done.callback(None)
                return
            if not killed and self._reactor.seconds() >= deadline:
                killed.append(True)
                for pid, _ in left:
                    self._processes.kill(pid, signals.SIGKILL)
            self._reactor.callLater(STALE_POLL, poll)
        poll()
        return done
