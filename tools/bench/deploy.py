"""Chute deployment on the real Docker engine: installing an image chute, and bringing 20 chutes back at start.

Goals: an install's API call -> container running within 1.2 x baseline + 150 ms; 20 installed chutes running
again less than 5 s after the daemon's process starts.

1. Install. One daemon per PARADROP_READY_GRACE setting (the default 1.0 s, then 0). Each round POSTs an image
   chute (paradrop/busybox:latest running httpd) and polls the engine (docker SDK inspect, every 5 ms) until
   the container the node names paradrop-<node key>-<chute>-main-<change id> has status "running"; the change's own
   "finished" time (wall clock, taken by the node) gives the time until the install change succeeded, which
   includes the ready grace. The chute is then deleted through the API. Baseline, interleaved round by round:
   ``client.containers.run(image, command, detach=True)`` of the same image and command, polled the same way
   (from a second thread while the first one runs it), then removed. A first round of each is a warm-up and not counted; medians of ROUNDS are reported. The node
   also makes a network and a volume per chute, which the baseline does not: the step breakdown below the
   table shows what each step of the default-grace installs took (median over the rounds).

2. Restore at start. A daemon (grace 0, to install quickly) installs N_CHUTES chutes running ``sleep 3600``
   and is stopped with SIGTERM. Then, for each of two cases: the containers are only stopped
   (``stop(timeout=0)``), or removed altogether (a reboot that lost them); a fresh daemon (default settings) is
   spawned and the clock runs from its spawn until all N_CHUTES containers carrying its node label are running
   (one container list every 20 ms), and until its start-up "reconcile" change finished (its "finished" time).
   Baseline: the same N_CHUTES containers, stopped, started one after another with the SDK in a loop, until all
   run. Extra baselines, for scale: the same starts from PARALLEL threads at once (a table row without verdict),
   and creating plus starting N_CHUTES fresh containers with the SDK (printed above the table). The reconcile
   change's steps are summed by kind above the table.

Everything made is removed at the end, also on an error, Ctrl-C or SIGTERM: chutes through the API while a
daemon runs, then every container, network and volume with this run's node label (or the label put on the
baseline containers) through the SDK; Scratch stops the daemons and removes the temp dir.
"""
import hashlib
import os
import re
import statistics
import sys
import time
import uuid

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from concurrent.futures import ThreadPoolExecutor  # noqa: E402  (its thread module imports queue)

import docker  # noqa: E402
import requests  # noqa: E402

import _common as c  # noqa: E402

ROUNDS = 5
N_CHUTES = 20
IMAGE = "paradrop/busybox:latest"
HTTPD = ["httpd", "-f", "-p", "8000", "-h", "/"]
SLEEP = ["sleep", "3600"]
RATIO_GOAL, SLACK_GOAL = 1.2, 0.150  # install: ours <= 1.2 x baseline + 150 ms
RESTORE_GOAL = 5.0
PARALLEL = 8  # threads of the extra baseline that starts the stopped containers concurrently
LABEL_NODE = "org.paradrop.node"
LABEL_BENCH = "org.paradrop.bench"  # on the baseline containers, so clean-up finds them
FINAL = ("succeeded", "failed", "cancelled")


