"""A fleet on one controller: simulated nodes speaking the real node protocol, against a bare call fan-out.

Goals: a deployment of one chute version to every node, until every delivery has succeeded, takes <= 1.3x a bare
fan-out (the same call to every node at once through the same router, from a client joined as the controller,
with no controller logic); the controller's backend process stays < 150 MB resident beyond the router
(each backend < 300 MB above 1,000 nodes: issue 12's 10,000); the first page of the node list answers in < 100 ms.
The documented figure is 1,000 nodes (``--nodes 1000``, the default; about a minute on 2 busy cores).

``pdserver controller`` runs with its embedded crossbar on a temp state dir and free ports (its first admin's
password from PARADROP_CONTROLLER_ADMIN_PASSWORD). The bench logs in and creates the nodes through the HTTP API,
then starts ``--procs`` processes of simulated nodes (tools/bench/fleet_nodes.py: WAMP-CRA with each node's id and
secret, every procedure of pdserver/cloud/protocol.py registered, STATE published on join and after each change,
install_chute answered at its end for a progressive call, else followed by its CHANGE event). Connect time runs from
their start (once the controller's backend serves the router's authenticator) until ``GET /api/v1/nodes`` shows
every node online with the state it published. Then, ``--reps`` times alternating: a new version of a tiny light
chute created in the store (JSON {config}) and deployed to all nodes, timed from the POST until every node
acknowledged its delivery (answered the call: state sent or later) and until the deployment's websocket closes
(every delivery final; all must have succeeded); and two bare fan-outs (fleet_nodes.py fanout, joined beforehand
with the ticket from the controller's state dir): the goal's baseline sends every node the deployment's own call
(install_chute, then update_chute, with the same keyword arguments and progressive results, for a chute of its
own), so that the comparison holds the router's and the nodes' work equal and measures what the controller adds;
a get_state call to every node (no arguments; the nodes answer with their state) is timed beside it. ``--warmup``
rounds of all three come first, unmeasured: the first installs, the second updates, and the measured runs update
again, so both sides find the controller's and the router's caches filled (crossbar caches an authorization per
procedure URI; with one warm-up round, the first measured deployment made the router authorize 1,000 update_chute
URIs afresh and the fan-out after it found them cached). Before each step the controller is let settle (its CPU
idle). The CPU seconds each party used (the controller backend or the fan-out client, the router, the simulated
nodes) show where the work is; with ``--py-spy FILE`` (``pip install py-spy``) the controller backend(s), the
fan-out client and the router worker are profiled during each step. RSS: the controller process (the backend) and
crossbar's processes under it (the router), the largest seen after connecting and after each run.

The comparison is like for like: the fan-out client and the controller backend are one process each, joined
before the runs, speaking the same serializer (msgpack) to the same router, calling the same simulated nodes.
What differs is what the goal measures: the deployment's HTTP request, its records and its websocket. WAMP messages
per delivery (or fan-out call) through the router are counted by the simulated nodes, by type, each with its
counterpart on the caller's side (INVOCATION: the CALL, YIELD: the RESULT, PUBLISH: the EVENT to the controller;
PUBLISHED goes to the node only), from the settled controller before a run to the settled controller after it.
The backends' relay messages to each other are not in that count (their CPU and the router's are).

``--backends N`` (N >= 2; or 1 with ``--router-apart``): the issue-12 topology. crossbar runs on its own from the
config ``pdserver router-config`` prints (listening on a free loopback port, the controllers' ticket in
PARADROP_CONTROLLER_TICKET), and N ``pdserver controller --router URL --router-ticket-file F --db postgresql://...``
processes join it, each with its own HTTP port and state dir, on one PostgreSQL database (``--db``, else a
throw-away cluster: Debian's server binaries, default settings, on a temp dir; ``--postgres`` gives one backend that
too). The fan-out client joins with a principal and role of its own that the bench adds to the printed config, with
the controller role's permissions (the same router, the same permissions, the same serializer). The nodes are
created through the backends in turn; the deployment is POSTed to backend 1 and followed on backend 2's websocket
(the relay is in the measured path); its "stored" time runs until GET /api/v1/deployments/ID on backend 1 shows
every delivery succeeded (an end reaches the websockets once written, so the two differ by the GET's own time). Each
backend's RSS and CPU are shown apart, and the first page of the node list (GET /api/v1/nodes?limit=100) is timed
``--pages`` times on each backend, alternating, once the fleet is connected and the backends settled. The bench
raises its open-file limit (the children inherit it); a router worker holds one descriptor per session. ``--logs
DIR`` keeps the logs; lines at warn level or worse are summed up.
"""
import argparse
import collections
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from urllib.parse import urljoin

