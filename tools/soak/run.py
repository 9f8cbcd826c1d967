"""make soak: a hostile-input and load run against a fresh node; not part of make test.

Starts ``pdserver node`` (own temp state dir, a free port on 127.0.0.1, PARADROP_ADMIN_PASSWORD set), logs in,
and runs:

1. schemathesis against the node's own GET /api/v1/openapi.json with the token (fuzz.py; at least --cases
   generated cases), then hand-written hostile probes (probes.py). Two chutes exist meanwhile, so the chute
   routes get past their 404.
2. load: --clients concurrent API clients (load.py, one Twisted reactor, treq) doing authenticated GETs for
   --seconds, while a driver installs, updates and deletes small chutes through the API in a loop (driver.py).
   The daemon's RSS, thread count and open fds (psutil) are taken at idle before, at peak, and once idle again.

Prints one table with a PASS/FAIL per goal, writes the details (first failing examples, the daemon's
tracebacks) to <report dir>/<time>/report.md, and exits 1 when a goal fails. Everything it made is removed at
the end, also on an error, Ctrl-C or SIGTERM: the daemon, the Docker objects labelled with its node id, the
temp dir. Traffic goes to 127.0.0.1 only.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from datetime import datetime, timezone
from pathlib import Path

import psutil
import requests

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import driver as churn  # noqa: E402
import fuzz  # noqa: E402
import node as nodes  # noqa: E402
import probes  # noqa: E402
import report  # noqa: E402

HERE = Path(__file__).resolve().parent
MB = 1 << 20
TOLERANCE = {"rss": 10 * MB, "threads": 2, "fds": 2}
P99_GOAL_MS = 100.0


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=5000, help="schemathesis cases at least (default 5000)")
    p.add_argument("--clients", type=int, default=200, help="concurrent GET clients (default 200)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the load (default 60)")
    # Clients pause between requests, as people and dashboards do: 200 clients back to back are a closed loop
    # whose latency is clients / throughput (Little's law), 100 ms at 2,000 req/s, whatever the daemon does.
    p.add_argument("--think", type=float, default=0.1,
                   help="pause of each client between its requests, s (default 0.1; 0: back to back)")
    p.add_argument("--client-procs", type=int, default=2,
                   help="processes the clients are spread over (default 2: one reactor is slower than the daemon)")
    p.add_argument("--seed", type=int, default=20260, help="schemathesis seed of round 1 (default 20260)")
    p.add_argument("--workers", type=int, default=1, help="schemathesis workers (default 1)")
    p.add_argument("--checks", default=fuzz.DEFAULT_CHECKS, help="schemathesis checks")
    p.add_argument("--phases", default="fuzz,probes,load", help="any of fuzz,probes,load (default all)")
    p.add_argument("--report-dir", type=Path, default=nodes.ROOT / "soak-report")
    return p.parse_args(argv)


def say(message: str) -> None:
    print(message, flush=True)


def install_fixtures(node) -> dict:
    """Chutes that exist during phase 1: one the chute routes are fuzzed on, one the DELETE route may remove."""
    ids = {name: node.submit("POST", "/api/v1/chutes", nodes.chute_body(name)) for name in ("soak-probe",
                                                                                           "soak-victim")}
    for name, change_id in ids.items():
        change = node.wait_change(change_id)
        if change["state"] != "succeeded":
            raise RuntimeError(f"fixture chute {name}: change {change_id} {change['state']}")
    return {"chute": "soak-probe", "victim": "soak-victim", "changes": [ids["soak-probe"], 1]}


def run_load(node, args, workdir: Path, resources, change_id: int) -> dict:
    """Phase 2: idle figures, then clients + driver + canary, then the figures once idle again."""
    steady = node.submit("POST", "/api/v1/chutes", nodes.chute_body("soak-steady"))
    if node.wait_change(steady)["state"] != "succeeded":
        raise RuntimeError("the chute soak-steady did not install")
    paths = [["/api/v1/chutes", [200]], ["/api/v1/changes?limit=20", [200]], ["/api/v1/chutes/soak-steady", [200]],
             ["/api/v1/info/software", [200]], [f"/api/v1/changes/{change_id}", [200]],
             ["/api/v1/config/settings", [200]], ["/api/v1/health", [200]]]
    paths += [[f"/api/v1/chutes/{name}", [200, 404]] for name in churn.NAMES]  # 404 while the driver has none
    idle = resources.settle()
    idle_fds = resources.fd_kinds(node.port)
    say(f"  idle: RSS {idle['rss'] / MB:.1f} MB, {idle['threads']} threads, {idle['fds']} fds")

    procs = max(1, args.client_procs)
    specs, outs, children = [], [], []
    for i in range(procs):
        spec = workdir / f"load-{i}.json"
        clients = args.clients // procs + (1 if i < args.clients % procs else 0)
        spec.write_text(json.dumps({"url": node.url, "token": node.token, "clients": clients,
                                    "seconds": args.seconds, "think": args.think, "paths": paths}))
        specs.append(spec)
        outs.append(workdir / f"load-{i}.out.json")
    driver = churn.Driver(node.url, node.token)
    canary = churn.Canary(node.url, node.token)
    daemon = psutil.Process(node.pid)
    resources.start_peak()
    me = psutil.Process()
    cpu0, sys0, wait0, t0 = daemon.cpu_times(), psutil.cpu_times(), _run_delay(node.pid), time.monotonic()
    me0 = me.cpu_times()
    driver.start()
    canary.start()
    try:
        for spec, out in zip(specs, outs):
            children.append(subprocess.Popen([sys.executable, str(HERE / "load.py"), str(spec), str(out)],
                                             cwd=str(workdir), start_new_session=True))
        for child in children:
            child.wait(timeout=args.seconds + 120)
    finally:
        for child in children:
            nodes.stop_process(child, timeout=5)
        canary.stop.set()
        driver.stop.set()
    load_wall = time.monotonic() - t0
    cpu1, sys1, wait1 = daemon.cpu_times(), psutil.cpu_times(), _run_delay(node.pid)
    me1 = me.cpu_times()
    driver.join(timeout=300)
    canary.join(timeout=30)
    peak = resources.stop_peak()
    after, waited = resources.back_to(idle, TOLERANCE)
    after_fds = resources.fd_kinds(node.port)
    say(f"  after: RSS {after['rss'] / MB:.1f} MB, {after['threads']} threads, {after['fds']} fds "
        f"(waited {waited:.1f} s)")

    latencies, lag, per_path, errors, client_cpu = [], [], {}, {}, 0.0
    for child, out in zip(children, outs):
        if child.returncode != 0 or not out.exists():
            raise RuntimeError(f"a load client exited {child.returncode} without its results")
        data = json.loads(out.read_text())
        latencies += data["latencies"]
        lag += data["lag"]
        client_cpu += data["cpu"]
        for path, stats in data["per_path"].items():
            mine = per_path.setdefault(path, {"requests": 0, "errors": 0, "statuses": {}})
            mine["requests"] += stats["requests"]
            mine["errors"] += stats["errors"]
            for status, n in stats["statuses"].items():
                mine["statuses"][status] = mine["statuses"].get(status, 0) + n
        for key, bucket in data["errors"].items():
            mine = errors.setdefault(key, {"count": 0, "examples": []})
            mine["count"] += bucket["count"]
            mine["examples"] = (mine["examples"] + bucket["examples"])[:3]
    latencies.sort()
    lag.sort()
    busy = sum(getattr(sys1, f) - getattr(sys0, f) for f in ("user", "system", "nice", "irq", "softirq"))
    return {
        "requests": len(latencies), "rps": len(latencies) / args.seconds, "load_wall": load_wall,
        "errors": sum(b["count"] for b in errors.values()), "error_classes": errors, "per_path": per_path,
        "p50": _pct(latencies, 50), "p99": _pct(latencies, 99), "max": latencies[-1] if latencies else None,
        "idle": idle, "peak": peak, "after": after, "settled_in": waited,
        "driver": driver.summary(), "driver_alive": driver.is_alive(),
        "canary": {"requests": len(canary.latencies), "errors": canary.errors,
                   "p50": _pct(sorted(canary.latencies), 50), "p99": _pct(sorted(canary.latencies), 99)},
        "client_cpu": client_cpu / load_wall, "client_lag_p99": _pct(lag, 99),
        "daemon_cpu": ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / load_wall,
        "machine_cpu": busy / load_wall, "reactor_cpu_wait": (wait1 - wait0) / load_wall,
        "harness_cpu": (sum(me1[:2]) - sum(me0[:2])) / load_wall, "cores": psutil.cpu_count(), "clients": args.clients,
        "seconds": args.seconds, "think": args.think, "client_procs": procs,
        "fd_kinds": {"idle": idle_fds, "after": after_fds},
    }


def _run_delay(pid: int) -> float:
    """Seconds the process's main thread (the daemon's reactor) has spent runnable but waiting for a CPU."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _pct(values, q):
    if not values:
        return None
    return values[min(len(values) - 1, int(len(values) * q / 100))] if q != 50 else statistics.median(values)


