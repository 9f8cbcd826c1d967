"""Updating a web chute while it is used: failed requests, and the gap when old and new share a host port.

What "requests to a web chute" go through: the node has no web proxy of its own (pdserver/api has no route to a
chute's server), so a user reaches a chute's web server through the host port it publishes (docker-proxy on
127.0.0.1, iptables DNAT elsewhere) or on its own address on the chute's network (from the host or another
chute). Both are polled here.

A web chute (paradrop/busybox running busybox httpd on port 8000, serving a page that names its version)
publishes host port P1. While two pollers GET it every 20 ms (one through the published port on 127.0.0.1, one
through the container's own address, each request with a 1 s timeout), it is updated to a new version:

(a) no shared host port: the new version publishes P2. The node starts the new container beside the old one,
    waits until it is ready (its web port answers), records it (the commit: GET /api/v1/chutes/<name> shows the
    new version), keeps the old one serving for the drain time (PARADROP_UPDATE_DRAIN, default 1 s), then stops
    and removes it. The contract for a user: keep using the address you know until the API shows the new
    version, then use the new version's address. The pollers do exactly that (the switch is watched with a GET
    of the chute every 10 ms). A request fails when it gets no HTTP 200 (refused, reset, timed out). Goal: 0.
(b) shared host port: the new version publishes P1 as well, so the old one must stop before the new one starts
    (the node creates the new container first, then stops the old one and starts the new). The gap is measured
    on the published port (the one address that stays the same): from the last answered request before the
    failures to the first answered one after, in ms. Most of it, on both sides, is one TCP retransmission: a
    connection docker-proxy opens to the new container before its veth is up loses its SYN, and the kernel
    resends it after 1 s (DESIGN.md section 9); the node's own part is printed below the table (from stopping
    the old to the new one started, from the change's messages).

Baselines, through plain docker, polled the same way: (a) ``docker run -d`` of the new container (P2), polled on
its own address until it answers (what a careful user does by hand), the pollers switch, then the old one is
removed; (b) removal of the old container, then ``docker run -d`` of the new one on P1.

Ours runs with the node's default settings (ready grace 1 s, drain 1 s). ROUNDS rounds of each; medians and
min-max.
"""
import os
import statistics
import sys
import threading
import time
import uuid

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import docker  # noqa: E402
import requests  # noqa: E402

import _common as c  # noqa: E402
import deploy as d  # noqa: E402

ROUNDS = 3
TICK = 0.020
AFTER = 1.0  # seconds of polling after the switch
SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo \"$VERSION\" > /tmp/www/index.html "
                     "&& exec httpd -f -p 8000 -h /tmp/www"]


