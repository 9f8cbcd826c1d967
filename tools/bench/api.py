"""API throughput: ``GET /api/v1/chutes`` with a token, against a bare twisted.web resource answering the same bytes.

Goal: ours >= 0.70x the baseline's requests per second, and our p99 latency under 10 ms.

Ours: the node daemon on a fresh state dir (no chutes), one login, then wrk with the Bearer token. Baseline: a plain
twisted.web resource in a bare python that answers every request with the status, headers and body our daemon gave
for that GET. Both run one at a time, alternating (``RUNS`` each), with the same wrk settings: 50 connections, one
wrk thread (the machine has few cores: the server under test gets the rest). Every answer must be a 200. The
server's CPU time per request is shown too (its ratio is bare/ours, like the throughput's): on a machine shared
with other work it varies less than requests per second do.

wrk comes from Debian (``apt-get install wrk``); the benchmark says so and stops when it is missing.
"""
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import psutil  # noqa: E402
import requests  # noqa: E402

import _common as c  # noqa: E402

RUNS = 3
SECONDS = 5
CONNECTIONS = 50
GOAL_RATIO = 0.70
GOAL_P99_MS = 10.0
PATH = "/api/v1/chutes"

# argv: port, file holding {"headers": [[name, value], ...], "body": text}. Any path, any method: the same answer.
SAME_BYTES_SERVER = r"""
import json, sys
from twisted.internet import reactor
from twisted.web import resource, server

port, answer = int(sys.argv[1]), json.load(open(sys.argv[2]))
headers = [(k.encode(), v.encode()) for k, v in answer["headers"]]
body = answer["body"].encode()

class Same(resource.Resource):
    isLeaf = True

    def render(self, request):
        for name, value in headers:
            request.setHeader(name, value)
        return body

reactor.listenTCP(port, server.Site(Same()), interface="127.0.0.1")
reactor.run()
"""

# Headers twisted.web writes itself, or that describe the transfer rather than the answer.
_OWN_HEADERS = {"date", "server", "content-length", "connection", "transfer-encoding"}


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def wrk(url: str, headers: dict, server_pid: int) -> dict:
    """Requests per second, p99 latency (ms) and the server's CPU time per request (us) of one wrk run; fails on
    any non-2xx answer or socket error."""
    args = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    cpu = cpu_seconds(server_pid)
    out = subprocess.run(args + [url], capture_output=True, text=True, check=True, timeout=SECONDS + 30).stdout
    cpu = cpu_seconds(server_pid) - cpu
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures against {url}:\n{out}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    count = int(re.search(r"(\d+) requests in", out).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return {"rate": rate, "p99": float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], "cpu": cpu / count * 1e6}


def our_answer(port: int, token: str) -> dict:
    response = requests.get(f"http://127.0.0.1:{port}{PATH}", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
    response.raise_for_status()
    return {"headers": [[k, v] for k, v in response.headers.items() if k.lower() not in _OWN_HEADERS],
            "body": response.text}


def main():
    if shutil.which("wrk") is None:
        sys.exit("api.py needs wrk: apt-get install wrk")
    with c.Scratch("api") as scratch:
        port = c.free_port()
        daemon = scratch.spawn_daemon(scratch.dir / "state", port)
        c.wait_healthy(daemon, port, time.perf_counter())
        login = requests.post(f"http://127.0.0.1:{port}/api/v1/auth/local", timeout=30,
                              json={"username": "paradrop", "password": c.PASSWORD})
        login.raise_for_status()
        token = login.json()["token"]
        answer_file = scratch.dir / "answer.json"
        answer_file.write_text(json.dumps(our_answer(port, token)))
        base_port = c.free_port()
        baseline = scratch.spawn([c.PYTHON, "-c", SAME_BYTES_SERVER, str(base_port), str(answer_file)],
                                 "baseline.log")
        c.wait_healthy(baseline, base_port, time.perf_counter())

        auth = {"Authorization": f"Bearer {token}"}
        wrk(f"http://127.0.0.1:{port}{PATH}", auth, daemon.pid)  # warm-up of both, not counted
        wrk(f"http://127.0.0.1:{base_port}{PATH}", auth, baseline.pid)
        ours, base = [], []
        for _ in range(RUNS):  # alternating, so drift in the machine's load hits both alike
            ours.append(wrk(f"http://127.0.0.1:{port}{PATH}", auth, daemon.pid))
            base.append(wrk(f"http://127.0.0.1:{base_port}{PATH}", auth, baseline.pid))

    rate, base_rate = (statistics.median(r["rate"] for r in runs) for runs in (ours, base))
    p99, base_p99 = (statistics.median(r["p99"] for r in runs) for runs in (ours, base))
    cpu, base_cpu = (statistics.median(r["cpu"] for r in runs) for runs in (ours, base))
    print(f"GET {PATH} with a Bearer token, {CONNECTIONS} connections, {RUNS} alternating runs of {SECONDS} s "
          f"(medians); per run ours/baseline req/s: "
          + ", ".join(f"{o['rate']:.0f}/{b['rate']:.0f}" for o, b in zip(ours, base)))
    c.table("api: authenticated GET against bare twisted.web", [
        ("requests/s", f"{rate:.0f}", f"{base_rate:.0f}", f"{rate / base_rate:.2f}", f">= {GOAL_RATIO:.2f}x",
         rate >= GOAL_RATIO * base_rate),
        ("p99 latency (ms)", f"{p99:.1f}", f"{base_p99:.1f}", f"{p99 / base_p99:.2f}", f"< {GOAL_P99_MS:.0f} ms",
         p99 < GOAL_P99_MS),
        ("server CPU per request (us)", f"{cpu:.0f}", f"{base_cpu:.0f}", f"{base_cpu / cpu:.2f}", "-", None),
    ])


if __name__ == "__main__":
    main()