class Daemon:
    """One node daemon process with a logged-in API session."""

    def __init__(self, scratch: c.Scratch, state, env: dict):
        self.port = c.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = state
        self.wall0 = time.time()
        self.t0 = time.perf_counter()
        # /usr/bin/env execs the daemon in the same process, so Scratch still owns (and stops) it by its pid
        self.proc = scratch.spawn(["env"] + [f"{k}={v}" for k, v in env.items()]
                                  + [c.PYTHON, "-m", "pdserver.main", "node", "--state-dir", str(state),
                                     "--port", str(self.port)], "daemon.log")
        self.http = None

    def container(self, chute: str, service: str, deployment: int) -> str:
        """The name the node gives a chute's container (as pdserver.chutes.naming does)."""
        key = hashlib.sha256((self.state / "node-id").read_text().strip().encode()).hexdigest()[:8]
        return f"paradrop-{key}-{chute}-{service}-{deployment}"

    def login(self):
        c.wait_healthy(self.proc, self.port, self.t0)
        self.http = requests.Session()
        answer = self.http.post(self.url + "/api/v1/auth/local",
                                json={"username": "paradrop", "password": c.PASSWORD}, timeout=10)
        answer.raise_for_status()
        self.http.headers["Authorization"] = "Bearer " + answer.json()["token"]
        return self

    def alive(self) -> bool:
        return self.proc.poll() is None

    def submit(self, method: str, path: str, body=None) -> int:
        answer = self.http.request(method, self.url + path, json=body, timeout=10)
        if answer.status_code != 202:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {answer.text}")
        return answer.json()["change_id"]

    def change(self, change_id: int) -> dict:
        answer = self.http.get(f"{self.url}/api/v1/changes/{change_id}", timeout=10)
        answer.raise_for_status()
        return answer.json()

    def wait_change(self, change_id: int, limit: float = 60.0) -> dict:
        """The change, with its messages, once final; raises unless it succeeded."""
        deadline = time.perf_counter() + limit
        while True:
            change = self.change(change_id)
            if change["state"] in FINAL:
                break
            if time.perf_counter() > deadline or not self.alive():
                raise RuntimeError(f"change {change_id} still {change['state']} (daemon alive: {self.alive()})")
            time.sleep(0.01)
        if change["state"] != "succeeded":
            raise RuntimeError(f"change {change_id} ({change['type']} {change['target']}) {change['state']}: "
                               + " | ".join(m["message"] for m in change["messages"][-4:]))
        return change

    def stop(self):
        code = c.stop(self.proc)
        if self.http is not None:
            self.http.close()
        return code


def install_body(name: str, command) -> dict:
    return {"config": {"name": name, "version": 1,
                       "services": {"main": {"type": "image", "image": IMAGE, "command": command}}}}


def status(client, name: str):
    try:
        return client.api.inspect_container(name)["State"]["Status"]
    except docker.errors.NotFound:
        return None


def wait_running(client, name: str, t0: float, limit: float = 30.0) -> float:
    """Seconds from ``t0`` until container ``name`` has status running, inspected every 5 ms."""
    while time.perf_counter() - t0 < limit:
        if status(client, name) == "running":
            return time.perf_counter() - t0
        time.sleep(0.005)
    raise RuntimeError(f"container {name} not running within {limit:.0f} s")


def running_count(client, label: str) -> int:
    return sum(1 for ct in client.api.containers(all=True, filters={"label": label}) if ct["State"] == "running")


def wait_all_running(client, label: str, count: int, t0: float, proc=None, limit: float = 30.0) -> float:
    """Seconds from ``t0`` until ``count`` containers with ``label`` are running, listed every 20 ms."""
    while time.perf_counter() - t0 < limit:
        if running_count(client, label) >= count:
            return time.perf_counter() - t0
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the daemon exited with {proc.returncode}")
        time.sleep(0.02)
    raise RuntimeError(f"{running_count(client, label)} of {count} containers running after {limit:.0f} s")


def step_times(change: dict, chute: str) -> dict:
    """{step description: seconds} from a change's messages (a step lasts until the next message)."""
    messages = change["messages"]
    out = {}
    for here, after in zip(messages, messages[1:]):
        match = re.match(r"step \d+/\d+: (.*)", here["message"])
        if match:
            out[match.group(1).replace(chute, "<chute>")] = after["time"] - here["time"]
    return out


def step_kinds(change: dict) -> dict:
    """{first word of the step: (count, total seconds)} for a change's steps (reconcile's are one per object)."""
    messages = change["messages"]
    out = {}
    for here, after in zip(messages, messages[1:]):
        match = re.match(r"step \d+/\d+: (\w+)", here["message"])
        if match:
            count, seconds = out.get(match.group(1), (0, 0.0))
            out[match.group(1)] = (count + 1, seconds + after["time"] - here["time"])
    return out


# 1. install


