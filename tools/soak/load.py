"""Phase 2, the client side: N concurrent API clients on one Twisted reactor (treq, one persistent connection
each), doing authenticated GETs back to back for S seconds. Run as a child process by run.py, so that its CPU
use can be told apart from the daemon's and the reactor starts once:

    python tools/soak/load.py SPEC.json OUT.json

SPEC: {"url", "token", "clients", "seconds", "think", "paths": [[path, [accepted statuses]], ...]}. Client i
starts at paths[i % len] and walks the list round-robin. OUT: counts per path, every latency (ms), the errors
(first examples of each), the reactor's own lag (how late a 50 ms timer fired: a late timer means the client,
not the server, is slow) and this process's CPU seconds.
"""
import json
import resource
import sys
import time


def main(spec_path: str, out_path: str) -> None:
    from twisted.internet import defer, reactor, task
    from twisted.web.client import Agent, HTTPConnectionPool

    from treq.client import HTTPClient

    spec = json.load(open(spec_path))
    clients, seconds, think = spec["clients"], spec["seconds"], spec.get("think", 0.0)
    paths = [(p.encode(), set(ok)) for p, ok in spec["paths"]]
    url = spec["url"].encode()
    headers = {b"Authorization": [b"Bearer " + spec["token"].encode()]}

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = clients
    pool.cachedConnectionTimeout = seconds + 60
    http = HTTPClient(Agent(reactor, pool=pool, connectTimeout=10))

    latencies = []  # ms of every answered request
    per_path = {p.decode(): {"requests": 0, "errors": 0, "statuses": {}} for p, _ in paths}
    errors = {}
    lag = []
    started = {}

    def error(kind: str, path: bytes, detail: str):
        per_path[path.decode()]["errors"] += 1
        bucket = errors.setdefault(f"{kind} {path.decode()}", {"count": 0, "examples": []})
        bucket["count"] += 1
        if len(bucket["examples"]) < 3:
            bucket["examples"].append(detail[:300])

    async def client(i: int, deadline: float):
        k = i
        while time.monotonic() < deadline:
            path, ok = paths[k % len(paths)]
            k += 1
            t0 = time.perf_counter()
            try:
                response = await http.get(url + path, headers=headers, timeout=10)
                body = await response.content()
            except Exception as e:  # connection refused or reset, timeout: all errors of the load
                error("connection", path, f"{type(e).__name__}: {e}")
                continue
            latencies.append((time.perf_counter() - t0) * 1000)
            stats = per_path[path.decode()]
            stats["requests"] += 1
            stats["statuses"][str(response.code)] = stats["statuses"].get(str(response.code), 0) + 1
            if response.code not in ok:
                error(f"status {response.code}", path, body.decode("utf-8", "replace"))
            if think:
                await task.deferLater(reactor, think, lambda: None)

    def tick():
        now = time.monotonic()
        if "last" in started:
            lag.append((now - started["last"] - 0.05) * 1000)
        started["last"] = now

    async def run_all():
        ticker = task.LoopingCall(tick)
        ticker.start(0.05)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.monotonic()
        deadline = t0 + seconds
        await defer.gatherResults([defer.ensureDeferred(client(i, deadline)) for i in range(clients)])
        wall = time.monotonic() - t0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        ticker.stop()
        await pool.closeCachedConnections()
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        json.dump({"wall": wall, "cpu": cpu, "latencies": [round(x, 3) for x in latencies], "per_path": per_path,
                   "errors": errors, "lag": [round(x, 2) for x in lag]}, open(out_path, "w"))

    def done(result):
        if reactor.running:
            reactor.stop()
        return result

    outcome = {"code": 0}

    def failed(failure):
        failure.printTraceback()
        outcome["code"] = 2
        done(None)

    reactor.callWhenRunning(lambda: defer.ensureDeferred(run_all()).addCallbacks(done, failed))
    reactor.run()
    sys.exit(outcome["code"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