# This directory holds a queue.py, which must not shadow the standard library's queue module (see api.py).
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import psutil  # noqa: E402
import requests  # noqa: E402
import websocket  # noqa: E402  (websocket-client)

import _common as c  # noqa: E402

NODES = 1000
PROCS = 4
REPS = 3
WARMUP = 2  # an install and an update: see the docstring
GOAL_RATIO = 1.3
GOAL_BACKEND_MB = 150.0
GOAL_BACKEND_MB_LARGE = 300.0  # each backend, above NODES nodes (issue 12: 10,000 nodes)
GOAL_PAGE_MS = 100.0  # GET /api/v1/nodes?limit=100 on each backend
PAGES = 50
FANOUT_AUTHID = FANOUT_ROLE = "fleet-bench"  # the fan-out's principal and role on a router run on its own
PASSWORD = "fleet-bench-password-123"
CHUTE = "fleetbench"
FANOUT_CHUTE = "fleetfanout"  # the chute the bare fan-out's commands install: the nodes keep it beside CHUTE
START_LIMIT = 90.0  # seconds for the controller (and its crossbar) to answer
CONNECT_LIMIT = 600.0
DEPLOY_LIMIT = 600.0
POLL = 0.5  # seconds between node listings while the fleet connects
ACKNOWLEDGED = ("sent", "queued", "running", "succeeded")  # a delivery's states once its node answered
SETTLE_CPU = 0.05  # the controller is settled when it used less than this share of a core...
SETTLE_WINDOW = 0.5  # ...over this many seconds
SETTLE_LIMIT = 60.0
PYTHON = sys.executable  # the bench's own interpreter (``make bench`` runs it with the repository's venv)
PY_SPY = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
NODES_SCRIPT = os.path.join(_HERE, "fleet_nodes.py")
MB = 1024 * 1024


def light_chute(version: str, name: str = CHUTE) -> dict:
    return {"name": name, "version": version,
            "services": {"main": {"type": "light", "image": "python3", "command": "python3 -m http.server 8000"}}}


class Api:
    """The controller's HTTP API with a keep-alive session per thread."""

    def __init__(self, port: int):
        self.base = f"http://127.0.0.1:{port}"
        self.token = None
        self._sessions = {}

    def _session(self) -> requests.Session:
        ident = threading.get_ident()
        if ident not in self._sessions:
            self._sessions[ident] = requests.Session()
        return self._sessions[ident]

    def pages(self, path: str) -> list:
        """Every item of a paged list: the controller names the next page in a Link header (rel=next)."""
        items, url = [], self.base + path
        while url:
            response = self._session().get(url, headers={"Authorization": f"Bearer {self.token}"}, timeout=120)
            if response.status_code != 200:
                raise RuntimeError(f"GET {url}: {response.status_code} {response.text[:300]}")
            items += response.json()
            following = response.links.get("next", {}).get("url")
            url = urljoin(url, following) if following else None
        return items

    def call(self, method: str, path: str, body=None, expect=(200,)):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self._session().request(method, self.base + path, json=body, headers=headers, timeout=120)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text[:300]}")
        return response.json()


def spawn_controller(scratch: c.Scratch, state: str, port: int, wamp_port: int, db=None, router=None,
                     ticket_file=None, log_name="controller.log") -> subprocess.Popen:
    """``pdserver controller`` with the first admin's password and crossbar's path in its environment (Scratch
    gives children an environment without PARADROP_* settings): its embedded router on ``wamp_port``, or joining
    ``router`` with the ticket in ``ticket_file``."""
    extra = [f"PARADROP_CONTROLLER_ADMIN_PASSWORD={PASSWORD}"]
    if os.environ.get("PARADROP_CROSSBAR"):
        extra.append(f"PARADROP_CROSSBAR={os.environ['PARADROP_CROSSBAR']}")
    joining = ["--router", router, "--router-ticket-file", str(ticket_file)] if router else \
        ["--wamp-port", str(wamp_port)]
    return scratch.spawn(["env", *extra, PYTHON, "-m", "pdserver.main", "controller", "--state-dir", state,
                          "--port", str(port), *joining, *(["--db", db] if db else [])], log_name)


