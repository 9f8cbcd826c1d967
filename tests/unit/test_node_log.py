"""The node's log ring: recent lines first then live, bounded followers, lines from threads handed over to the
reactor, credentials redacted, and no loop when a follower logs."""
import pytest
from twisted.logger import Logger, LogPublisher

from pdserver.monitor.logs import TooManyFollowers
from pdserver.monitor.node_log import NodeLog, redact


def publisher_with(node_log):
    publisher = LogPublisher(node_log)
    return Logger(namespace="pdserver.test", observer=publisher)


def test_a_follower_gets_the_kept_lines_then_live_ones_and_the_ring_is_bounded():
    node_log = NodeLog(size=3, in_io_thread=lambda: True)
    log = publisher_with(node_log)
    for n in range(5):
        log.info("line {n}", n=n)
    got = []
    stop = node_log.follow(got.append, call_from_thread=None)
    log.warn("live {what}", what="one")
    assert [line["text"] for line in got] == ["line 2", "line 3", "line 4", "live one"]
    assert got[-1]["level"] == "warn" and got[-1]["namespace"] == "pdserver.test"
    stop()
    log.info("after")
    assert len(got) == 4


def test_followers_are_capped_and_a_leaving_one_frees_its_place():
    node_log = NodeLog(max_followers=2, in_io_thread=lambda: True)
    stops = [node_log.follow(lambda line: None, None) for _ in range(2)]
    with pytest.raises(TooManyFollowers):
        node_log.check()
    with pytest.raises(TooManyFollowers):
        node_log.follow(lambda line: None, None)
    stops[0]()
    node_log.check()


def test_lines_logged_on_another_thread_reach_followers_through_the_reactor():
    node_log = NodeLog(in_io_thread=lambda: False)
    scheduled, got = [], []
    node_log.follow(got.append, lambda f, *args: scheduled.append((f, args)))
    publisher_with(node_log).info("from a thread")
    assert got == [] and len(scheduled) == 1
    f, args = scheduled[0]
    f(*args)
    assert got[0]["text"] == "from a thread"


def test_credentials_never_reach_a_follower_and_a_follower_that_logs_makes_no_loop():
    node_log = NodeLog(in_io_thread=lambda: True)
    log = publisher_with(node_log)
    got = []

    def noisy(line):
        got.append(line)
        log.info("sent {text}", text=line["text"])
    node_log.follow(noisy, None)
    log.info("Authorization: Bearer abc.def-123 from {who}", who="x")
    log.info("login with password={p} and token: {t}", p="hunter2", t="s3cr3t")
    texts = [line["text"] for line in got]
    assert texts == ["Authorization: Bearer [redacted] from x", "login with password=[redacted] and token: [redacted]"]
    assert not any("hunter2" in t or "s3cr3t" in t or "abc.def" in t for t in texts)
    assert redact('{"token": "zzz", "ok": 1}') == '{"token": "[redacted]", "ok": 1}'
