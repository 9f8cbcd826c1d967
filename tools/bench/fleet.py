"""A fleet on one controller: simulated nodes speaking the real node protocol, against a bare call fan-out.

Goals: a deployment of one chute version to every node, until every delivery has succeeded, takes <= 1.3x a bare
fan-out (one get_state call to every node at once through the same router, from a client joined as the
controller, with no controller logic); the controller's backend process stays < 150 MB resident beyond the router.
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
(every delivery final; all must have succeeded); and the bare fan-out (fleet_nodes.py fanout, joined beforehand with
the ticket from the controller's state dir). ``--warmup`` rounds of both come first, unmeasured (the first
deployment also fills the controller's and the router's caches and the fan-out's first calls theirs). Before each
the controller is let settle (its CPU idle). The CPU seconds each party used (the controller backend or the fan-out
client, the router, the simulated nodes) show where the work is; with ``--py-spy FILE`` (``pip install py-spy``) the
controller backend and the router worker are profiled during each deployment. RSS: the controller process (the
backend) and crossbar's processes under it (the router), the largest seen after connecting and after each run.

The comparison is like for like: the fan-out client and the controller backend are one process each, joined
before the runs, speaking the same serializer (msgpack) to the same router, calling the same simulated nodes.
What differs is what the goal measures: the deployment's HTTP request, its records and its websocket. WAMP messages
per delivery (or fan-out call) through the router are counted by the simulated nodes, by type, each with its
counterpart on the caller's side (INVOCATION: the CALL, YIELD: the RESULT, PUBLISH: the EVENT to the controller;
PUBLISHED goes to the node only), from the settled controller before a run to the settled controller after it.
"""
import argparse
import collections
import json
import os
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
WARMUP = 1
GOAL_RATIO = 1.3
GOAL_BACKEND_MB = 150.0
PASSWORD = "fleet-bench-password-123"
CHUTE = "fleetbench"
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


