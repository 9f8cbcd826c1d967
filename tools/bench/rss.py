"""Idle memory of the node daemon, warmed up, against a bare python holding the same libraries.

Goals: idle RSS of the daemon <= 1.25x the baseline's, and < 60 MB (issue 7; what an idle node does not use is
imported when first needed, see tests/unit/test_idle_imports.py).

Ours: the daemon on a fresh state dir; once healthy it gets one login and 20 authenticated GETs
(/api/v1/info/software and /api/v1/changes alternating), then idles 1 s before RSS is read. Then 200 more
such GETs and another reading, to show whether requests leave memory behind.

Baseline: a bare python that imports exactly the library modules the daemon's code loads (all of sys.modules
after importing pdserver.main/node/logs and the reactor, pdserver's own modules excepted), serves a plain
twisted.web resource and gets the same number of GETs at the same times. So the ratio is what pdserver's own
code and data add on top of the libraries it cannot avoid.

What is loaded at idle: the daemon runs under a small wrapper that writes its sys.modules to a file on SIGUSR1
(sent once the first reading is taken). For each top-level third-party package among them, a fresh python that
holds the standard-library modules the daemon loaded imports that package's loaded modules, and the RSS this
adds is printed, heaviest first. A package's dependencies count in its figure (so twisted's includes the
pyOpenSSL/cryptography its TLS support pulls in, and autobahn's includes twisted): the figures overlap and do not
add up to the total; each says what the node would save if nothing needed that package at idle.

Then, for the groups that stand between the node and the 60 MB goal, the exact saving: every module loaded at
idle imported in a fresh python with the group available and with it unavailable (a child-only import hook that
makes it look not installed: the node itself never hides modules), median of three pairs.
"""
import json
import os
import signal
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

WARM_REQUESTS = 20
MORE_REQUESTS = 200
GOAL_RATIO = 1.25
GOAL_MB = 60.0
GROWTH_LIMIT_MB = 1.0  # our own threshold for "no growth" over MORE_REQUESTS requests
MB = 1024 * 1024
HEAVIEST = 12  # packages listed

# Runs the daemon (argv: the file for the module list, then pdserver's own arguments); SIGUSR1 writes the list.
DAEMON_WRAPPER = r"""
import json, runpy, signal, sys
modules_file = sys.argv.pop(1)

def dump(signum, frame):
    with open(modules_file, "w") as f:
        json.dump(list(sys.modules), f)

signal.signal(signal.SIGUSR1, dump)
sys.argv[0] = "pdserver"
runpy.run_module("pdserver.main", run_name="__main__", alter_sys=True)
"""

# argv: the packages to refuse (JSON list), the modules to import (JSON list); prints the RSS (MB) once imported.
# A refused package is as if it were not installed (ModuleNotFoundError, which Twisted's reactor takes as "no
# TLS" and PyJWT as "HMAC only"): this measures what the node would weigh without it, in a child only.
WITHOUT = r"""
import importlib, importlib.abc, json, sys

class Refuse(importlib.abc.MetaPathFinder):
    def __init__(self, tops):
        self.tops = set(tops)

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.tops:
            raise ModuleNotFoundError(f"no module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse(json.loads(sys.argv[1])))
import psutil
for name in json.loads(sys.argv[2]):
    try:
        importlib.import_module(name)
    except Exception:
        pass
print(psutil.Process().memory_info().rss / 2 ** 20)
"""

# What an idle node would save without these packages (refused as above), and who imports them at idle.
WITHOUT_GROUPS = [
    ("the TLS stack: pyOpenSSL, service_identity, cryptography (the reactor imports them: twisted.internet."
     "posixbase -> twisted.internet.ssl, twisted.internet.tcp -> _newtls -> OpenSSL -> cryptography)",
     ["OpenSSL", "service_identity", "cryptography", "pyasn1", "pyasn1_modules"]),
    ("pyOpenSSL and service_identity only (cryptography stays: PyJWT's algorithms module imports it too)",
     ["OpenSSL", "service_identity"]),
    ("jsonschema, referencing, jsonschema_specifications, rpds (the first validated body: the login)",
     ["jsonschema", "referencing", "jsonschema_specifications", "rpds"]),
]

# argv: the standard-library modules, the package's modules (JSON lists); prints the RSS (MB) the latter add.
PACKAGE_COST = r"""
import importlib, json, sys
import psutil

def load(names):
    for name in names:
        try:
            importlib.import_module(name)
        except Exception:
            pass

load(json.loads(sys.argv[1]))
before = psutil.Process().memory_info().rss
load(json.loads(sys.argv[2]))
print((psutil.Process().memory_info().rss - before) / 2 ** 20)
"""


def rss_mb(proc) -> float:
    return psutil.Process(proc.pid).memory_info().rss / MB


