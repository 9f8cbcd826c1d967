"""Shared pieces of the benchmarks: scratch space, child processes, the library baseline, the result table.

Everything here talks to 127.0.0.1 only. ``Scratch`` owns the temp dir and every child process a benchmark
starts; leaving its ``with`` block (normally, on an exception, on Ctrl-C or on SIGTERM) stops the children by
their pid (TERM, then KILL) and removes the dir.
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(ROOT / ".venv" / "bin" / "python")
PASSWORD = "bench-password-123"

# Prints, as JSON, every module that importing the daemon's entry point and node wiring loads, except our own
# (in import order, so parents come before children). The baselines import exactly this list.
_LIST_MODULES = r"""
import json, sys
before = set(sys.modules)
import pdserver.main, pdserver.node, pdserver.logs
from twisted.internet import reactor
print(json.dumps([m for m in sys.modules if m not in before and m.split(".")[0] != "pdserver"
                  and not m.startswith("__editable__")]))
"""

# The baseline process: import the daemon's libraries, then serve a plain twisted.web resource answering 200
# at /api/v1/health (any path, in fact). argv: port, file with the module list.
BASELINE_SERVER = r"""
import importlib, json, sys
port, modules_file = int(sys.argv[1]), sys.argv[2]
for name in json.load(open(modules_file)):
    try:
        importlib.import_module(name)
    except Exception:
        pass
from twisted.internet import reactor
from twisted.web import resource, server

