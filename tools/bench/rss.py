"""Idle memory of the node daemon, warmed up, against a bare python holding the same libraries.

Goal: idle RSS of the daemon <= 1.25x the baseline's.

Ours: the daemon on a fresh state dir; once healthy it gets one login and 20 authenticated GETs
(/api/v1/info/software and /api/v1/changes alternating), then idles 1 s before RSS is read. Then 200 more
such GETs and another reading, to show whether requests leave memory behind.

Baseline: a bare python that imports exactly the library modules the daemon's code loads (all of sys.modules
after importing pdserver.main/node/logs and the reactor, pdserver's own modules excepted), serves a plain
twisted.web resource and gets the same number of GETs at the same times. So the ratio is what pdserver's own
code and data add on top of the libraries it cannot avoid.
"""
import os
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import psutil  # noqa: E402
import requests  # noqa: E402

import _common as c  # noqa: E402

WARM_REQUESTS = 20
MORE_REQUESTS = 200
GOAL_RATIO = 1.25
GROWTH_LIMIT_MB = 1.0  # our own threshold for "no growth" over MORE_REQUESTS requests
MB = 1024 * 1024


def rss_mb(proc) -> float:
    return psutil.Process(proc.pid).memory_info().rss / MB


def hit(session, port, paths, count, headers=None):
    for i in range(count):
        response = session.get(f"http://127.0.0.1:{port}{paths[i % len(paths)]}", headers=headers, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"GET {paths[i % len(paths)]} answered {response.status_code}")


def main():
    with c.Scratch("rss") as scratch, requests.Session() as session:
        modules = c.library_modules()

        port = c.free_port()
        daemon = scratch.spawn_daemon(scratch.dir / "state", port)
        c.wait_healthy(daemon, port, time.perf_counter())
        login = session.post(f"http://127.0.0.1:{port}/api/v1/auth/local", timeout=30,
                             json={"username": "paradrop", "password": c.PASSWORD})
        login.raise_for_status()
        auth = {"Authorization": f"Bearer {login.json()['token']}"}
        api_paths = ["/api/v1/info/software", "/api/v1/changes"]
        hit(session, port, api_paths, WARM_REQUESTS, auth)

        base_port = c.free_port()
        baseline = scratch.spawn_baseline(modules, base_port)
        c.wait_healthy(baseline, base_port, time.perf_counter())
        hit(session, base_port, ["/api/v1/health"], WARM_REQUESTS + 1)

        time.sleep(1.0)
        ours, base = rss_mb(daemon), rss_mb(baseline)
        hit(session, port, api_paths, MORE_REQUESTS, auth)
        hit(session, base_port, ["/api/v1/health"], MORE_REQUESTS)
        time.sleep(1.0)
        ours_after, base_after = rss_mb(daemon), rss_mb(baseline)

    print(f"idle RSS after a login and {WARM_REQUESTS} GETs; baseline imports {len(modules)} library modules "
          f"({', '.join(c.third_party(modules))})")
    c.table("rss: idle resident memory (MB)", [
        ("idle RSS (MB)", f"{ours:.1f}", f"{base:.1f}", f"{ours / base:.2f}", f"<= {GOAL_RATIO}x",
         ours <= GOAL_RATIO * base),
        (f"RSS after {MORE_REQUESTS} more GETs (MB)", f"{ours_after:.1f}", f"{base_after:.1f}",
         f"{ours_after / base_after:.2f}", f"<= {GOAL_RATIO}x", ours_after <= GOAL_RATIO * base_after),
        (f"growth over {MORE_REQUESTS} GETs (MB)", f"{ours_after - ours:+.2f}", f"{base_after - base:+.2f}", "-",
         f"< {GROWTH_LIMIT_MB:.0f} MB", ours_after - ours < GROWTH_LIMIT_MB),
    ])


if __name__ == "__main__":
    main()
