"""The controller's node list at fleet size: one page of GET /api/v1/nodes among 10,000 nodes.

Goal (issue 12): a page answers in < 100 ms. ``pdserver controller`` runs (embedded router) on a temp state dir;
the bench creates ``--nodes`` nodes through the HTTP API, then writes into the controller's database what a
reported state looks like (half of them online, three chutes each: what fleet.py's simulated nodes would have
sent over WAMP, without 10,000 sessions). Then, ``--reps`` requests each, one at a time on a keep-alive
connection: the first page, a page deep in the list (after the cursor of node 9,000), the online filter's first
page. Beside each, the baseline: the same page's SQL run by sqlite3 in this process on the same database file,
rows turned into the same JSON (the floor the HTTP API, tokens and the pool add to).
"""
import argparse
import json
import os
import sqlite3
import statistics
import sys
import time

_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import requests  # noqa: E402

import _common as c  # noqa: E402
from fleet import PASSWORD, Api, check_alive, spawn_controller  # noqa: E402

NODES = 10000
REPS = 50
PAGE = 100
GOAL_MS = 100.0
CHUTES = json.dumps([{"name": f"chute{i}", "version": "3", "state": "running"} for i in range(3)])
SQL = ("SELECT n.*, m.role FROM nodes n JOIN node_members m ON m.node_id = n.id WHERE m.username = ?{where} "
       "ORDER BY n.name, n.id LIMIT ?")


def wait_api(api: Api, controller, limit: float = 90.0):
    deadline = time.perf_counter() + limit
    while time.perf_counter() < deadline:
        check_alive({"the controller": controller})
        try:
            requests.get(api.base + "/api/v1/health", timeout=1.0)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError(f"the controller's API did not answer within {limit:.0f} s")


def make_fleet(api: Api, count: int, db_path: str):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: api.call("POST", "/api/v1/nodes", {"name": f"node-{i:05d}"}, expect=(201,)),
                      range(count)))
    with sqlite3.connect(db_path, timeout=30) as conn:
        conn.execute("UPDATE nodes SET chutes = ?, version = '0.1.0', last_seen = 1.0, "
                     "online = (CAST(substr(name, 6) AS INTEGER) % 2 = 0)", (CHUTES,))


def timed(function, reps: int) -> list:
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        function()
        out.append((time.perf_counter() - start) * 1000)
    return out


def baseline(db_path: str, where: str, args: tuple):
    conn = sqlite3.connect(db_path)
    conn.row_factory = sqlite3.Row

    def page():
        rows = conn.execute(SQL.format(where=where), ("admin", *args, PAGE + 1)).fetchall()
        return json.dumps([{**dict(r), "chutes": json.loads(r["chutes"])} for r in rows[:PAGE]])
    return page


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=NODES)
    parser.add_argument("--reps", type=int, default=REPS)
    args = parser.parse_args()
    with c.Scratch("node-list") as scratch:
        port, wamp_port = c.free_port(), c.free_port()
        state = str(scratch.dir / "controller")
        controller = spawn_controller(scratch, state, port, wamp_port)
        api = Api(port)
        wait_api(api, controller)
        api.token = api.call("POST", "/api/v1/auth/login", {"username": "admin", "password": PASSWORD})["token"]
        start = time.perf_counter()
        make_fleet(api, args.nodes, os.path.join(state, "controller.db"))
        made = time.perf_counter() - start
        deep = min(9000, args.nodes - 1)
        cursor_name = f"node-{deep:05d}"
        with sqlite3.connect(os.path.join(state, "controller.db")) as conn:
            cursor_id = conn.execute("SELECT id FROM nodes WHERE name = ?", (cursor_name,)).fetchone()[0]
        from pdserver.controller.nodes import encode_cursor
        cases = [
            ("first page", f"limit={PAGE}", "", ()),
            (f"page after node {deep:,}", f"limit={PAGE}&after={encode_cursor(cursor_name, cursor_id)}",
             " AND (n.name > ? OR (n.name = ? AND n.id > ?))", (cursor_name, cursor_name, cursor_id)),
            ("online, first page", f"limit={PAGE}&online=true", " AND n.online = ?", (True,)),
        ]
        rows = []
        for name, query, where, sql_args in cases:
            def ours():
                assert len(api.call("GET", f"/api/v1/nodes?{query}")) == PAGE
            floor = baseline(os.path.join(state, "controller.db"), where, sql_args)
            ours(), floor()  # warm both
            mine, base = timed(ours, args.reps), timed(floor, args.reps)
            rows.append((name, mine, base))
    print(f"node list: {args.nodes:,} nodes (made in {made:.1f} s), pages of {PAGE}, {args.reps} requests each")
    print(f"{'':28}{'API p50':>10}{'p99':>9}{'sqlite p50':>12}{'p99':>9}{'ratio':>8}   goal < {GOAL_MS:.0f} ms")
    for name, mine, base in rows:
        p50, p99 = statistics.median(mine), sorted(mine)[int(len(mine) * 0.99) - 1]
        b50, b99 = statistics.median(base), sorted(base)[int(len(base) * 0.99) - 1]
        ok = p99 < GOAL_MS
        print(f"{name:28}{p50:>8.1f}ms{p99:>7.1f}ms{b50:>10.1f}ms{b99:>7.1f}ms{p50 / b50:>7.1f}x   "
              f"{'PASS' if ok else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