class Poller(threading.Thread):
    """GETs ``self.url`` every TICK seconds; ``results`` holds (time, answered 200)."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.results = []
        self.done = threading.Event()

    def run(self):
        with requests.Session() as http:
            tick = time.perf_counter()
            while not self.done.is_set():
                try:
                    ok = http.get(self.url, timeout=1.0).status_code == 200
                except requests.RequestException:
                    ok = False
                self.results.append((time.perf_counter(), ok))
                tick += TICK
                time.sleep(max(0.0, tick - time.perf_counter()))

    def failed(self) -> int:
        return sum(1 for _, ok in self.results if not ok)

    def gap(self) -> float:
        """The longest time between two answered requests with only failures between them."""
        longest, last_ok, failing = 0.0, None, False
        for t, ok in self.results:
            if ok:
                if failing and last_ok is not None:
                    longest = max(longest, t - last_ok)
                last_ok, failing = t, False
            else:
                failing = True
        return longest


def ip_of(client, name: str) -> str:
    info = client.api.inspect_container(name)
    return next(n["IPAddress"] for n in info["NetworkSettings"]["Networks"].values() if n["IPAddress"])


def chute_body(name: str, version: int, port: int) -> dict:
    return {"config": {"name": name, "version": version, "web": {"service": "main", "port": 8000},
                       "environment": {"VERSION": str(version)},
                       "services": {"main": {"type": "image", "image": d.IMAGE, "command": SERVE,
                                             "requests": {"port-bindings": [{"external": port,
                                                                             "internal": 8000}]}}}}}


def during(old: dict, update) -> dict:
    """Polls ``old`` addresses ({"port": url, "ip": url}) while ``update()`` runs; it returns the new ones, to
    which the pollers switch, and a function that waits for the rest of the update."""
    pollers = {kind: Poller(url) for kind, url in old.items()}
    for p in pollers.values():
        p.start()
    time.sleep(0.2)
    new, finish = update()
    for kind, p in pollers.items():
        p.url = new[kind]
    finish()
    time.sleep(AFTER)
    for p in pollers.values():
        p.done.set()
        p.join()
    return {kind: (p.failed(), p.gap(), len(p.results)) for kind, p in pollers.items()}


def ours_round(daemon, client, name: str, shared: bool) -> dict:
    p1 = c.free_port()
    p2 = p1 if shared else c.free_port()
    first = daemon.submit("POST", "/api/v1/chutes", chute_body(name, 1, p1))
    daemon.wait_change(first)
    old = {"port": f"http://127.0.0.1:{p1}/",
           "ip": f"http://{ip_of(client, daemon.container(name, 'main', first))}:8000/"}

    def update():
        change = daemon.submit("PUT", f"/api/v1/chutes/{name}", chute_body(name, 2, p2))
        wait_version(daemon, name, 2, change)
        return ({"port": f"http://127.0.0.1:{p2}/",
                 "ip": f"http://{ip_of(client, daemon.container(name, 'main', change))}:8000/"},
                lambda: steps.update(gap_steps(daemon.wait_change(change))))
    steps = {}
    try:
        return {**during(old, update), "steps": steps}
    finally:
        daemon.wait_change(daemon.submit("DELETE", f"/api/v1/chutes/{name}"))


def wait_version(daemon, name: str, version: int, change: int, limit: float = 60.0) -> None:
    """Until GET /api/v1/chutes/<name> shows ``version`` (the update's commit), looked at every 10 ms."""
    deadline = time.perf_counter() + limit
    while daemon.http.get(f"{daemon.url}/api/v1/chutes/{name}", timeout=10).json()["version"] != str(version):
        if time.perf_counter() > deadline:
            raise RuntimeError(f"{name} not at version {version} after {limit:.0f} s: {daemon.change(change)}")
        time.sleep(0.01)


def gap_steps(change: dict) -> dict:
    """{"stop -> started": seconds} from the change's messages: from the step stopping the old service to the
    one after starting the new (present only when the old one stopped first)."""
    times = {}
    for m in change["messages"]:
        text = m["message"]
        if "step" in text and "stopping service main" in text:
            times.setdefault("stop", m["time"])
        elif "stop" in times and "step" in text and "start" not in times and "starting service main" in text:
            times["start"] = m["time"]
        elif "start" in times and "step" in text and "after" not in times:
            times["after"] = m["time"]
    return {"stop -> started": times["after"] - times["stop"]} if "after" in times else {}


def run_web(client, name: str, version: int, port: int, run_id: str) -> dict:
    client.containers.run(d.IMAGE, SERVE, detach=True, name=name, environment={"VERSION": str(version)},
                          ports={"8000/tcp": ("127.0.0.1", port)}, labels={d.LABEL_BENCH: run_id})
    return {"port": f"http://127.0.0.1:{port}/", "ip": f"http://{ip_of(client, name)}:8000/"}


def serving(url: str, limit: float = 10.0) -> None:
    """Until ``url`` answers 200, asked every 5 ms once the previous attempt failed."""
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        try:
            if requests.get(url, timeout=0.5).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.005)
    raise RuntimeError(f"{url} not serving within {limit:.0f} s")


