"""Image chute install, API call -> serving, against ``docker run -d`` of the same image polled the same way.

Goal: ours <= 1.1 x baseline + 50 ms (median of ROUNDS rounds after a warm-up, rounds interleaved).

"Serving" is the first HTTP 200 from the chute's web server, polled as DESIGN.md section 9 says: a second
thread inspects the container every 5 ms until its status is "running" (the start call has returned), reads
its address on its own network, then GETs http://<address>:8000/ every 5 ms (never through a published port
during start-up: a connection through docker-proxy before the veth is up loses its first ARP lookup for 1 s).

Ours: POST /api/v1/chutes of paradrop/busybox running ``httpd`` on port 8000 (SERVE) (the daemon runs with
PARADROP_READY_GRACE=0; the grace only delays the change's end, not serving), clock from just before the POST.
Baseline: ``client.containers.run(image, command, detach=True)`` (create + start, default bridge network), clock
from just before the call. Both are removed after each round (ours through the API). Below the table, the
median time of each step of our install change, from the change's messages (a step lasts until the next one;
steps the node runs together, the network and the volume, are shown as one).

For scale, two rows without verdict: the same ``docker run -d`` on a network of its own made just before (create
network + run, clock from before the network): what the node's per-chute network costs in Docker itself (making
the bridge, and a slower start on a user-defined network, with its embedded DNS and rules); and the run on a
network made before the clock: the floor a pool of networks made ahead of installs could reach (the network
would then be named and labelled apart from its chute; see issue 7's notes).
"""
import os
import re
import statistics
import sys
import time
import uuid

# This directory holds a queue.py, which must not shadow the standard library's queue module (see deploy.py).
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import docker  # noqa: E402
import requests  # noqa: E402

import _common as c  # noqa: E402
import deploy as d  # noqa: E402

ROUNDS = 7
RATIO_GOAL, SLACK_GOAL = 1.1, 0.050
PORT = 8000
# busybox httpd serving a one-line page (``httpd -h /`` has no index page: it answers 404)
SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo ok > /tmp/www/index.html && exec httpd -f -p 8000 -h /tmp/www"]


def address(client, name: str):
    """The container's address on its (only) network once it runs, else None."""
    try:
        info = client.api.inspect_container(name)
    except docker.errors.NotFound:
        return None
    if info["State"]["Status"] != "running":
        return None
    return next((n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n["IPAddress"]), None)


def wait_serving(client, http, name: str, t0: float, limit: float = 30.0) -> float:
    """Seconds from ``t0`` until the container's web server answers 200 on its own address."""
    ip = None
    while time.perf_counter() - t0 < limit:
        if ip is None:
            ip = address(client, name)
        else:
            try:
                if http.get(f"http://{ip}:{PORT}/", timeout=0.5).status_code == 200:
                    return time.perf_counter() - t0
            except requests.RequestException:
                pass
        time.sleep(0.005)
    raise RuntimeError(f"{name} not serving within {limit:.0f} s")


def ours_round(daemon, client, http, name: str):
    t0 = time.perf_counter()
    change_id = daemon.submit("POST", "/api/v1/chutes", d.install_body(name, SERVE))
    serving = wait_serving(client, http, daemon.container(name, "main", change_id), t0)
    change = daemon.wait_change(change_id)
    daemon.wait_change(daemon.submit("DELETE", f"/api/v1/chutes/{name}"))
    return serving, batched_step_times(change, name)


def baseline_round(client, http, name: str, run_id: str) -> float:
    try:
        return d.polled(lambda: client.containers.run(d.IMAGE, SERVE, detach=True, name=name,
                                                      labels={d.LABEL_BENCH: run_id}),
                        lambda t0: wait_serving(client, http, name, t0))
    finally:
        client.api.remove_container(name, force=True)