def start_router(scratch: c.Scratch, crossbar: str, port: int):
    """crossbar on its own from the config ``pdserver router-config`` prints (listening on 127.0.0.1:``port``),
    the controller's ticket in PARADROP_CONTROLLER_TICKET, as tools/crossbar/README.md runs it. One addition: a
    principal FANOUT_AUTHID with a role of its own holding the controller role's permissions, for the fan-out
    client (its session told apart from the backends' in the router's logs).
    Returns (the crossbar process, the controllers' ticket file, the fan-out's ticket file)."""
    printed = subprocess.run([PYTHON, "-m", "pdserver.main", "router-config", "--host", "127.0.0.1", "--port",
                              str(port), "--worker-path", str(c.ROOT / "pdserver" / "controller" / "router_worker")],
                             capture_output=True, text=True, check=True, cwd=str(c.ROOT), env=c.clean_env(),
                             timeout=60)
    config = json.loads(printed.stdout)
    principals = config["workers"][0]["transports"][0]["paths"]["ws"]["auth"]["ticket"]["principals"]
    (controller_authid, controller), = principals.items()
    variable = controller["ticket"][2:-1]  # "${PARADROP_CONTROLLER_TICKET}"
    realm = config["workers"][0]["realms"][0]
    role = next(r for r in realm["roles"] if r["name"] == controller["role"])
    realm["roles"].append({**json.loads(json.dumps(role)), "name": FANOUT_ROLE})
    fan_ticket, ticket = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    principals[FANOUT_AUTHID] = {"ticket": fan_ticket, "role": FANOUT_ROLE}
    cbdir = scratch.dir / "router"
    (cbdir / "www").mkdir(parents=True)
    (cbdir / "config.json").write_text(json.dumps(config, indent=2))
    ticket_file, fan_ticket_file = scratch.dir / "ticket", scratch.dir / "fanout-ticket"
    for path, value in ((ticket_file, ticket), (fan_ticket_file, fan_ticket)):
        path.write_text(value + "\n")
        path.chmod(0o600)
    proc = scratch.spawn(["env", f"{variable}={ticket}", crossbar, "start", "--cbdir", str(cbdir), "--config",
                          "config.json", "--color", "false", "--logformat", "standard", "--loglevel", "warn"],
                         "router.log")
    return proc, ticket_file, fan_ticket_file


def router_processes(controller: subprocess.Popen) -> list:
    """crossbar's processes under the controller (its node controller and router worker)."""
    try:
        return psutil.Process(controller.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def rss_mb(processes) -> float:
    total = 0
    for proc in processes:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total / MB


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def wait_settled(pid: int):
    """Until the controller's backend uses under SETTLE_CPU of a core (nodes' late state messages are handled)."""
    deadline = time.perf_counter() + SETTLE_LIMIT
    while time.perf_counter() < deadline:
        before = cpu_seconds(pid)
        time.sleep(SETTLE_WINDOW)
        if cpu_seconds(pid) - before < SETTLE_CPU * SETTLE_WINDOW:
            return
    raise RuntimeError(f"the controller stayed busy for {SETTLE_LIMIT:.0f} s")


def wait_port(controller: subprocess.Popen, port: int, name: str = "the controller"):
    """Until the router (embedded in ``controller``, or that process itself) accepts connections."""
    deadline = time.perf_counter() + START_LIMIT
    while time.perf_counter() < deadline:
        check_alive({name: controller})
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"the embedded router did not listen on port {port} within {START_LIMIT:.0f} s")


def check_alive(procs: dict):
    for name, proc in procs.items():
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")


def node_status(paths) -> dict:
    total = {"ready": 0, "failed": 0, "lost": 0, "first_error": None}
    for path in paths:
        try:
            with open(path) as f:
                status = json.load(f)
        except (OSError, ValueError):
            continue
        for key in ("ready", "failed", "lost"):
            total[key] += status[key]
        total["first_error"] = total["first_error"] or status["first_error"]
    return total


def message_counts(procs) -> collections.Counter:
    """The WAMP messages the simulated nodes sent and received so far, by type (each process writes them to its
    status file on SIGUSR1)."""
    paths = [path for _, path in procs]
    before = {str(path): json.loads(path.read_text())["seq"] for path in paths}
    for proc, _ in procs:
        proc.send_signal(signal.SIGUSR1)
    deadline = time.perf_counter() + 30
    total = collections.Counter()
    for path in paths:
        while True:
            status = json.loads(path.read_text())
            if status["seq"] > before[str(path)]:
                total.update(status["messages"])
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the node process of {path} did not report its message counts")
            time.sleep(0.02)
    return total


def through_router(delta: collections.Counter) -> int:
    """Messages through the router: the nodes' own, plus the caller's counterpart of each (see the docstring)."""
    return sum(delta.values()) + delta["in Invocation"] + delta["out Yield"] + delta["out Publish"]


