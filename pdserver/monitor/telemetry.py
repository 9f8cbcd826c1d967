"""Node telemetry: CPU, memory, disk, load, uptime and per-interface counters, read with psutil.

psutil reads /proc and statfs: cheap, but file system calls, so a sample is taken on a thread (``thd_sample``).
Readers within ``max_age`` seconds of a sample share it, and readers while one is under way wait for that one:
a page polling it and a dozen status streams cost one sample per ``max_age``.
"""
import time
from typing import List, Optional

from twisted.internet import defer
from twisted.python.failure import Failure


def thd_sample(disk_path: str = "/") -> dict:
    """One reading of the node; CPU is the share since the previous call (the first call reads 0.0)."""
    import psutil  # about 1 MB resident: imported by the first reading, not by an idle node
    memory, disk = psutil.virtual_memory(), psutil.disk_usage(disk_path)
    load = psutil.getloadavg()
    return {
        "time": time.time(),
        "uptime": round(time.time() - psutil.boot_time(), 1),
        "cpu": {"percent": psutil.cpu_percent(interval=None), "count": psutil.cpu_count()},
        "load": {"1m": load[0], "5m": load[1], "15m": load[2]},
        "memory": {"total": memory.total, "available": memory.available, "used": memory.total - memory.available,
                   "percent": memory.percent},
        "disk": {"path": disk_path, "total": disk.total, "used": disk.used, "free": disk.free,
                 "percent": disk.percent},
        "interfaces": {name: {"bytes_sent": c.bytes_sent, "bytes_recv": c.bytes_recv, "packets_sent": c.packets_sent,
                              "packets_recv": c.packets_recv, "errin": c.errin, "errout": c.errout,
                              "dropin": c.dropin, "dropout": c.dropout}
                       for name, c in sorted(psutil.net_io_counters(pernic=True).items())},
    }


class Telemetry:
    """``run_in_thread(f, *args)`` -> Deferred; ``clock`` has ``seconds()``."""

    def __init__(self, run_in_thread, clock, max_age: float = 1.0, sample=thd_sample):
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._max_age = max_age
        self._sample = sample
        self._last: Optional[dict] = None
        self._taken = 0.0
        self._waiters: Optional[List[defer.Deferred]] = None

    def current(self) -> defer.Deferred:
        """The node's telemetry, at most ``max_age`` seconds old."""
        if self._last is not None and self._clock.seconds() - self._taken < self._max_age:
            return defer.succeed(self._last)
        waiter = defer.Deferred()
        if self._waiters is not None:
            self._waiters.append(waiter)
            return waiter
        self._waiters = [waiter]

        def answer(result):
            waiters, self._waiters = self._waiters, None
            if not isinstance(result, Failure):
                self._last, self._taken = result, self._clock.seconds()
            for each in waiters:
                each.errback(result) if isinstance(result, Failure) else each.callback(result)
        self._run_in_thread(self._sample).addBoth(answer)
        return waiter
