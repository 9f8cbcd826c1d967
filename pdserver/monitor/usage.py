"""CPU and memory of chute containers, read from the kernel's cgroup counters.

Docker's stats call is the obvious source, but one-shot stats of several containers at once each wait up to a
second for the engine's collector, holding the adapter's threads; Docker itself reads these same counters. A
container is found by its main process (``/proc/<pid>/cgroup``), under cgroup v1 (cpuacct, memory controllers)
or v2 (the unified hierarchy). A few small file reads per container, on a thread, at most once per ``max_age``.
"""
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _stat(path: Path) -> Dict[str, int]:
    pairs = (line.split() for line in path.read_text().splitlines())
    return {pair[0]: int(pair[1]) for pair in pairs if len(pair) == 2}


def _under(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def thd_read(pid: int, root: Path = CGROUP_ROOT, proc: Path = Path("/proc")) -> Optional[Tuple[float, int]]:
    """(CPU seconds used, memory bytes in use less the inactive file cache, as ``docker stats`` counts it) of the
    cgroup of process ``pid``; None when the process or its cgroup is gone."""
    try:
        controllers, unified = {}, None
        for line in (proc / str(pid) / "cgroup").read_text().splitlines():
            _, names, path = line.split(":", 2)
            if not names:
                unified = path
            for name in names.split(","):
                controllers[name] = path
        if "cpuacct" in controllers and "memory" in controllers:
            cpu = int(_under(root / "cpuacct", controllers["cpuacct"]).joinpath("cpuacct.usage").read_text()) / 1e9
            memory = _under(root / "memory", controllers["memory"])
            used = int((memory / "memory.usage_in_bytes").read_text())
            inactive = _stat(memory / "memory.stat").get("total_inactive_file", 0)
        elif unified is not None:
            group = _under(root, unified)
            cpu = _stat(group / "cpu.stat")["usage_usec"] / 1e6
            used = int((group / "memory.current").read_text())
            inactive = _stat(group / "memory.stat").get("inactive_file", 0)
        else:
            return None
    except (OSError, ValueError, KeyError):
        return None
    return cpu, max(used - inactive, 0)


def thd_read_all(pids: Dict[str, int], read=thd_read) -> Dict[str, Optional[Tuple[float, int]]]:
    return {name: read(pid) for name, pid in pids.items()}


class ServiceUsage:
    """``of({container: pid})`` -> {container: {"cpu_seconds", "cpu_fraction", "memory_bytes", "time"} or None}.

    A container's reading is kept ``max_age`` seconds (the telemetry interval): a scrape, a describe and the
    status stream within it share one read. ``cpu_fraction`` is the share of one core since the previous reading
    of the same process (None on the first). ``run_in_thread(f, *args)`` -> Deferred; ``clock`` has ``seconds()``.
    """

    def __init__(self, run_in_thread, clock, max_age: float = 5.0, read_all=thd_read_all):
        self._run_in_thread = run_in_thread
        self._clock = clock
        self._max_age = max_age
        self._read_all = read_all
        self._kept: Dict[str, Tuple[int, Optional[dict]]] = {}  # container -> (pid, reading)
        self._pending: Dict[str, List[defer.Deferred]] = {}

    def _fresh(self, name: str, pid: int) -> bool:
        kept = self._kept.get(name)
        return kept is not None and kept[0] == pid and kept[1] is not None \
            and self._clock.seconds() - kept[1]["time"] < self._max_age

    @defer.inlineCallbacks
    def of(self, pids: Dict[str, int]):
        waiting = {}
        stale = {}
        for name, pid in pids.items():
            if self._fresh(name, pid):
                continue
            waiter = defer.Deferred()
            waiting[name] = waiter
            if name in self._pending:
                self._pending[name].append(waiter)
            else:
                self._pending[name] = [waiter]
                stale[name] = pid
        if stale:
            self._run_in_thread(self._read_all, stale).addBoth(self._landed, stale)
        for waiter in waiting.values():
            yield waiter
        return {name: self._kept[name][1] if name in self._kept and self._kept[name][0] == pid else None
                for name, pid in pids.items()}

    def _landed(self, result, asked: Dict[str, int]) -> None:
        if isinstance(result, Failure):
            log.failure("cannot read the chute services' CPU and memory", result)
        now = self._clock.seconds()
        for name, pid in asked.items():
            reading = None if isinstance(result, Failure) else result.get(name)
            self._kept[name] = (pid, self._reading(name, pid, reading, now))
        for name in [n for n, (_, r) in self._kept.items() if r is None or now - r["time"] > 3 * self._max_age]:
            if name not in asked:
                del self._kept[name]
        for name in asked:
            for waiter in self._pending.pop(name, []):
                waiter.callback(None)

    def _reading(self, name: str, pid: int, reading, now: float) -> Optional[dict]:
        if reading is None:
            return None
        cpu, memory = reading
        before = self._kept.get(name)
        fraction = None
        if before is not None and before[0] == pid and before[1] is not None and now > before[1]["time"] \
                and cpu >= before[1]["cpu_seconds"]:
            fraction = round((cpu - before[1]["cpu_seconds"]) / (now - before[1]["time"]), 4)
        return {"cpu_seconds": cpu, "cpu_fraction": fraction, "memory_bytes": memory, "time": now}