def connect_fleet(scratch, api: Api, creds, procs: int, url: str, watched: dict) -> float:
    """Start the node processes; seconds until the API shows every node online with its published state."""
    paths = []
    started = time.perf_counter()
    for i in range(procs):
        part = creds[i::procs]
        creds_path, status_path = scratch.dir / f"creds-{i}.json", scratch.dir / f"status-{i}.json"
        creds_path.write_text(json.dumps(part))
        paths.append(status_path)
        watched[f"node process {i}"] = scratch.spawn([PYTHON, NODES_SCRIPT, "nodes", str(creds_path),
                                                      str(status_path), url], f"nodes-{i}.log")
    while time.perf_counter() - started < CONNECT_LIMIT:
        check_alive(watched)
        status = node_status(paths)
        if status["failed"]:
            raise RuntimeError(f"{status['failed']} simulated nodes failed: {status['first_error']}")
        listed = api.pages("/api/v1/nodes?online=true&limit=1000")
        if sum(1 for n in listed if n["version"]) == len(creds):
            return time.perf_counter() - started
        time.sleep(POLL)
    raise RuntimeError(f"not every node came online within {CONNECT_LIMIT:.0f} s: {node_status(paths)}")


def deploy(api: Api, node_ids, version: str, watch: Api = None) -> dict:
    """Seconds from POST /api/v1/deployments until every node acknowledged its delivery (its answer: state sent or
    later) and until the deployment's websocket closes (every delivery final; all must have succeeded). The
    websocket is read from ``watch`` (another backend: the relay is in the measured path), else from ``api``."""
    watch = watch or api
    api.call("POST", f"/api/v1/store/chutes/{CHUTE}/versions", {"config": light_chute(version)}, expect=(201,))
    started = time.perf_counter()
    created = api.call("POST", "/api/v1/deployments", {"chute": CHUTE, "version": version, "nodes": node_ids},
                       expect=(202,))
    posted = time.perf_counter() - started
    waiting = set(node_ids)
    acknowledged = None
    seen, closed = {}, None  # the websocket's last state per node; how it ended
    # websocket-client checks UTF-8 in pure Python unless told not to: slower than the controller sends
    ws = websocket.create_connection(f"ws://{watch.base.split('://', 1)[1]}/ws/deployments/{created['id']}",
                                     header=[f"Authorization: Bearer {watch.token}"], timeout=DEPLOY_LIMIT,
                                     skip_utf8_validation=True)
    try:
        while True:
            opcode, frame = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                closed = "closed"
                break
            for event in json.loads(frame):  # the updates of one turn of the controller's reactor
                seen[event["node_id"]] = event["state"]
                if event["state"] in ACKNOWLEDGED and waiting:
                    waiting.discard(event["node_id"])
                    if not waiting:
                        acknowledged = time.perf_counter() - started
    except websocket.WebSocketConnectionClosedException:
        closed = "connection lost"
    seconds = time.perf_counter() - started
    ws.close()
    # A delivery's end reaches the websocket once written (fleet.Fleet._advance); the GET is timed all the same.
    while True:
        shown = api.call("GET", f"/api/v1/deployments/{created['id']}")
        if shown["states"] == {"succeeded": len(node_ids)} or time.perf_counter() - started > DEPLOY_LIMIT:
            break
        time.sleep(0.05)
    stored = time.perf_counter() - started
    if shown["states"] != {"succeeded": len(node_ids)}:
        raise RuntimeError(f"deployment {created['id']} ended with {shown['states']}; its websocket on "
                           f"{watch.base} {closed} after {seconds:.1f} s having shown "
                           f"{dict(collections.Counter(seen.values()))}")
    return {"succeeded": seconds, "acknowledged": acknowledged if acknowledged is not None else seconds,
            "posted": posted, "stored": stored}


class Cpu:
    """CPU seconds (user + system, all threads) of named groups of processes over one measured step."""

    def __init__(self, groups: dict):
        self._groups = groups
        self._before = None

    def _now(self) -> dict:
        out = {}
        for name, processes in self._groups.items():
            out[name] = 0.0
            for proc in processes:
                try:
                    times = proc.cpu_times()
                    out[name] += times.user + times.system
                except psutil.NoSuchProcess:
                    pass
        return out

    def start(self):
        self._before = self._now()

    def stop(self) -> dict:
        now = self._now()
        return {name: now[name] - self._before[name] for name in now}


