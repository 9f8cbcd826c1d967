"""Run every benchmark in sequence (``make bench``) and list how long each took.

Each benchmark runs as its own process with a time limit; its table goes straight to stdout. The exit status is
non-zero only when a benchmark could not run to the end, never because a goal was missed: these are
measurements, not tests.
"""
import os
import signal
import subprocess
import sys
import time

BENCHMARKS = ["startup.py", "rss.py", "api.py", "connections.py", "queue.py", "deploy.py", "install.py", "update.py",
              "child_restart.py", "chute_network.py", "monitor.py", "fleet.py", "node_list.py"]
LIMIT = 120.0  # seconds per benchmark
# exceptions: deploy.py drives the Docker engine (about 1.5 min when idle); monitor.py reads the daemon's CPU for
# 2 x 60 s with 20 chutes installed; fleet.py runs 1,000 simulated nodes on a controller (about 1 min on 2 busy cores)
LIMITS = {"deploy.py": 240.0, "monitor.py": 300.0, "fleet.py": 300.0}


def _raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def run(path: str):
    limit = LIMITS.get(os.path.basename(path), LIMIT)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, path])
    try:
        code = proc.wait(limit)
    except subprocess.TimeoutExpired:
        print(f"{os.path.basename(path)}: over {limit:.0f} s, stopping it", flush=True)
        code = "timeout"
    except KeyboardInterrupt:  # a terminal's Ctrl-C reached the benchmark too: give it time to clean up
        proc.wait(15)
        raise
    finally:
        if proc.poll() is None:
            proc.terminate()  # its SIGTERM handler stops its children and removes its temp dir
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return time.perf_counter() - started, code


def main():
    signal.signal(signal.SIGTERM, _raise_on_sigterm)
    here = os.path.dirname(os.path.realpath(__file__))
    results = []
    for name in BENCHMARKS:
        print(f"\n=== {name}", flush=True)
        results.append((name, *run(os.path.join(here, name))))
    print("\n=== summary")
    for name, seconds, code in results:
        print(f"{name:<12} {seconds:6.1f} s  exit {code}")
    sys.exit(0 if all(code == 0 for _, _, code in results) else 1)


if __name__ == "__main__":
    main()