def loaded_at_idle(scratch, daemon) -> list:
    """The daemon's sys.modules, asked for with SIGUSR1."""
    path = scratch.dir / "idle-modules.json"
    daemon.send_signal(signal.SIGUSR1)
    deadline = time.perf_counter() + 10
    while time.perf_counter() < deadline:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # not written yet, or half written
            time.sleep(0.05)
    raise RuntimeError("the daemon wrote no module list")


def package_costs(modules) -> list:
    """[(MB, package)] for each top-level third-party package among ``modules``, heaviest first."""
    by_top = {}
    for name in modules:
        by_top.setdefault(name.split(".")[0], []).append(name)
    stdlib = [m for m in modules if m.split(".")[0] in sys.stdlib_module_names]
    costs = []
    for top in c.third_party(modules):
        if top == "pdserver":
            continue
        out = subprocess.run([c.PYTHON, "-c", PACKAGE_COST, json.dumps(stdlib), json.dumps(by_top[top])],
                             capture_output=True, text=True, check=True, timeout=60, cwd=str(c.ROOT),
                             env=c.clean_env())
        costs.append((float(out.stdout), top))
    return sorted(costs, reverse=True)


def rss_without(modules, refused) -> float:
    """RSS (MB) of a fresh python importing ``modules`` with the ``refused`` packages unavailable."""
    out = subprocess.run([c.PYTHON, "-c", WITHOUT, json.dumps(refused), json.dumps(modules)], capture_output=True,
                         text=True, check=True, timeout=60, cwd=str(c.ROOT), env=c.clean_env())
    return float(out.stdout)


def savings(modules) -> list:
    """[(MB saved, what)] for each group of WITHOUT_GROUPS: all idle modules imported with and without it
    (median of three of each, alternating)."""
    rows = []
    for what, refused in WITHOUT_GROUPS:
        pairs = [(rss_without(modules, []), rss_without(modules, refused)) for _ in range(3)]
        rows.append((sorted(a - b for a, b in pairs)[1], what))
    return rows


def hit(session, port, paths, count, headers=None):
    for i in range(count):
        response = session.get(f"http://127.0.0.1:{port}{paths[i % len(paths)]}", headers=headers, timeout=10)
        if response.status_code != 200:
            raise RuntimeError(f"GET {paths[i % len(paths)]} answered {response.status_code}")


def main():
    with c.Scratch("rss") as scratch, requests.Session() as session:
        modules = c.library_modules()

        port = c.free_port()
        daemon = scratch.spawn([c.PYTHON, "-c", DAEMON_WRAPPER, str(scratch.dir / "idle-modules.json"), "node",
                                "--state-dir", str(scratch.dir / "state"), "--port", str(port)], "daemon.log")
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
        idle_modules = loaded_at_idle(scratch, daemon)
        hit(session, port, api_paths, MORE_REQUESTS, auth)
        hit(session, base_port, ["/api/v1/health"], MORE_REQUESTS)
        time.sleep(1.0)
        ours_after, base_after = rss_mb(daemon), rss_mb(baseline)

    costs = package_costs(idle_modules)
    saved = savings(idle_modules)
    print(f"loaded at idle: {len(idle_modules)} modules, {len(c.third_party(idle_modules)) - 1} third-party "
          f"packages; idle RSS {ours:.1f} MB. Heaviest packages (MB each adds, with its dependencies, to a python "
          f"holding the standard library): " + ", ".join(f"{top} {mb:.1f}" for mb, top in costs[:HEAVIEST]))
    print("what the idle node would weigh less without (its idle modules imported in a fresh python with and "
          "without the packages; not additive): " + "; ".join(f"{what}: {mb:.1f} MB" for mb, what in saved))
    print(f"idle RSS after a login and {WARM_REQUESTS} GETs; baseline imports {len(modules)} library modules "
          f"({', '.join(c.third_party(modules))})")
    c.table("rss: idle resident memory (MB)", [
        ("idle RSS (MB)", f"{ours:.1f}", f"{base:.1f}", f"{ours / base:.2f}", f"<= {GOAL_RATIO}x",
         ours <= GOAL_RATIO * base),
        ("idle RSS, absolute (MB)", f"{ours:.1f}", "-", "-", f"< {GOAL_MB:.0f} MB", ours < GOAL_MB),
        (f"RSS after {MORE_REQUESTS} more GETs (MB)", f"{ours_after:.1f}", f"{base_after:.1f}",
         f"{ours_after / base_after:.2f}", f"<= {GOAL_RATIO}x", ours_after <= GOAL_RATIO * base_after),
        (f"growth over {MORE_REQUESTS} GETs (MB)", f"{ours_after - ours:+.2f}", f"{base_after - base:+.2f}", "-",
         f"< {GROWTH_LIMIT_MB:.0f} MB", ours_after - ours < GROWTH_LIMIT_MB),
    ])


if __name__ == "__main__":
    main()