def own_network_round(client, http, name: str, run_id: str, made_before: bool = False) -> float:
    """``docker run -d`` on a network of its own: made inside the clock, or before it with ``made_before``."""
    def make():
        client.api.create_network(name, driver="bridge", labels={d.LABEL_BENCH: run_id})

    def run():
        if not made_before:
            make()
        client.containers.run(d.IMAGE, SERVE, detach=True, name=name, network=name, labels={d.LABEL_BENCH: run_id})

    if made_before:
        make()
    try:
        return d.polled(run, lambda t0: wait_serving(client, http, name, t0))
    finally:
        try:
            client.api.remove_container(name, force=True)
        finally:
            client.api.remove_network(name)


def batched_step_times(change: dict, chute: str) -> dict:
    """{step description: seconds}; steps begun within 2 ms of each other ran together and count as one, from
    the first one's start to the message after the last."""
    marks = [(m["time"], re.match(r"step \d+/\d+: (.*)", m["message"])) for m in change["messages"]]
    out, group, start = {}, [], None
    for (t, match), (after, _) in zip(marks, marks[1:]):
        if match is None:
            continue
        group.append(match.group(1).replace(chute, "<chute>"))
        start = t if start is None else start
        if after - t >= 0.002:
            out[" + ".join(group)] = after - start
            group, start = [], None
    return out


def spread(values) -> str:
    return f"{min(values) * 1000:.0f}-{max(values) * 1000:.0f}"


def main():
    client = docker.from_env(timeout=60)
    client.images.get(d.IMAGE)
    run_id = uuid.uuid4().hex[:8]
    ours, base, own_net, premade, steps = [], [], [], [], []
    with c.Scratch("install") as scratch, requests.Session() as http:
        state = scratch.dir / "state"
        node_label = None
        daemon = d.Daemon(scratch, state, {"PARADROP_READY_GRACE": "0"}).login()
        try:
            node_label = f"{d.LABEL_NODE}={(state / 'node-id').read_text().strip()}"
            for i in range(ROUNDS + 1):  # round 0 warms both up
                serving, step = ours_round(daemon, client, http, f"bench-i{i}")
                b = baseline_round(client, http, f"pdbench-{run_id}-i{i}", run_id)
                n = own_network_round(client, http, f"pdbench-{run_id}-n{i}", run_id)
                p = own_network_round(client, http, f"pdbench-{run_id}-p{i}", run_id, made_before=True)
                if i:
                    ours.append(serving)
                    steps.append(step)
                    base.append(b)
                    own_net.append(n)
                    premade.append(p)
        finally:
            daemon.stop()
            try:
                d.sweep(client, [f"{d.LABEL_BENCH}={run_id}"] + ([node_label] if node_label else []))
            finally:
                client.close()
    o, b, n = statistics.median(ours), statistics.median(base), statistics.median(own_net)
    p = statistics.median(premade)
    goal = RATIO_GOAL * b + SLACK_GOAL
    print(f"image chute install -> first HTTP 200 on its own address, {ROUNDS} rounds after a warm-up, "
          f"interleaved with docker run -d; ours {spread(ours)} ms, baseline {spread(base)} ms (min-max)")
    print("  install steps, median of the rounds (ms): " + "; ".join(
        f"{k} {statistics.median([s.get(k, 0) for s in steps]) * 1000:.0f}" for k in steps[0]))
    c.table("install: image chute, API call -> serving", [
        ("install -> serving (ms)", f"{o * 1000:.0f}", f"{b * 1000:.0f}", f"{o / b:.2f}",
         f"<= {goal * 1000:.0f} ms (1.1x+50)", o <= goal),
        ("difference (ms)", f"{(o - b) * 1000:+.0f}", "-", "-", "-", None),
        ("docker, network + run on it (ms)", "-", f"{n * 1000:.0f} ({spread(own_net)})", f"{o / n:.2f}", "-", None),
        ("docker, run on a network made before (ms)", "-", f"{p * 1000:.0f} ({spread(premade)})", f"{o / p:.2f}",
         "-", None),
    ])


if __name__ == "__main__":
    main()