def light_chute(version: str) -> dict:
    return {"name": CHUTE, "version": version,
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


def spawn_controller(scratch: c.Scratch, state: str, port: int, wamp_port: int, db=None) -> subprocess.Popen:
    """``pdserver controller`` with the first admin's password and crossbar's path in its environment (Scratch
    gives children an environment without PARADROP_* settings)."""
    extra = [f"PARADROP_CONTROLLER_ADMIN_PASSWORD={PASSWORD}"]
    if os.environ.get("PARADROP_CROSSBAR"):
        extra.append(f"PARADROP_CROSSBAR={os.environ['PARADROP_CROSSBAR']}")
    return scratch.spawn(["env", *extra, PYTHON, "-m", "pdserver.main", "controller", "--state-dir", state,
                          "--port", str(port), "--wamp-port", str(wamp_port), *(["--db", db] if db else [])],
                         "controller.log")


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


def wait_port(controller: subprocess.Popen, port: int):
    """Until the embedded router accepts connections."""
    deadline = time.perf_counter() + START_LIMIT
    while time.perf_counter() < deadline:
        check_alive({"the controller": controller})
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


def deploy(api: Api, node_ids, version: str) -> dict:
    """Seconds from POST /api/v1/deployments until every node acknowledged its delivery (its answer: state sent or
    later) and until the deployment's websocket closes (every delivery final; all must have succeeded)."""
    api.call("POST", f"/api/v1/store/chutes/{CHUTE}/versions", {"config": light_chute(version)}, expect=(201,))
    started = time.perf_counter()
    created = api.call("POST", "/api/v1/deployments", {"chute": CHUTE, "version": version, "nodes": node_ids},
                       expect=(202,))
    posted = time.perf_counter() - started
    waiting = set(node_ids)
    acknowledged = None
    # websocket-client checks UTF-8 in pure Python unless told not to: slower than the controller sends
    ws = websocket.create_connection(f"ws://{api.base.split('://', 1)[1]}/ws/deployments/{created['id']}",
                                     header=[f"Authorization: Bearer {api.token}"], timeout=DEPLOY_LIMIT,
                                     skip_utf8_validation=True)
    try:
        while True:
            opcode, frame = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            event = json.loads(frame)
            if event["state"] in ACKNOWLEDGED and waiting:
                waiting.discard(event["node_id"])
                if not waiting:
                    acknowledged = time.perf_counter() - started
    except websocket.WebSocketConnectionClosedException:
        pass
    seconds = time.perf_counter() - started
    ws.close()
    shown = api.call("GET", f"/api/v1/deployments/{created['id']}")
    if shown["states"] != {"succeeded": len(node_ids)}:
        raise RuntimeError(f"deployment {created['id']} ended with {shown['states']}")
    return {"succeeded": seconds, "acknowledged": acknowledged if acknowledged is not None else seconds,
            "posted": posted}


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
    """py-spy recording the controller backend and the router worker during the deployments only (``--py-spy
    FILE``: wall-clock collapsed stacks, idle included, per thread, in FILE.controller.N and FILE.router.N)."""

    def __init__(self, path, pids: dict):
        self._path, self._pids = path, pids
        self._procs = []

    def start(self, rep: int):
        if self._path is None:
            return
        for name, pid in self._pids.items():
            self._procs.append(subprocess.Popen(
                [PY_SPY, "record", "--pid", str(pid), "--format", "raw", "--idle", "--threads", "--rate", "200",
                 "--output", f"{self._path}.{name}.{rep + 1}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
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

    def __init__(self, scratch, ids_path, config_path, url):
        self.proc = subprocess.Popen([PYTHON, NODES_SCRIPT, "fanout", str(ids_path), str(config_path), url],
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

    def run(self, count: int) -> float:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        answer = self._expect("seconds")
        if answer["ok"] != count:
            raise RuntimeError(f"fan-out: {answer['errors']} of {count} calls failed")
        return answer["seconds"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=NODES, help=f"simulated nodes (default {NODES})")
    parser.add_argument("--procs", type=int, default=PROCS, help=f"processes they are spread over ({PROCS})")
    parser.add_argument("--reps", type=int, default=REPS, help=f"deployments and fan-outs, alternating ({REPS})")
    parser.add_argument("--warmup", type=int, default=WARMUP, help=f"unmeasured rounds of both first ({WARMUP})")
    parser.add_argument("--py-spy", metavar="FILE", help="record the controller backend and the router worker "
                        "during each deployment with py-spy (FILE.controller.1, FILE.router.1...)")
    parser.add_argument("--db", help="the controller's --db: an empty PostgreSQL database (postgresql://...); "
                        "default SQLite in its state dir")
    args = parser.parse_args()
    crossbar = os.environ.get("PARADROP_CROSSBAR") or str(c.ROOT / ".venv-crossbar" / "bin" / "crossbar")
    if not os.path.exists(crossbar):
        sys.exit(f"fleet.py needs crossbar at {crossbar}: make crossbar, or set PARADROP_CROSSBAR")

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
    with c.Scratch("fleet") as scratch:
        port, wamp_port = c.free_port(), c.free_port()
        state = scratch.dir / "state"
        controller = spawn_controller(scratch, str(state), port, wamp_port, args.db)
        watched = {"the controller": controller}
        started = time.perf_counter()
        c.wait_healthy(controller, port, started, START_LIMIT)
        api = Api(port)
        api.token = api.call("POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["token"]
        url = api.call("GET", "/api/v1/router")["wamp_router"]
        router.extend(router_processes(controller))
        if not router:
            raise RuntimeError("no crossbar process under the controller")

        made = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            nodes = list(pool.map(lambda i: api.call("POST", "/api/v1/nodes", {"name": f"sim-{i}"}, expect=(201,)),
                                  range(args.nodes)))
        made = time.perf_counter() - made
        creds = [[n["id"], n["secret"]] for n in nodes]
        node_ids = [n["id"] for n in nodes]
        api.call("POST", "/api/v1/store/chutes", {"name": CHUTE, "description": "fleet bench"}, expect=(201,))

        wait_port(controller, wamp_port)
        ids_path = scratch.dir / "ids.json"
        ids_path.write_text(json.dumps(node_ids))
        fanout = FanOut(scratch, ids_path, state / "router" / ".crossbar" / "config.json", url)
        connect = connect_fleet(scratch, api, creds, args.procs, url, watched)
        backend = [rss_mb([psutil.Process(controller.pid)])]
        routers = [rss_mb(router_processes(controller))]

        nodes_cpu = [psutil.Process(p.pid) for name, p in watched.items() if name.startswith("node process")]
        counted = [(p, scratch.dir / f"status-{name.rsplit(' ', 1)[1]}.json") for name, p in watched.items()
                   if name.startswith("node process")]
        router_cpu = router_processes(controller)
        deploy_cpu = Cpu({"caller": [psutil.Process(controller.pid)], "router": router_cpu, "nodes": nodes_cpu})
        fan_cpu = Cpu({"caller": [psutil.Process(fanout.proc.pid)], "router": router_cpu, "nodes": nodes_cpu})
        deploys, fans = [], []
        worker = max(router_cpu, key=lambda p: p.memory_info().rss)  # crossbar's router worker is the larger
        profiler = Profiler(args.py_spy, {"controller": controller.pid, "router": worker.pid})
        for rep in range(args.warmup):
            wait_settled(controller.pid)
            deploy(api, node_ids, f"warm{rep + 1}")
            wait_settled(controller.pid)
            fanout.run(len(node_ids))
        for rep in range(args.reps):
            wait_settled(controller.pid)
            before = message_counts(counted)
            profiler.start(rep)
            deploy_cpu.start()
            try:
                deploys.append(deploy(api, node_ids, str(rep + 1)))
            finally:
                profiler.stop()
            deploys[-1]["cpu"] = deploy_cpu.stop()
            check_alive(watched)
            backend.append(rss_mb([psutil.Process(controller.pid)]))
            routers.append(rss_mb(router_processes(controller)))
            wait_settled(controller.pid)
            between = message_counts(counted)
            deploys[-1]["messages"] = between - before
            fan_cpu.start()
            fans.append({"seconds": fanout.run(len(node_ids))})
            fans[-1]["cpu"] = fan_cpu.stop()
            fans[-1]["messages"] = message_counts(counted) - between
            routers.append(rss_mb(router_processes(controller)))
        status = node_status(scratch.dir.glob("status-*.json"))
        if status["lost"] or status["failed"]:
            raise RuntimeError(f"simulated nodes lost or failed: {status}")
    return made, connect, deploys, fans, backend, routers


def report(args, made, connect, deploys, fans, backend, routers):
    done, acked = (statistics.median(d[k] for d in deploys) for k in ("succeeded", "acknowledged"))
    fan = statistics.median(f["seconds"] for f in fans)
    ratios = [d["succeeded"] / f["seconds"] for d, f in zip(deploys, fans)]
    print(f"{args.nodes} simulated nodes in {args.procs} processes (created through the API in {made:.1f} s); "
          f"{args.warmup} unmeasured and {args.reps} measured alternating runs (medians); per run deployment "
          "succeeded/acknowledged/fan-out s: "
          + ", ".join(f"{d['succeeded']:.2f}/{d['acknowledged']:.2f}/{f['seconds']:.2f}"
                      for d, f in zip(deploys, fans))
          + f"; ratio per run {min(ratios):.2f}-{max(ratios):.2f}; the deployment's POST answered in "
          + "/".join(f"{d['posted']:.2f}" for d in deploys) + " s; load average now "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for name, runs in (("deployment", deploys), ("fan-out", fans)):
        kinds = sum((run["messages"] for run in runs), collections.Counter())
        print(f"node-side WAMP messages per {name} call: "
              + ", ".join(f"{k} {v / (len(runs) * args.nodes):.2f}" for k, v in sorted(kinds.items())))
    rows = [
        ("connect all (s)", f"{connect:.1f}", "-", "-", "-", None),
        ("deployment to all succeeded (s)", f"{done:.2f}", f"{fan:.2f}", f"{done / fan:.2f}",
         f"<= {GOAL_RATIO:.1f}x", done <= GOAL_RATIO * fan),
        ("deployment acknowledged by all (s)", f"{acked:.2f}", f"{fan:.2f}", f"{acked / fan:.2f}", "-", None),
    ]
    ours, base = (statistics.median(through_router(run["messages"]) / args.nodes for run in runs)
                  for runs in (deploys, fans))
    rows.append(("WAMP messages through the router per node", f"{ours:.1f}", f"{base:.1f}", f"{ours / base:.2f}",
                 "-", None))
    for key, name in (("caller", "CPU: controller backend / fan-out client (s)"), ("router", "CPU: router (s)"),
                      ("nodes", "CPU: simulated nodes (s)")):
        ours, base = (statistics.median(run["cpu"][key] for run in runs) for runs in (deploys, fans))
        rows.append((name, f"{ours:.2f}", f"{base:.2f}", f"{ours / base:.1f}" if base else "-", "-", None))
    rows += [
        ("controller backend RSS (MB)", f"{max(backend):.0f}", "-", "-", f"< {GOAL_BACKEND_MB:.0f} MB",
         max(backend) < GOAL_BACKEND_MB),
        ("router RSS (MB)", f"{max(routers):.0f}", "-", "-", "-", None),
    ]
    db = "PostgreSQL" if args.db else "SQLite"
    c.table(f"fleet: {args.nodes} nodes on one controller ({db}); deployment to all against a bare get_state "
            "fan-out", rows)


if __name__ == "__main__":
    main()