def install_round(daemon: Daemon, client, name: str):
    """(seconds to running, seconds to change finished, seconds for the 202, step times), then deletes it."""
    wall0, t0 = time.time(), time.perf_counter()
    change_id = daemon.submit("POST", "/api/v1/chutes", install_body(name, HTTPD))
    accepted = time.perf_counter() - t0
    running = wait_running(client, daemon.container(name, "main", change_id), t0)
    change = daemon.wait_change(change_id)
    finished = change["finished"] - wall0
    daemon.wait_change(daemon.submit("DELETE", f"/api/v1/chutes/{name}"))
    return running, finished, accepted, step_times(change, name)


def polled(action, poll) -> float:
    """Runs ``action()`` in a thread while ``poll(t0)`` watches the engine from the same start: the baselines
    are polled exactly like the daemon's work, so the polling loads the engine alike on both sides."""
    with ThreadPoolExecutor(1) as pool:
        t0 = time.perf_counter()
        done = pool.submit(action)
        seconds = poll(t0)
        done.result()  # its error, if any
    return seconds


def baseline_round(client, name: str, bench_label: str) -> float:
    try:
        return polled(lambda: client.containers.run(IMAGE, HTTPD, detach=True, name=name,
                                                    labels={LABEL_BENCH: bench_label}),
                      lambda t0: wait_running(client, name, t0))
    finally:
        try:
            client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass


def bench_install(scratch, state, client, grace, run_id: str) -> dict:
    env = {} if grace is None else {"PARADROP_READY_GRACE": str(grace)}
    daemon = Daemon(scratch, state, env).login()
    tag = "d" if grace is None else "z"
    try:
        ours, finished, accepted, steps, base = [], [], [], [], []
        for i in range(ROUNDS + 1):  # round 0 warms both up
            r_running, r_finished, r_accepted, r_steps = install_round(daemon, client, f"bench-{tag}{i}")
            r_base = baseline_round(client, f"pdbench-{run_id}-{tag}{i}", run_id)
            if i:
                ours.append(r_running)
                finished.append(r_finished)
                accepted.append(r_accepted)
                steps.append(r_steps)
                base.append(r_base)
    finally:
        code = daemon.stop()
    if code != 0:
        print(f"(the grace={grace} daemon exited {code} after SIGTERM)")
    return {"ours": ours, "finished": finished, "accepted": accepted, "steps": steps, "base": base}


# 2. restore at start


def restore_case(scratch, state, client, node_label: str, names, prepare) -> dict:
    """``prepare(container)`` for each of the chutes' containers, then a daemon start, timed."""
    for ct in client.containers.list(all=True, filters={"label": node_label}):
        prepare(ct)
    if running_count(client, node_label):
        raise RuntimeError("containers still running before the daemon start")
    daemon = Daemon(scratch, state, {})
    try:
        running = wait_all_running(client, node_label, len(names), daemon.t0, daemon.proc)
        daemon.login()
        recent = daemon.http.get(daemon.url + "/api/v1/changes?limit=10", timeout=10).json()
        reconcile = next(ch for ch in recent if ch["type"] == "reconcile" and ch["created"] >= daemon.wall0)
        change = daemon.wait_change(reconcile["id"])
    finally:
        code = daemon.stop()
    if code != 0:
        print(f"(a restore daemon exited {code} after SIGTERM)")
    messages = change["messages"]
    steps = [m for m in messages if m["message"].startswith("step ")]
    return {"running": running, "finished": change["finished"] - daemon.wall0,
            "queued": change["created"] - daemon.wall0, "steps": len(steps), "result": change["result"]["message"],
            "first_step": (steps[0]["time"] - daemon.wall0) if steps else None,
            "kinds": step_kinds(change)}


def baseline_restore(client, node_label: str, count: int, workers: int = 1) -> float:
    """The chutes' containers stopped, then started with the SDK: in a loop, or from ``workers`` threads."""
    containers = client.containers.list(all=True, filters={"label": node_label})
    for ct in containers:
        ct.stop(timeout=0)

    def start_all():
        if workers == 1:
            for ct in containers:
                ct.start()
        else:
            with ThreadPoolExecutor(workers) as pool:
                list(pool.map(lambda ct: ct.start(), containers))
    return polled(start_all, lambda t0: wait_all_running(client, node_label, count, t0))