class Profiler:
    """py-spy recording the controller backend(s) and the router worker during each measured step (``--py-spy
    FILE``: wall-clock collapsed stacks, idle included, per thread, in FILE.<process>.<step>.N: the router's
    FILE.router.deployment.1 beside FILE.router.command.1 shows what the controller costs it)."""

    def __init__(self, path, pids: dict):
        self._path, self._pids = path, pids
        self._procs = []

    def start(self, step: str, rep: int):
        if self._path is None:
            return
        for name, pid in self._pids.items():
            self._procs.append(subprocess.Popen(
                [PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--idle", "--threads", "--rate", "200",
                 "--output", f"{self._path}.{name}.{step}.{rep + 1}"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL))
        time.sleep(1.0)  # py-spy attaches

    def stop(self):
        for proc in self._procs:
            proc.send_signal(signal.SIGINT)  # py-spy writes its file on Ctrl-C
        for proc in self._procs:
            try:
                proc.wait(30)
            finally:
                c.stop(proc)
        self._procs = []


class FanOut:
    """The fan-out process: joined as the controller, it calls every node's get_state once per ``run``."""

    def __init__(self, scratch, ids_path, config_path, url, authid=None, backends=1):
        extra = [authid, str(backends)] if authid else []
        self.proc = subprocess.Popen([PYTHON, NODES_SCRIPT, "fanout", str(ids_path), str(config_path), url, *extra],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=str(c.ROOT),
                                     env=c.clean_env(), start_new_session=True, text=True)
        scratch._children.append(self.proc)
        self._expect("joined")

    def _expect(self, key: str) -> dict:
        line = self.proc.stdout.readline()
        answer = json.loads(line) if line else {"error": f"the fan-out process exited ({self.proc.poll()})"}
        if key not in answer:
            raise RuntimeError(f"fan-out: {answer.get('error', answer)}")
        return answer

    def run(self, count: int, command: dict = None) -> float:
        """Seconds until every node answered its get_state, or (``command``: procedure, run, config) until every
        node answered that chute command with its change succeeded."""
        self.proc.stdin.write("go" + (" " + json.dumps(command) if command else "") + "\n")
        self.proc.stdin.flush()
        answer = self._expect("seconds")
        if answer["ok"] != count:
            raise RuntimeError(f"fan-out: {answer['errors']} of {count} calls failed")
        return answer["seconds"]

    def command(self, count: int, run: str, first: bool) -> float:
        """The deployment's call without the controller: the same procedure (install, then update), keyword
        arguments and progressive results, a chute of its own."""
        return self.run(count, {"procedure": "install_chute" if first else "update_chute", "run": run,
                                "config": light_chute(run, FANOUT_CHUTE)})


def page_times(apis, count: int) -> list:
    """Seconds of ``count`` GET /api/v1/nodes?limit=100 (the first page, every node) on each backend, alternating
    between them; one list per backend."""
    times = [[] for _ in apis]
    for _ in range(count):
        for i, api in enumerate(apis):
            started = time.perf_counter()
            response = api._session().get(api.base + "/api/v1/nodes?limit=100",
                                          headers={"Authorization": f"Bearer {api.token}"}, timeout=120)
            times[i].append(time.perf_counter() - started)
            if response.status_code != 200 or len(response.json()) != min(100, NODES_LISTED[0]):
                raise RuntimeError(f"GET /api/v1/nodes?limit=100: {response.status_code} {response.text[:300]}")
    return times


NODES_LISTED = [0]  # how many nodes a full page holds at most (set once they are made)
LOG_TROUBLE = ("#error]", "#critical]", "#warn]", "Traceback", "Unhandled")


def log_trouble(scratch: c.Scratch, names) -> dict:
    """Lines of the controllers' and the router's logs at warn level or worse: {log: (count, first lines)}."""
    out = {}
    for name in names:
        path = scratch.dir / name
        if not path.exists():
            continue
        lines = [line for line in path.read_text(errors="replace").splitlines()
                 if any(mark in line for mark in LOG_TROUBLE)]
        out[name] = (len(lines), lines[:3])
    return out


def keep_logs(scratch: c.Scratch, into: str):
    os.makedirs(into, exist_ok=True)
    for log in scratch.dir.glob("*.log"):
        shutil.copy(log, os.path.join(into, log.name))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=NODES, help=f"simulated nodes (default {NODES})")
    parser.add_argument("--procs", type=int, default=PROCS, help=f"processes they are spread over ({PROCS})")
    parser.add_argument("--reps", type=int, default=REPS, help=f"deployments and fan-outs, alternating ({REPS})")
    parser.add_argument("--warmup", type=int, default=WARMUP, help=f"unmeasured rounds of all three first ({WARMUP})")
    parser.add_argument("--py-spy", metavar="FILE", help="record the controller backend(s), the fan-out client "
                        "and the router worker during each measured step with py-spy (FILE.router.deployment.1, "
                        "FILE.router.command.1, FILE.controller.deployment.1...)")
    parser.add_argument("--db", help="the controllers' --db: an empty PostgreSQL database (postgresql://...); "
                        "default SQLite in its state dir with one backend, a throw-away PostgreSQL cluster with more")
    parser.add_argument("--backends", type=int, default=1, help="controller backends on one router (default 1: "
                        "the controller with its embedded router); 2 or more: crossbar run on its own and the "
                        "backends joining it with --router, on one PostgreSQL database")
    parser.add_argument("--router-apart", action="store_true", help="with one backend too: crossbar run on its "
                        "own, as with several (the like-for-like comparison with --backends 2)")
    parser.add_argument("--postgres", action="store_true", help="with one backend and no --db: a throw-away "
                        "PostgreSQL cluster instead of SQLite")
    parser.add_argument("--logs", metavar="DIR", help="copy the controllers', the router's and the node "
                        "processes' logs into DIR at the end")
    parser.add_argument("--pages", type=int, default=PAGES, help=f"node list pages timed per backend ({PAGES})")
    args = parser.parse_args()
    if args.backends < 1:
        parser.error("--backends is at least 1")
    crossbar = os.environ.get("PARADROP_CROSSBAR") or str(c.ROOT / ".venv-crossbar" / "bin" / "crossbar")
    if not os.path.exists(crossbar):
        sys.exit(f"fleet.py needs crossbar at {crossbar}: make crossbar, or set PARADROP_CROSSBAR")
    args.crossbar = crossbar
    args.fd_limit = c.raise_fd_limit()  # inherited by crossbar, the controllers and the node processes

    router = []  # crossbar's processes: killed even when the controller could not stop them
    try:
        measured = run(args, router)
    finally:
        for proc in router:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
    report(args, *measured)