def baseline_round(client, name: str, shared: bool, run_id: str) -> dict:
    p1 = c.free_port()
    p2 = p1 if shared else c.free_port()
    old = run_web(client, f"{name}-1", 1, p1, run_id)
    serving(old["ip"])  # before the pollers start, like our version 1

    def update():
        if shared:
            client.api.remove_container(f"{name}-1", force=True)
            return run_web(client, f"{name}-2", 2, p2, run_id), lambda: None
        new = run_web(client, f"{name}-2", 2, p2, run_id)
        serving(new["ip"])
        return new, lambda: client.api.remove_container(f"{name}-1", force=True)
    try:
        return during(old, update)
    finally:
        for suffix in ("-1", "-2"):
            try:
                client.api.remove_container(name + suffix, force=True)
            except docker.errors.NotFound:
                pass


def summary(rounds, kind: str, what: str) -> tuple:
    """(median as text, min-max as text) of failed counts (what="failed") or gaps in ms (what="gap")."""
    values = [r[kind][0] if what == "failed" else r[kind][1] * 1000 for r in rounds]
    return f"{statistics.median(values):.0f}", f"{min(values):.0f}-{max(values):.0f}"


def main():
    client = docker.from_env(timeout=60)
    client.images.get(d.IMAGE)
    run_id = uuid.uuid4().hex[:8]
    results = {(who, shared): [] for who in ("ours", "base") for shared in (False, True)}
    with c.Scratch("update") as scratch:
        state = scratch.dir / "state"
        node_label = None
        daemon = d.Daemon(scratch, state, {}).login()
        try:
            node_label = f"{d.LABEL_NODE}={(state / 'node-id').read_text().strip()}"
            for i in range(ROUNDS):
                for shared in (False, True):
                    tag = "s" if shared else "n"
                    results[("ours", shared)].append(ours_round(daemon, client, f"upd-{tag}{i}", shared))
                    results[("base", shared)].append(baseline_round(client, f"pdbench-{run_id}-{tag}{i}", shared,
                                                                    run_id))
        finally:
            daemon.stop()
            try:
                d.sweep(client, [f"{d.LABEL_BENCH}={run_id}"] + ([node_label] if node_label else []))
            finally:
                client.close()
    print(f"web chute updated while GET every {TICK * 1000:.0f} ms through its published port and its own "
          f"address; {ROUNDS} rounds; medians (min-max)")
    for key, rounds in results.items():
        print(f"  {key[0]}, {'shared' if key[1] else 'own'} port: " + "; ".join(
            f"{kind} failed {[r[kind][0] for r in rounds]} of {[r[kind][2] for r in rounds]}, "
            f"gap ms {[round(r[kind][1] * 1000) for r in rounds]}" for kind in ("port", "ip")))
    ours_gap = [r["steps"]["stop -> started"] * 1000 for r in results[("ours", True)] if r["steps"]]
    if ours_gap:
        print(f"  ours, shared port: the node from stopping the old service to the new one started (ms): "
              f"{[round(g) for g in ours_gap]}")
    rows = []
    for kind in ("port", "ip"):
        o, b = summary(results[("ours", False)], kind, "failed"), summary(results[("base", False)], kind, "failed")
        rows.append((f"(a) own port, failed requests via {kind}", f"{o[0]} ({o[1]})", f"{b[0]} ({b[1]})", "-",
                     "0", o[0] == "0"))
    o, b = summary(results[("ours", True)], "port", "gap"), summary(results[("base", True)], "port", "gap")
    rows.append(("(b) shared port, gap via port (ms)", f"{o[0]} ({o[1]})", f"{b[0]} ({b[1]})",
                 f"{float(o[0]) / max(float(b[0]), 1):.2f}", "-", None))
    c.table("update: requests to a web chute during an update", rows)


if __name__ == "__main__":
    main()
