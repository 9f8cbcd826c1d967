"""A throw-away ``pdserver node`` for the soak run: its process, its API session, its resource figures, and the
clean-up of everything it made (process, Docker objects with its node label, temp dir).

Everything here talks to 127.0.0.1 only.
"""
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "soak-admin-password-123"
USER = "paradrop"
LABEL_NODE = "org.paradrop.node"  # pdserver/chutes/naming.py
FINAL = ("succeeded", "failed", "cancelled", "interrupted")
IMAGE = "paradrop/busybox:latest"
HTTPD = ["httpd", "-f", "-p", "8000", "-h", "/"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def chute_body(name: str, version=1) -> dict:
    """A JSON {config} install or update of a small image chute (busybox httpd)."""
    return {"config": {"name": name, "version": version,
                       "services": {"main": {"type": "image", "image": IMAGE, "command": HTTPD}}}}


def stop_process(proc: subprocess.Popen, timeout: float = 10.0):
    """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


class Resources:
    """RSS, thread count and open fds of one pid, sampled by a background thread (for the peak)."""

    def __init__(self, pid: int, interval: float = 0.25):
        self._proc = psutil.Process(pid)
        self._interval = interval
        self._lock = threading.Lock()
        self._peak = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)
        self._thread.start()

    def sample(self) -> dict:
        with self._proc.oneshot():
            return {"rss": self._proc.memory_info().rss, "threads": self._proc.num_threads(),
                    "fds": self._proc.num_fds()}

    def fd_kinds(self, api_port: int) -> dict:
        """Open fds by kind: listening sockets, API connections, other TCP, unix sockets, pipes, files..."""
        kinds, tcp = {}, {}
        try:
            # one entry per fd
            for conn in {c.fd: c for c in self._proc.net_connections(kind="inet")}.values():
                if conn.status == psutil.CONN_LISTEN:
                    # the API on loopback, and on each chute network's gateway (for the chutes)
                    key = "tcp listen " + ("loopback" if conn.laddr.ip.startswith("127.") else "other addresses")
                elif conn.laddr and conn.laddr.port == api_port:
                    key = "tcp api client"
                else:
                    key = f"tcp {conn.status.lower()} to port {conn.raddr.port if conn.raddr else '-'}"
                tcp[key] = tcp.get(key, 0) + 1
            unix = len({c.fd for c in self._proc.net_connections(kind="unix")})
            for fd in os.listdir(f"/proc/{self._proc.pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{self._proc.pid}/fd/{fd}")
                except OSError:
                    continue
                kind = target.split(":", 1)[0] if ":" in target and not target.startswith("/") else "file"
                kinds[kind] = kinds.get(kind, 0) + 1
        except (psutil.Error, OSError):
            return kinds
        kinds.pop("socket", None)
        return {**tcp, "unix socket": unix, **kinds}

    def _run(self):
        while not self._stop.wait(self._interval):
            try:
                s = self.sample()
            except psutil.Error:
                return
            with self._lock:
                if self._peak is not None:
                    self._peak = {k: max(self._peak[k], s[k]) for k in s}

    def start_peak(self) -> None:
        with self._lock:
            self._peak = self.sample()

    def stop_peak(self) -> dict:
        with self._lock:
            peak, self._peak = self._peak, None
        return peak

    def close(self):
        self._stop.set()

    def settle(self, limit: float = 30.0, window: int = 6, interval: float = 0.5) -> dict:
        """The figures once they stop moving: ``window`` samples in a row with equal threads and fds and an RSS
        spread under 1 MB (at most ``limit`` s); the median of that window."""
        samples = []
        deadline = time.monotonic() + limit
        while True:
            samples.append(self.sample())
            last = samples[-window:]
            if len(last) == window and len({s["threads"] for s in last}) == 1 and \
                    len({s["fds"] for s in last}) == 1 and \
                    max(s["rss"] for s in last) - min(s["rss"] for s in last) < 1 << 20:
                break
            if time.monotonic() > deadline:
                break
            time.sleep(interval)
        last = samples[-window:]
        return {k: int(statistics.median(s[k] for s in last)) for k in ("rss", "threads", "fds")}

    def back_to(self, idle: dict, tolerance: dict, limit: float = 30.0, interval: float = 0.5):
        """(figures, seconds waited): waits until every figure is within ``tolerance`` of ``idle``, at most
        ``limit`` s; the figures are the last sample (the median of the last three when it never got there)."""
        t0 = time.monotonic()
        samples = []
        while True:
            s = self.sample()
            samples.append(s)
            if all(s[k] <= idle[k] + tolerance[k] for k in tolerance):
                return s, time.monotonic() - t0
            if time.monotonic() - t0 > limit:
                last = samples[-3:]
                return ({k: int(statistics.median(x[k] for x in last)) for k in s}, time.monotonic() - t0)
            time.sleep(interval)


class Node:
    """``pdserver node`` in its own session with a temp state dir and a free port on 127.0.0.1."""

    def __init__(self, workdir: Path, env_extra=None):
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
        env.update({"PARADROP_ADMIN_PASSWORD": PASSWORD, "PYTHONDONTWRITEBYTECODE": "1"}, **(env_extra or {}))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pdserver.main", "node", "--state-dir", str(self.state_dir),
                 "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=str(ROOT), env=env,
                start_new_session=True)
        self.http = requests.Session()
        self.token = None
        self.node_id = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def healthy(self) -> bool:
        try:
            return requests.get(self.url + "/api/v1/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def wait_ready(self, limit: float = 30.0) -> float:
        t0 = time.monotonic()
        while time.monotonic() - t0 < limit:
            if not self.alive():
                raise RuntimeError(f"pdserver exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.healthy():
                self.node_id = (self.state_dir / "node-id").read_text().strip()
                return time.monotonic() - t0
            time.sleep(0.05)
        raise RuntimeError(f"pdserver did not answer within {limit:.0f} s:\n{self.log_tail()}")

    def login(self) -> str:
        answer = requests.post(self.url + "/api/v1/auth/local", json={"username": USER, "password": PASSWORD},
                               timeout=10)
        answer.raise_for_status()
        self.token = answer.json()["token"]
        self.http.headers["Authorization"] = "Bearer " + self.token
        return self.token

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # the change queue

    def submit(self, method: str, path: str, body=None) -> int:
        answer = self.http.request(method, self.url + path, json=body, timeout=30)
        if answer.status_code != 202:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        return answer.json()["change_id"]

    def wait_change(self, change_id: int, limit: float = 120.0) -> dict:
        deadline = time.monotonic() + limit
        while True:
            change = self.http.get(f"{self.url}/api/v1/changes/{change_id}", timeout=30).json()
            if change.get("state") in FINAL:
                return change
            if time.monotonic() > deadline or not self.alive():
                raise RuntimeError(f"change {change_id} still {change.get('state')} after {limit:.0f} s")
            time.sleep(0.1)

    def chutes(self) -> list:
        return [c["name"] for c in self.http.get(self.url + "/api/v1/chutes", timeout=30).json()]

    def quiesce(self, limit: float = 180.0) -> dict:
        """Cancel every queued change, wait for the running ones, then delete every chute: the node idles again.
        Returns counts for the report."""
        cancelled = 0
        for change in self.http.get(self.url + "/api/v1/changes?state=queued&limit=1000", timeout=30).json():
            if self.http.post(f"{self.url}/api/v1/changes/{change['id']}/cancel", timeout=30).status_code == 200:
                cancelled += 1
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            busy = [c for state in ("queued", "running") for c in
                    self.http.get(f"{self.url}/api/v1/changes?state={state}&limit=1000", timeout=30).json()]
            if not busy:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"the change queue did not drain within {limit:.0f} s")
        deleted = 0
        ids = []
        for name in self.chutes():
            ids.append(self.submit("DELETE", f"/api/v1/chutes/{name}"))
            deleted += 1
        for change_id in ids:
            self.wait_change(change_id)
        return {"cancelled": cancelled, "deleted": deleted}

    # clean-up

    def stop(self) -> int:
        code = stop_process(self.proc)
        self.http.close()
        return code

    def sweep_docker(self) -> int:
        """Remove every container, network, volume and image carrying this node's label; returns how many."""
        node_id = self.node_id
        if node_id is None and (self.state_dir / "node-id").exists():
            node_id = (self.state_dir / "node-id").read_text().strip()
        if not node_id:
            return 0
        import docker
        label = f"{LABEL_NODE}={node_id}"
        client = docker.from_env(timeout=60)
        gone = 0
        try:
            for ct in client.containers.list(all=True, filters={"label": label}):
                ct.remove(force=True)
                gone += 1
            for net in client.networks.list(filters={"label": label}):
                net.remove()
                gone += 1
            for vol in client.volumes.list(filters={"label": label}):
                vol.remove(force=True)
                gone += 1
            for image in client.images.list(filters={"label": label}):
                client.images.remove(image.id, force=True)
                gone += 1
        finally:
            client.close()
        return gone


_RECORD = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4}) \[[^\]]*\] (.*)$")