def main(argv=None) -> int:
    args = parse_args(argv)
    phases = set(args.phases.split(","))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    report_dir = args.report_dir / stamp
    report_dir.mkdir(parents=True, exist_ok=True)
    results = {"args": {k: str(v) for k, v in vars(args).items()}, "started": stamp}
    t_start = time.monotonic()
    import docker
    client = docker.from_env(timeout=30)
    try:
        client.images.get(nodes.IMAGE)  # fails early when the engine or the image is missing
    finally:
        client.close()
    exit_code = 1
    with nodes.Workdir() as workdir:
        node = nodes.Node(workdir)
        resources = None
        t_wall = time.time()
        try:
            say(f"soak: pdserver node on {node.url} (pid {node.pid}), state in {node.state_dir}")
            node.wait_ready()
            node.login()
            resources = nodes.Resources(node.pid)
            doc = requests.get(node.url + "/api/v1/openapi.json", timeout=10).json()
            results["operations"] = len(fuzz.operations(doc))
            results["excluded"] = fuzz.exclusions(doc)
            fixtures = install_fixtures(node)
            judge = fuzz.Judge(doc)
            resources.start_peak()
            results["phase1_before"] = resources.sample()
            if "fuzz" in phases:
                say(f"phase 1: schemathesis, {args.cases}+ cases over {results['operations']} operations less "
                    f"{len(results['excluded'])} excluded:")
                for method, path, _, why in results["excluded"]:
                    say(f"  excluded {method.upper()} {path}: {why}")
                results["fuzz"] = fuzz.run(node, doc, workdir, report_dir, args.cases, args.seed, args.checks,
                                           args.workers, fixtures, log=say)
            if "probes" in phases and node.alive():
                say("phase 1b: hostile probes")
                results["probes"] = probes.run(node, doc, fixtures, judge, log=say)
                p = results["probes"]
                say(f"  {p['counts']['requests']} requests in {p['seconds']:.0f} s: {p['counts']['server_error']} "
                    f"5xx, {p['counts']['violations']} document violations, {p['counts']['no_answer']} unanswered")
            results["phase1_peak"] = resources.stop_peak()
            if not node.alive():
                raise RuntimeError(f"the daemon died in phase 1 (exit {node.proc.returncode}):\n{node.log_tail()}")
            results["quiesce"] = node.quiesce()
            results["phase1_after"] = resources.settle()
            if "load" in phases:
                say(f"phase 2: {args.clients} clients x {args.seconds:.0f} s of GETs while a driver installs, "
                    f"updates and deletes chutes")
                results["load"] = run_load(node, args, workdir, resources, fixtures["changes"][0])
            results["daemon_alive"] = node.alive()
            exit_code = 0
        except Exception as e:  # the table and the report still show what ran; the exit code says FAIL
            results["error"] = f"{type(e).__name__}: {e}"
            results["daemon_alive"] = node.alive()
            say(f"soak: aborted: {results['error']}\n{traceback.format_exc()}")
        finally:
            results["failures"] = nodes.failures_in_log(node.log_path, since=t_wall - 1)
            if resources is not None:
                resources.close()
            code = node.stop()
            gone = node.sweep_docker()
            results["daemon_exit"] = code
            results["swept"] = gone
            say(f"clean-up: daemon stopped (exit {code}), {gone} Docker object(s) with its label removed, "
                f"temp dir removed")
            if node.log_path.exists():
                (report_dir / "daemon.log").write_bytes(node.log_path.read_bytes())
    results["seconds"] = time.monotonic() - t_start
    rows, ok = report.rows(results, args, TOLERANCE, P99_GOAL_MS)
    text = report.markdown(results, rows, args)
    (report_dir / "report.md").write_text(text)
    (report_dir / "results.json").write_text(json.dumps(report.serializable(results), default=str, indent=1))
    report.print_table(rows)
    report.print_notes(results)
    say(f"report: {report_dir / 'report.md'} (total {results['seconds']:.0f} s)")
    return 0 if ok and exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
