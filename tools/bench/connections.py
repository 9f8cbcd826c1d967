"""Idle-socket flood: with 20,000 idle connections held open against the daemon, do health and login answer?

Goal: both answer 200 while the flood is held, from a fresh address and from a flooding one, and the daemon keeps
its descriptors below its limit.

The daemon runs with its default limits (per address, total from its descriptor limit less a reserve) except the
deadline of a request head, set to an hour here: so only the connection limits and the shedding of idle
connections protect it, not the 408 that would otherwise close these sockets after a few seconds. Two floods, one
after the other: 20,000 sockets from one loopback address, then 20,000 spread over 400 loopback addresses. The
table shows, per flood: sockets the daemon closed, its open descriptors (of its limit) while flooded, and the time
of one health GET and one login POST made while the flood is held (a bare twisted.web has no such limits: it runs
out of descriptors, so there is no baseline column).
"""
import http.client
import json
import multiprocessing
import os
import selectors
import socket
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

import _common as c  # noqa: E402

SOCKETS = 20_000
SPREAD = 400  # addresses of the second flood
PER_CHILD = 5_000  # sockets one flooding child holds (a process has fewer descriptors than the flood needs)


def flood(port: int, sources, replies) -> None:
    """Child process: connect from each of ``sources``, report, then answer "closed?" and "close" commands."""
    socks = []
    for source in sources:
        sock = socket.socket()
        sock.bind((source, 0))
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            sock.close()
            continue
        socks.append(sock)
    replies.send(len(socks))
    while True:
        command = replies.recv()
        if command == "closed?":
            replies.send(closed_count(socks))
        else:
            break
    for sock in socks:
        sock.close()
    replies.send("done")


class Flood:
    """Sockets held open by child processes, PER_CHILD each."""

    def __init__(self, port: int, sources):
        self._children = []
        for start in range(0, len(sources), PER_CHILD):
            ours, theirs = multiprocessing.Pipe()
            child = multiprocessing.Process(target=flood, args=(port, sources[start:start + PER_CHILD], theirs),
                                            daemon=True)
            child.start()
            self._children.append((child, ours))
        self.opened = sum(pipe.recv() for _, pipe in self._children)

    def closed(self) -> int:
        for _, pipe in self._children:
            pipe.send("closed?")
        return sum(pipe.recv() for _, pipe in self._children)

    def release(self) -> None:
        for child, pipe in self._children:
            pipe.send("close")
            pipe.recv()
            child.join(30)


def closed_count(socks) -> int:
    """How many of ``socks`` the server has closed (EOF or reset), without waiting."""
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    closed = 0
    for key, _ in selector.select(timeout=0.5):
        try:
            closed += key.fileobj.recv(4096, socket.MSG_PEEK) == b""
        except ConnectionResetError:
            closed += 1
    selector.close()
    return closed


def timed(port: int, method: str, path: str, source: str, body=None) -> tuple:
    """(status, milliseconds) of one request on a fresh connection from ``source``."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source, 0))
    try:
        conn.request(method, path, body=json.dumps(body) if body else None,
                     headers={"Content-Type": "application/json"})
        status = conn.getresponse().status
    except OSError as e:
        return f"error {e.__class__.__name__}", (time.perf_counter() - t0) * 1e3
    finally:
        conn.close()
    return status, (time.perf_counter() - t0) * 1e3


def daemon_fds(pid: int) -> tuple:
    with open(f"/proc/{pid}/limits") as limits:
        soft = next(line for line in limits if line.startswith("Max open files")).split()[3]
    return len(os.listdir(f"/proc/{pid}/fd")), soft


def run_flood(port: int, pid: int, name: str, sources, fresh: str) -> list:
    t0 = time.perf_counter()
    held = Flood(port, sources)
    opened_s = time.perf_counter() - t0
    time.sleep(1.0)  # let the daemon accept the tail of the flood
    try:
        health = timed(port, "GET", "/api/v1/health", fresh)
        health_flooder = timed(port, "GET", "/api/v1/health", sources[0])
        login = timed(port, "POST", "/api/v1/auth/local", fresh, {"username": "paradrop", "password": c.PASSWORD})
        fds, limit = daemon_fds(pid)
        closed = held.closed()
    finally:
        held.release()
    print(f"{name}: {held.opened} sockets connected in {opened_s:.1f} s; the daemon closed {closed} of them")
    return [
        (f"{name}: daemon descriptors (limit)", f"{fds} ({limit})", "-", "-", "< limit", fds < int(limit)),
        (f"{name}: GET health, fresh address", f"{health[0]} in {health[1]:.0f} ms", "-", "-", "200",
         health[0] == 200),
        (f"{name}: GET health, flooding address", f"{health_flooder[0]} in {health_flooder[1]:.0f} ms", "-", "-",
         "200", health_flooder[0] == 200),
        (f"{name}: POST login, fresh address", f"{login[0]} in {login[1]:.0f} ms", "-", "-", "200",
         login[0] == 200),
    ]


def wait_closed(pid: int, below: int, limit: float = 60.0) -> None:
    deadline = time.perf_counter() + limit
    while daemon_fds(pid)[0] > below and time.perf_counter() < deadline:
        time.sleep(0.2)


def main():
    with c.Scratch("connections") as scratch:
        port = c.free_port()
        config = scratch.dir / "settings.yaml"
        config.write_text("header_timeout: 3600\n")
        proc = scratch.spawn([c.PYTHON, "-m", "pdserver.main", "node", "--state-dir", str(scratch.dir / "state"),
                              "--port", str(port), "--config", str(config)], "daemon.log")
        c.wait_healthy(proc, port, time.perf_counter())
        idle_fds = daemon_fds(proc.pid)[0]
        rows = run_flood(port, proc.pid, "one address", ["127.0.0.2"] * SOCKETS, "127.0.0.1")
        wait_closed(proc.pid, idle_fds + 16)
        spread = [f"127.0.{2 + i // 250}.{1 + i % 250}" for i in range(SPREAD)]
        rows += run_flood(port, proc.pid, f"{SPREAD} addresses", [spread[i % SPREAD] for i in range(SOCKETS)],
                          "127.0.0.1")
    c.table(f"connections: {SOCKETS} idle sockets held against the daemon", rows)


if __name__ == "__main__":
    main()