class Health(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return b'{"status": "ok"}'

reactor.listenTCP(port, server.Site(Health()), interface="127.0.0.1")
reactor.run()
"""


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def library_modules() -> list:
    """The non-pdserver modules the daemon has loaded once its code is imported (it builds nothing)."""
    out = subprocess.run([PYTHON, "-c", _LIST_MODULES], capture_output=True, text=True, check=True, timeout=60,
                         cwd=str(ROOT), env=clean_env())
    return json.loads(out.stdout)


def third_party(modules) -> list:
    """The public top-level third-party packages among ``modules``, for display."""
    tops = {m.split(".")[0] for m in modules} - set(sys.stdlib_module_names)
    return sorted(t for t in tops if not t.startswith("_") and t != "cython_runtime")


def clean_env() -> dict:
    """The caller's environment without PARADROP_* settings, plus a known admin password."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    env["PARADROP_ADMIN_PASSWORD"] = PASSWORD
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scratch:
    """A temp dir plus the child processes started in it; both are gone when the ``with`` block ends."""

    def __init__(self, name: str):
        self._name = name
        self.dir = None
        self._children = []

    def __enter__(self):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        self.dir = Path(tempfile.mkdtemp(prefix=f"pdbench-{self._name}-"))
        return self

    def __exit__(self, exc_type, exc, tb):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
        for proc in self._children:
            stop(proc, timeout=5.0)
        if exc_type is not None and issubclass(exc_type, Exception):
            for log in sorted(self.dir.glob("*.log")):
                print(f"--- last lines of {log.name}:\n{self.log_tail(log.name)}", file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def spawn(self, args, log_name: str) -> subprocess.Popen:
        """Start a child in its own session (a terminal's Ctrl-C reaches us, and we stop it), output to a log."""
        with open(self.dir / log_name, "ab") as log:
            proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    cwd=str(ROOT), env=clean_env(), start_new_session=True)
        self._children.append(proc)
        return proc

    def spawn_daemon(self, state_dir: Path, port: int) -> subprocess.Popen:
        return self.spawn([PYTHON, "-m", "pdserver.main", "node", "--state-dir", str(state_dir),
                           "--port", str(port)], "daemon.log")

    def spawn_baseline(self, modules, port: int) -> subprocess.Popen:
        modules_file = self.dir / "modules.json"
        modules_file.write_text(json.dumps(modules))
        return self.spawn([PYTHON, "-c", BASELINE_SERVER, str(port), str(modules_file)], "baseline.log")

    def log_tail(self, log_name: str, lines: int = 15) -> str:
        path = self.dir / log_name
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def stop(proc: subprocess.Popen, timeout: float = 10.0):
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code (negative: killed by that signal)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def http_status(port: int, path: str = "/api/v1/health", timeout: float = 1.0):
    """The status code of one GET, or None when nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def wait_healthy(proc: subprocess.Popen, port: int, started: float, limit: float = 20.0) -> float:
    """Seconds from ``started`` until GET /api/v1/health answers 200, polled every 10 ms."""
    while time.perf_counter() - started < limit:
        if http_status(port) == 200:
            return time.perf_counter() - started
        if proc.poll() is not None:
            raise RuntimeError(f"child exited with {proc.returncode} before answering")
        time.sleep(0.01)
    raise RuntimeError(f"no answer within {limit} s")


def table(title: str, rows):
    """rows: (metric, ours, baseline, ratio, goal, meets or None); numbers are already formatted."""
    header = ("metric", "ours", "baseline", "ratio", "goal", "verdict")
    body = [tuple(r[:5]) + ({True: "meets", False: "misses", None: "-"}[r[5]],) for r in rows]
    widths = [max(len(str(line[i])) for line in [header] + body) for i in range(len(header))]
    print(f"\n{title}")
    for line in [header, tuple("-" * w for w in widths)] + body:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(line, widths)).rstrip())
    sys.stdout.flush()


def raise_fd_limit(at_least: int = 65536) -> int:
    """Raise this process's open-file limit (inherited by the children it starts): the soft limit to the hard one,
    and as root the hard one to ``at_least`` too (a router worker holds one descriptor per session). Returns the
    soft limit now in force."""
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if os.geteuid() == 0 and hard != resource.RLIM_INFINITY and hard < at_least:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (at_least, at_least))
            return at_least
        except (ValueError, OSError):
            pass
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _as_postgres(argv):
    """PostgreSQL's server refuses to run as root: as root, run it as Debian's ``postgres`` user."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)


class Postgres:
    """A throw-away PostgreSQL cluster (Debian's server binaries under /usr/lib/postgresql/*/bin, the newest) on a
    temp dir and a free loopback port, trust authentication, the server's default settings (fsync on), with one
    empty database; ``url`` is its ``--db``. A context manager: stopped (immediate) and removed at the end. The same
    way as tests/postgres.py, without pytest."""

    SUPERUSER = "paradrop"

    def __init__(self, database: str = "bench"):
        import glob
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
        if not found:
            raise RuntimeError("no PostgreSQL server under /usr/lib/postgresql (tools/setup-system installs it)")
        self.bin = Path(found[-1]).parent
        self.database = database
        self.port = free_port()
        self.base = None
        self._started = False

    @property
    def url(self) -> str:
        return f"postgresql://{self.SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def __enter__(self):
        import pwd
        self.base = Path(tempfile.mkdtemp(prefix="pdbench-pg-"))
        (self.base / "socket").mkdir()
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (self.base, self.base / "socket"):
                os.chown(path, owner.pw_uid, owner.pw_gid)
        try:
            subprocess.run(_as_postgres([str(self.bin / "initdb"), "-D", str(self.base / "data"), "-A", "trust",
                                         "-U", self.SUPERUSER, "-E", "UTF8", "--locale=C", "--no-sync"]),
                           check=True, capture_output=True, timeout=120)
            self._started = True
            options = f"-p {self.port} -k {self.base / 'socket'} -c listen_addresses=127.0.0.1"
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.base / "data"), "-o", options,
                                         "-l", str(self.base / "server.log"), "-w", "-t", "60", "start"]),
                           check=True, capture_output=True, timeout=120)
            subprocess.run([str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
                            self.SUPERUSER, self.database], check=True, capture_output=True, timeout=60)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if self._started:
            subprocess.run(_as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.base / "data"), "-m", "immediate",
                                         "-w", "stop"]), capture_output=True, timeout=120)
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)
        return False


def percentile(values, share: float) -> float:
    """The ``share`` (0..1) quantile of ``values``, interpolated between the two nearest."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
