"""Chute service CPU and memory: read from this machine's cgroups, shared within the interval, fractions from
successive readings of one process."""
from twisted.internet import defer, task

from pdserver.monitor.chutes import ChuteMonitor
from pdserver.monitor.usage import ServiceUsage, thd_read, thd_read_all
from tests.unit.test_monitor_events import NAMES, World


def test_a_reading_finds_the_process_cgroup_under_v1_and_v2(tmp_path):
    proc, root = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "7").mkdir(parents=True)
    (proc / "7" / "cgroup").write_text("4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n")
    (root / "cpuacct" / "docker" / "abc").mkdir(parents=True)
    (root / "cpuacct" / "docker" / "abc" / "cpuacct.usage").write_text("2500000000\n")
    (root / "memory" / "docker" / "abc").mkdir(parents=True)
    (root / "memory" / "docker" / "abc" / "memory.usage_in_bytes").write_text("9000\n")
    (root / "memory" / "docker" / "abc" / "memory.stat").write_text("cache 5\ntotal_inactive_file 1000\n")
    assert thd_read(7, root, proc) == (2.5, 8000)

    (proc / "8").mkdir()
    (proc / "8" / "cgroup").write_text("0::/system.slice/docker-def.scope\n")
    group = root / "system.slice" / "docker-def.scope"
    group.mkdir(parents=True)
    (group / "cpu.stat").write_text("usage_usec 1500000\nuser_usec 1000000\n")
    (group / "memory.current").write_text("4096\n")
    (group / "memory.stat").write_text("anon 100\ninactive_file 96\n")
    assert thd_read(8, root, proc) == (1.5, 4000)
    assert thd_read(9, root, proc) is None  # the process is gone
    (group / "memory.current").unlink()
    assert thd_read(8, root, proc) is None  # so is its cgroup


class Thread:
    def __init__(self):
        self.calls = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.calls.append((f, args, d))
        return d


def test_readers_within_the_interval_share_one_read_and_the_fraction_comes_from_two_readings():
    clock, thread = task.Clock(), Thread()
    values = {"a": (10.0, 1000), "b": (1.0, 2000)}
    usage = ServiceUsage(thread, clock, max_age=5.0,
                         read_all=lambda pids: thd_read_all(pids, read=lambda pid: values[pid]))
    first, second = usage.of({"a-c": "a", "b-c": "b"}), usage.of({"a-c": "a"})
    assert len(thread.calls) == 1 and thread.calls[0][1] == ({"a-c": "a", "b-c": "b"},)
    f, args, d = thread.calls.pop()
    d.callback(f(*args))
    assert first.result["a-c"] == {"cpu_seconds": 10.0, "cpu_fraction": None, "memory_bytes": 1000, "time": 0.0}
    assert second.result == {"a-c": first.result["a-c"]}
    clock.advance(4)
    assert usage.of({"a-c": "a"}).result["a-c"]["cpu_seconds"] == 10.0 and not thread.calls
    clock.advance(2)
    values["a"] = (13.0, 1500)
    third = usage.of({"a-c": "a"})
    f, args, d = thread.calls.pop()
    d.callback(f(*args))
    assert third.result["a-c"] == {"cpu_seconds": 13.0, "cpu_fraction": 0.5, "memory_bytes": 1500, "time": 6.0}


def test_a_new_process_in_a_container_or_a_failed_read_gives_no_fraction_and_no_stale_value():
    clock, thread = task.Clock(), Thread()
    usage = ServiceUsage(thread, clock, max_age=5.0, read_all=lambda pids: {n: (5.0, 10) for n in pids})
    usage.of({"c": 1})
    f, args, d = thread.calls.pop()
    d.callback(f(*args))
    clock.advance(1)
    restarted = usage.of({"c": 2})  # a restart: another pid, read again at once
    f, args, d = thread.calls.pop()
    d.callback(f(*args))
    assert restarted.result["c"]["cpu_fraction"] is None
    clock.advance(6)
    failed = usage.of({"c": 2})
    thread.calls.pop()[2].errback(OSError("no /proc"))
    assert failed.result == {"c": None}


def test_a_chute_monitor_reads_the_usage_of_running_services_only_and_in_one_read_for_all_chutes():
    world, asked = World(), []

    def read_all(pids):
        asked.append(dict(pids))
        return {name: (1.5, 4096) for name in pids}
    usage = ServiceUsage(lambda f, *args: defer.maybeDeferred(f, *args), world.clock, read_all=read_all)
    monitor = ChuteMonitor(world.engine, NAMES, world.clock, world.events, world.deaths, usage)
    web, web_container = world.install("web")
    db, db_container = world.install("db")
    world.memory.stop_container(db_container)
    assert monitor.usage([web, db]).result == {"web": {"main": {"cpu_seconds": 1.5, "cpu_fraction": None,
                                                                "memory_bytes": 4096, "time": 0.0}}}
    assert list(asked) == [{web_container: world.engine.inspect_container(web_container).result.pid}]
    services = {s["name"]: s for s in monitor.services(web).result}
    assert services["main"]["usage"]["memory_bytes"] == 4096 and len(asked) == 1  # the same read, kept
    assert monitor.services(db).result[0]["usage"] is None