def failures_in_log(log_path: Path, since: float = 0.0) -> list:
    """The tracebacks in the daemon's readable log (stdout; its JSON log keeps no exception messages) since
    ``since`` (unix time): [{"time", "why", "type", "text"}]."""
    out = []
    if not log_path.exists():
        return out
    records, current = [], None
    for line in log_path.read_text(errors="replace").splitlines():
        match = _RECORD.match(line)
        if match:
            current = {"time": datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S%z").timestamp(),
                       "why": match.group(2), "lines": []}
            records.append(current)
        elif current is not None:
            current["lines"].append(line.strip())
    for record in records:
        if record["time"] < since or not any(line.startswith("Traceback") for line in record["lines"]):
            continue
        last = next((line for line in reversed(record["lines"]) if line), "")
        out.append({"time": record["time"], "why": record["why"], "type": last.split(":", 1)[0],
                    "text": "\n".join(record["lines"])})
    return out


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


class Workdir:
    """A temp dir that is removed at the end, also on an error, Ctrl-C or SIGTERM (raised as SystemExit)."""

    def __enter__(self):
        signal.signal(signal.SIGTERM, _raise_on_sigterm)
        self.path = Path(tempfile.mkdtemp(prefix="pdsoak-"))
        return self.path

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second TERM must not cut the clean-up short
        shutil.rmtree(self.path, ignore_errors=True)
        return False
