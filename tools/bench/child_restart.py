"""Restart time of a supervised child: kill -9 of a real dnsmasq -> it answers DNS again, 20 times.

Goal: under 1 s median, under 2 s worst.

Ours: the Supervisor on the real reactor runs dnsmasq as a DNS server on 127.0.0.1 (a free port, one local
record, no upstream, no DHCP). Before each kill the child has run ``stable_after`` (1 s here instead of the
node's 60 s), so every kill meets the first backoff step (0.5 s +-10 %), as a long-running dnsmasq dying on a
router would. The clock runs from the SIGKILL to the first DNS answer of the new process (queries every 5 ms);
the time to the supervisor's "started" event is shown too.

Baseline: the same dnsmasq spawned directly with reactor.spawnProcess, timed from the spawn to its first DNS
answer: what any restart costs at least. The difference is the supervisor's own part (its backoff, mostly).
"""
import os
import shutil
import signal
import statistics
import struct
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module: move the directory
# from the front of sys.path (where running a script puts it) to the end before importing anything that uses queue.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != _HERE] + [_HERE]

from twisted.internet import defer, protocol, task  # noqa: E402

import _common as c  # noqa: E402

KILLS = 20
STABLE_AFTER = 1.0
GOAL_MEDIAN, GOAL_WORST = 1.0, 2.0
NAME = b"bench.test"
QUERY = struct.pack("!HHHHHH", 0x5044, 0x0100, 1, 0, 0, 0) + b"".join(
    bytes([len(label)]) + label for label in NAME.split(b".")) + b"\0" + struct.pack("!HH", 1, 1)


def dnsmasq_argv(port):
    return ("dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--listen-address=127.0.0.1", f"--port={port}", "--pid-file",
            f"--address=/{NAME.decode()}/127.0.0.2")


class _Prober(protocol.DatagramProtocol):
    """Asks 127.0.0.1:port for bench.test every 5 ms until an answer comes."""

    def __init__(self, reactor, port):
        self.reactor, self.port = reactor, port
        self.answered = None
        self._loop = None

    def probe(self) -> defer.Deferred:
        self.answered = defer.Deferred()
        self._loop = task.LoopingCall(self.transport.write, QUERY, ("127.0.0.1", self.port))
        self._loop.clock = self.reactor
        self._loop.start(0.005)
        return self.answered

    def datagramReceived(self, data, addr):
        ok = len(data) >= 12 and data[:2] == QUERY[:2] and struct.unpack("!H", data[6:8])[0] >= 1
        if ok and self.answered is not None and not self.answered.called:
            self._loop.stop()
            self.answered.callback(time.perf_counter())


class _Bare(protocol.ProcessProtocol):
    def __init__(self):
        self.ended = defer.Deferred()

    def processEnded(self, reason):
        self.ended.callback(None)


async def until(reactor, predicate, limit=10.0):
    deadline = time.perf_counter() + limit
    while not predicate():
        if time.perf_counter() > deadline:
            raise RuntimeError(f"no progress within {limit} s")
        await task.deferLater(reactor, 0.005, lambda: None)


async def time_baseline(reactor, prober, argv):
    bare = _Bare()
    t0 = time.perf_counter()
    process = reactor.spawnProcess(bare, shutil.which(argv[0]), list(argv), env={"PATH": os.environ["PATH"]})
    try:
        answered = await prober.probe()
    finally:
        process.signalProcess("KILL")
        await bare.ended
    return answered - t0


async def time_kills(reactor, prober, argv, pid_dir, started_at):
    from pdserver.sysconfig.supervisor import ChildSpec, Supervisor

    sup = Supervisor(reactor, pid_dir, stable_after=STABLE_AFTER,
                     on_event=lambda name, event, details: event == "started" and started_at.append(
                         time.perf_counter()))
    await sup.startService()
    try:
        await sup.ensure(ChildSpec("dnsmasq", argv))
        to_dns, to_start = [], []
        for _ in range(KILLS):
            await until(reactor, lambda: sup.children()["dnsmasq"].restarts == 0)
            await prober.probe()
            pid = sup.children()["dnsmasq"].pid
            starts = len(started_at)
            t0 = time.perf_counter()
            os.kill(pid, signal.SIGKILL)
            await until(reactor, lambda: len(started_at) > starts)
            answered = await prober.probe()
            to_start.append(started_at[-1] - t0)
            to_dns.append(answered - t0)
        return to_dns, to_start
    finally:
        await sup.stopService()


async def bench(reactor, scratch_dir):
    port = c.free_port()
    argv = dnsmasq_argv(port)
    prober = _Prober(reactor, port)
    listener = reactor.listenUDP(0, prober, interface="127.0.0.1")
    try:
        base = [await time_baseline(reactor, prober, argv) for _ in range(KILLS)]
        ours, to_start = await time_kills(reactor, prober, argv, scratch_dir / "pids", [])
    finally:
        await listener.stopListening()

    med, base_med = statistics.median(ours), statistics.median(base)
    print(f"{KILLS} kill -9 of a supervised dnsmasq (DNS on 127.0.0.1:{port}), each after a stable run of "
          f"{STABLE_AFTER:.0f} s; baseline: the same dnsmasq spawned directly, {KILLS} times; kill -> started "
          f"event median {statistics.median(to_start):.3f} s, max {max(to_start):.3f} s")
    c.table("child restart: kill -9 -> DNS answers again", [
        ("median restart (s)", f"{med:.3f}", f"{base_med:.3f}", f"{med / base_med:.1f}", f"< {GOAL_MEDIAN:.0f} s",
         med < GOAL_MEDIAN),
        ("worst restart (s)", f"{max(ours):.3f}", f"{max(base):.3f}", f"{max(ours) / max(base):.1f}",
         f"< {GOAL_WORST:.0f} s", max(ours) < GOAL_WORST),
        ("supervisor's part, median (s)", f"{med - base_med:.3f}", "-", "-", "-", None),
    ])


def main():
    with c.Scratch("child-restart") as scratch:
        task.react(lambda reactor, d: defer.ensureDeferred(bench(reactor, d)), (scratch.dir,))


if __name__ == "__main__":
    main()