def run(args, router: list):
    apart = args.backends > 1 or args.router_apart
    with contextlib.ExitStack() as stack:
        db = args.db
        if db is None and (args.backends > 1 or args.postgres):
            db = stack.enter_context(c.Postgres("fleet")).url
        args.db_shown = "PostgreSQL" + ("" if args.db else " (throw-away cluster)") if db else "SQLite"
        scratch = stack.enter_context(c.Scratch("fleet"))  # left first: the controllers stop before the database
        if args.logs:
            stack.callback(keep_logs, scratch, args.logs)  # at the end, before the children stop
        ports = [c.free_port() for _ in range(args.backends)]
        wamp_port = c.free_port()
        watched = {}
        if apart:
            crossbar, ticket_file, fan_ticket_file = start_router(scratch, args.crossbar, wamp_port)
            watched["the router"] = crossbar
            wait_port(crossbar, wamp_port, "the router")
            crossbar_ps = psutil.Process(crossbar.pid)
            router_group = lambda: [crossbar_ps] + crossbar_ps.children(recursive=True)  # noqa: E731
            router.extend(router_group())
            url = f"ws://127.0.0.1:{wamp_port}/ws"
            controllers = []
            for i, port in enumerate(ports):
                controllers.append(spawn_controller(scratch, str(scratch.dir / f"state-{i + 1}"), port, wamp_port,
                                                    db, url, ticket_file, f"controller-{i + 1}.log"))
                watched[f"backend {i + 1}"] = controllers[-1]
                if i == 0:  # the first makes the tables and the first admin; the others start together after it
                    c.wait_healthy(controllers[0], port, time.perf_counter(), START_LIMIT)
        else:
            state = scratch.dir / "state"
            controllers = [spawn_controller(scratch, str(state), ports[0], wamp_port, db)]
            watched["backend 1"] = controllers[0]
            router_group = lambda: router_processes(controllers[0])  # noqa: E731
        started = time.perf_counter()
        apis = []
        for proc, port in zip(controllers, ports):
            c.wait_healthy(proc, port, started, START_LIMIT)
            api = Api(port)
            api.token = api.call("POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["token"]
            apis.append(api)
        if not apart:
            url = apis[0].call("GET", "/api/v1/router")["wamp_router"]
            router.extend(router_group())
            if not router:
                raise RuntimeError("no crossbar process under the controller")

        made = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:  # spread over the backends
            nodes = list(pool.map(lambda i: apis[i % len(apis)].call("POST", "/api/v1/nodes", {"name": f"sim-{i}"},
                                                                     expect=(201,)), range(args.nodes)))
        made = time.perf_counter() - made
        NODES_LISTED[0] = args.nodes
        creds = [[n["id"], n["secret"]] for n in nodes]
        node_ids = [n["id"] for n in nodes]
        apis[0].call("POST", "/api/v1/store/chutes", {"name": CHUTE, "description": "fleet bench"}, expect=(201,))

        ids_path = scratch.dir / "ids.json"
        ids_path.write_text(json.dumps(node_ids))
        if apart:
            fanout = FanOut(scratch, ids_path, fan_ticket_file, url, FANOUT_AUTHID, args.backends)
        else:
            wait_port(controllers[0], wamp_port)
            fanout = FanOut(scratch, ids_path, state / "router" / ".crossbar" / "config.json", url)
        connect = connect_fleet(scratch, apis[0], creds, args.procs, url, watched)
        backend_ps = [psutil.Process(p.pid) for p in controllers]
        backend_rss = [[rss_mb([p])] for p in backend_ps]
        routers = [rss_mb(router_group())]
        for p in backend_ps:
            wait_settled(p.pid)
        pages = page_times(apis, args.pages)

        nodes_cpu = [psutil.Process(p.pid) for name, p in watched.items() if name.startswith("node process")]
        counted = [(p, scratch.dir / f"status-{name.rsplit(' ', 1)[1]}.json") for name, p in watched.items()
                   if name.startswith("node process")]
        router_cpu = router_group()
        groups = {f"backend {i + 1}": [p] for i, p in enumerate(backend_ps)}
        cpu = Cpu({**groups, "fan-out": [psutil.Process(fanout.proc.pid)], "router": router_cpu,
                   "nodes": nodes_cpu})
        deploys, commands, gets = [], [], []  # the deployments, the two bare fan-outs
        worker = max(router_cpu, key=lambda p: p.memory_info().rss)  # crossbar's router worker is the larger
        profiler = Profiler(args.py_spy, {**{("controller" if i == 0 else f"backend{i + 1}"): p.pid
                                             for i, p in enumerate(backend_ps)}, "router": worker.pid,
                                          "fanout": fanout.proc.pid})
        watch = apis[1] if len(apis) > 1 else apis[0]

        def settle():
            for p in backend_ps:
                wait_settled(p.pid)

        def sample():
            for i, p in enumerate(backend_ps):
                backend_rss[i].append(rss_mb([p]))
            routers.append(rss_mb(router_group()))

        def measured(name: str, rep: int, step) -> dict:
            """One step between settled backends, with the CPU each party used and the nodes' messages."""
            settle()
            before = message_counts(counted)
            profiler.start(name, rep)
            cpu.start()
            try:
                result = step()
            finally:
                profiler.stop()
            result["cpu"] = cpu.stop()
            check_alive(watched)
            sample()
            settle()
            result["messages"] = message_counts(counted) - before
            return result

        for rep in range(args.warmup):
            settle()
            deploy(apis[0], node_ids, f"warm{rep + 1}", watch)
            settle()
            fanout.command(len(node_ids), f"warm{rep + 1}", first=rep == 0)
            settle()
            fanout.run(len(node_ids))
        for rep in range(args.reps):
            deploys.append(measured("deployment", rep, lambda: deploy(apis[0], node_ids, str(rep + 1), watch)))
            commands.append(measured("command", rep, lambda: {"seconds": fanout.command(
                len(node_ids), str(rep + 1), first=args.warmup == 0 and rep == 0)}))
            gets.append(measured("get_state", rep, lambda: {"seconds": fanout.run(len(node_ids))}))
        settle()
        sample()
        status = node_status(scratch.dir.glob("status-*.json"))
        if status["lost"] or status["failed"]:
            raise RuntimeError(f"simulated nodes lost or failed: {status}")
        trouble = log_trouble(scratch, [f"controller-{i + 1}.log" for i in range(args.backends)]
                              + ["controller.log", "router.log"])
    return made, connect, deploys, commands, gets, backend_rss, routers, pages, trouble


def report(args, made, connect, deploys, fans, gets, backend_rss, routers, pages, trouble):
    backends = len(backend_rss)
    names = [f"backend {i + 1}" for i in range(backends)]
    for run in deploys + fans + gets:
        run["cpu"]["backends"] = sum(run["cpu"][n] for n in names)
    done, acked, stored = (statistics.median(d[k] for d in deploys) for k in ("succeeded", "acknowledged", "stored"))
    fan, get = (statistics.median(f["seconds"] for f in runs) for runs in (fans, gets))
    ratios = [d["succeeded"] / f["seconds"] for d, f in zip(deploys, fans)]
    print(f"{args.nodes} simulated nodes in {args.procs} processes (created through the API in {made:.1f} s); "
          f"{args.warmup} unmeasured and {args.reps} measured alternating runs (medians); per run deployment "
          "succeeded/acknowledged/stored, the command's fan-out, get_state's fan-out s: "
          + ", ".join(f"{d['succeeded']:.2f}/{d['acknowledged']:.2f}/{d['stored']:.2f}/{f['seconds']:.2f}/"
                      f"{g['seconds']:.2f}" for d, f, g in zip(deploys, fans, gets))
          + f"; ratio per run {min(ratios):.2f}-{max(ratios):.2f}; the deployment's POST answered in "
          + "/".join(f"{d['posted']:.2f}" for d in deploys) + " s; open-file limit "
          + f"{args.fd_limit}; load average now " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for name, runs in (("deployment", deploys), ("command fan-out", fans), ("get_state fan-out", gets)):
        kinds = sum((run["messages"] for run in runs), collections.Counter())
        print(f"node-side WAMP messages per {name} call: "
              + ", ".join(f"{k} {v / (len(runs) * args.nodes):.2f}" for k, v in sorted(kinds.items())))
    print("RSS MB after connecting, after each deployment and fan-out, and at the end: "
          + "; ".join(f"{name} " + " ".join(f"{x:.0f}" for x in rss) for name, rss in zip(names, backend_rss))
          + "; router " + " ".join(f"{x:.0f}" for x in routers))
    for name, (count, first) in trouble.items():
        if count:
            print(f"{name}: {count} lines at warn or worse, first: " + " | ".join(line[:300] for line in first))
    rows = [
        ("connect all (s)", f"{connect:.1f}", "-", "-", "-", None),
        ("deployment to all succeeded (s)", f"{done:.2f}", f"{fan:.2f}", f"{done / fan:.2f}",
         f"<= {GOAL_RATIO:.1f}x", done <= GOAL_RATIO * fan),
        ("deployment acknowledged by all (s)", f"{acked:.2f}", f"{fan:.2f}", f"{acked / fan:.2f}", "-", None),
        ("deployment stored: GET shows all succeeded (s)", f"{stored:.2f}", f"{fan:.2f}", f"{stored / fan:.2f}",
         "-", None),
        ("deployment against get_state's fan-out (s)", f"{done:.2f}", f"{get:.2f}", f"{done / get:.2f}", "-", None),
    ]
    ours, base = (statistics.median(through_router(run["messages"]) / args.nodes for run in runs)
                  for runs in (deploys, fans))
    rows.append(("WAMP messages through the router per node", f"{ours:.1f}", f"{base:.1f}", f"{ours / base:.2f}",
                 "-", None))
    cpu_rows = [("backends", "CPU: controller backend(s) / fan-out client (s)", "fan-out")]
    if backends > 1:
        cpu_rows += [(n, f"CPU: {n} (s)", n) for n in names]
    cpu_rows += [("router", "CPU: router (s)", "router"), ("nodes", "CPU: simulated nodes (s)", "nodes")]
    for key, name, base_key in cpu_rows:
        ours = statistics.median(run["cpu"][key] for run in deploys)
        base = statistics.median(run["cpu"][base_key] for run in fans)
        rows.append((name, f"{ours:.2f}", f"{base:.2f}", f"{ours / base:.1f}" if base >= 0.01 else "-", "-", None))
    goal_mb = GOAL_BACKEND_MB if args.nodes <= NODES else GOAL_BACKEND_MB_LARGE
    for name, rss in zip(names, backend_rss):
        rows.append((f"{name} RSS, most seen (MB)", f"{max(rss):.0f}", "-", "-", f"< {goal_mb:.0f} MB",
                     max(rss) < goal_mb))
    rows.append(("router RSS, most seen (MB)", f"{max(routers):.0f}", "-", "-", "-", None))
    for name, times in zip(names, pages):
        for label, share in (("p50", 0.5), ("p99", 0.99)):
            value = c.percentile(times, share) * 1000
            rows.append((f"node list page of 100, {name}, {label} (ms)", f"{value:.1f}", "-", "-",
                         f"< {GOAL_PAGE_MS:.0f} ms", value < GOAL_PAGE_MS))
    shape = (f"{backends} backend(s) joined to crossbar run on its own" if backends > 1 or args.router_apart
             else "one controller with its embedded router")
    c.table(f"fleet: {args.nodes} nodes, {shape}, {args.db_shown}; deployment to all (POSTed to backend 1, "
            f"followed on backend {min(2, backends)}) against the bare fan-out of the same command", rows)


if __name__ == "__main__":
    main()