def baseline_recreate(client, run_id: str, count: int) -> float:
    label = f"{LABEL_BENCH}={run_id}"

    def run_all():
        for i in range(count):
            client.containers.run(IMAGE, SLEEP, detach=True, name=f"pdbench-{run_id}-r{i}",
                                  labels={LABEL_BENCH: run_id})
    seconds = polled(run_all, lambda t0: wait_all_running(client, label, count, t0))
    for ct in client.containers.list(all=True, filters={"label": label}):
        ct.remove(force=True)
    return seconds


def bench_restore(scratch, state, client, node_label: str, run_id: str) -> dict:
    daemon = Daemon(scratch, state, {"PARADROP_READY_GRACE": "0"}).login()
    names = [f"restore-{i}" for i in range(N_CHUTES)]
    try:
        t0 = time.perf_counter()
        ids = [daemon.submit("POST", "/api/v1/chutes", install_body(name, SLEEP)) for name in names]
        for change_id in ids:
            daemon.wait_change(change_id, limit=120)
        installed = time.perf_counter() - t0
    finally:
        daemon.stop()
    left_running = running_count(client, node_label)
    stopped = restore_case(scratch, state, client, node_label, names, lambda ct: ct.stop(timeout=0))
    removed = restore_case(scratch, state, client, node_label, names, lambda ct: ct.remove(force=True))
    base = baseline_restore(client, node_label, N_CHUTES)
    parallel = baseline_restore(client, node_label, N_CHUTES, PARALLEL)
    recreate = baseline_recreate(client, run_id, N_CHUTES)
    return {"names": names, "installed": installed, "left_running": left_running, "stopped": stopped,
            "removed": removed, "base": base, "parallel": parallel, "recreate": recreate}


# clean-up


def delete_chutes(scratch, state):
    """Delete every installed chute through the API of a fresh daemon (whose reconcile restarts them first)."""
    daemon = Daemon(scratch, state, {"PARADROP_READY_GRACE": "0"}).login()
    try:
        chutes = daemon.http.get(daemon.url + "/api/v1/chutes", timeout=10).json()
        ids = [daemon.submit("DELETE", f"/api/v1/chutes/{ch['name']}") for ch in chutes]
        for change_id in ids:
            daemon.wait_change(change_id, limit=60)
    finally:
        daemon.stop()
    return len(chutes)


def sweep(client, labels) -> int:
    """Remove every container, then network and volume, carrying one of ``labels``; returns how many."""
    gone = 0
    for label in labels:
        for ct in client.containers.list(all=True, filters={"label": label}):
            ct.remove(force=True)
            gone += 1
        for net in client.networks.list(filters={"label": label}):
            net.remove()
            gone += 1
        for vol in client.volumes.list(filters={"label": label}):
            vol.remove(force=True)
            gone += 1
    return gone


# report


def med(values):
    return statistics.median(values)


def install_rows(label: str, r: dict, with_change: bool):
    ours, base = med(r["ours"]), med(r["base"])
    goal = RATIO_GOAL * base + SLACK_GOAL
    rows = [(f"install -> running, {label} (ms)", f"{ours * 1000:.0f}", f"{base * 1000:.0f}",
             f"{ours / base:.2f}", f"<= {goal * 1000:.0f} ms (1.2x+150)", ours <= goal)]
    if with_change:
        fin = med(r["finished"])
        rows.append((f"install -> change succeeded, {label} (ms)", f"{fin * 1000:.0f}", f"{base * 1000:.0f}",
                     f"{fin / base:.2f}", "-", None))
    return rows


def print_steps(results: dict):
    keys = list(results["steps"][0])
    print("  install steps, grace default, median of the rounds (ms): " + "; ".join(
        f"{k} {med([s.get(k, 0) for s in results['steps']]) * 1000:.0f}" for k in keys))


def main():
    client = docker.from_env(timeout=60)
    client.images.get(IMAGE)  # fails early when the image is missing
    run_id = uuid.uuid4().hex[:8]
    started = time.perf_counter()
    with c.Scratch("deploy") as scratch:
        state = scratch.dir / "state"
        node_label = None
        try:
            first = Daemon(scratch, state, {}).login()  # makes the state dir (and the node id)
            first.stop()
            node_label = f"{LABEL_NODE}={(state / 'node-id').read_text().strip()}"
            default = bench_install(scratch, state, client, None, run_id)
            zero = bench_install(scratch, state, client, 0, run_id)
            restore = bench_restore(scratch, state, client, node_label, run_id)
            deleted = delete_chutes(scratch, state)
        finally:
            try:  # whatever is left: a failure mid-way, Ctrl-C, SIGTERM
                labels = [f"{LABEL_BENCH}={run_id}"] + ([node_label] if node_label else [])
                left = sweep(client, labels)
                if left:
                    print(f"(clean-up removed {left} leftover Docker object(s))", file=sys.stderr)
            finally:
                client.close()
    total = time.perf_counter() - started

    print(f"image chute install ({IMAGE}, httpd), {ROUNDS} rounds after a warm-up, interleaved with the "
          f"baseline docker run -d; restore of {N_CHUTES} chutes (sleep 3600) at daemon start; took {total:.0f} s")
    for label, r in (("grace 1.0", default), ("grace 0", zero)):
        print(f"  {label}: ours to running (ms) " + ", ".join(f"{x * 1000:.0f}" for x in r["ours"])
              + "; change finished (ms) " + ", ".join(f"{x * 1000:.0f}" for x in r["finished"])
              + "; baseline (ms) " + ", ".join(f"{x * 1000:.0f}" for x in r["base"])
              + f"; 202 answer median {med(r['accepted']) * 1000:.0f} ms")
    print_steps(default)
    st, rm = restore["stopped"], restore["removed"]
    print(f"  restore: {N_CHUTES} installs (grace 0) took {restore['installed']:.1f} s; "
          f"{restore['left_running']} of {N_CHUTES} containers still running after the daemon's SIGTERM; "
          f"{deleted} chutes deleted through the API at the end")
    for label, r in (("stopped", st), ("removed", rm)):
        first = f"{r['first_step']:.2f}" if r["first_step"] is not None else "-"
        kinds = ", ".join(f"{n} x {kind} {secs / n * 1000:.0f} ms each" for kind, (n, secs) in r["kinds"].items())
        print(f"  restore, containers {label}: reconcile queued at {r['queued']:.2f} s, first step at {first} s, "
              f"{r['steps']} steps ({kinds}); \"{r['result']}\"")
    print(f"  SDK baselines: the {N_CHUTES} stopped containers started from {PARALLEL} threads "
          f"{restore['parallel']:.2f} s; {N_CHUTES} x containers.run (create + start, default network) "
          f"{restore['recreate']:.2f} s")

    base, parallel = restore["base"], restore["parallel"]
    c.table("deploy: image chute install and restore at start", install_rows("grace 1.0", default, True)
            + install_rows("grace 0", zero, True) + [
        (f"restore {N_CHUTES}, stopped -> running (s)", f"{st['running']:.2f}", f"{base:.2f}",
         f"{st['running'] / base:.2f}", f"< {RESTORE_GOAL:.0f} s", st["running"] < RESTORE_GOAL),
        (f"restore {N_CHUTES}, stopped -> reconcile done (s)", f"{st['finished']:.2f}", f"{base:.2f}",
         f"{st['finished'] / base:.2f}", "-", None),
        (f"restore {N_CHUTES}, removed -> running (s)", f"{rm['running']:.2f}", f"{base:.2f}",
         f"{rm['running'] / base:.2f}", f"< {RESTORE_GOAL:.0f} s", rm["running"] < RESTORE_GOAL),
        (f"restore {N_CHUTES}, removed -> reconcile done (s)", f"{rm['finished']:.2f}", f"{base:.2f}",
         f"{rm['finished'] / base:.2f}", "-", None),
        (f"baseline: {N_CHUTES} SDK starts, {PARALLEL} threads (s)", "-", f"{parallel:.2f}", "-",
         f"< {RESTORE_GOAL:.0f} s", None),
    ])


if __name__ == "__main__":
    main()
