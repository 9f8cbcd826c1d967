"""The LogHub's bookkeeping on the reactor thread, with follows the test opens and ends itself: one reader
per container, stopped with its last listener (also before it opened), and listeners capped."""
import pytest
from twisted.internet import defer, task

from pdserver.monitor.logs import LogHub, TooManyFollowers


class Follower:
    def __init__(self, on_line):
        self.on_line = on_line
        self.done = defer.Deferred()
        self.stopped = False

    def stop(self):
        self.stopped = True
        if not self.done.called:
            self.done.callback(None)
        return defer.succeed(None)


class Follows:
    """follow_logs of an engine whose streams open when the test says."""

    def __init__(self):
        self.opening = []

    def follow_logs(self, name, on_line, tail=0, timestamps=False):
        d = defer.Deferred()
        self.opening.append((name, d, Follower(on_line)))
        return d

    def open(self, index=-1):
        name, d, follower = self.opening[index]
        d.callback(follower)
        return follower


@pytest.fixture
def follows():
    return Follows()


@pytest.fixture
def hub(follows):
    return LogHub(follows, task.Clock(), per_chute=3, per_token=2, backlog=2)


def listen(hub, token="t1", chute="c"):
    got = []
    return hub.join(chute, token, [("main", "c-main-1")], lambda *frame: got.append(frame)), got


def test_a_listener_gone_before_the_reader_opened_stops_it_when_it_opens(hub, follows):
    listener, _ = listen(hub)
    hub.leave(listener)
    assert hub.readers == 0
    assert follows.open().stopped


def test_listeners_share_one_reader_and_a_late_one_gets_the_kept_lines_first(hub, follows):
    first, got_first = listen(hub)
    follower = follows.open()
    for n in (1, 2, 3):
        follower.on_line(f"2026-01-01T00:00:0{n}Z tick{n}")
    second, got_second = listen(hub, token="t2")
    follower.on_line("2026-01-01T00:00:04Z tick4")
    assert len(follows.opening) == 1
    assert [text for _, _, text in got_first] == ["tick1", "tick2", "tick3", "tick4"]
    assert [text for _, _, text in got_second] == ["tick2", "tick3", "tick4"]  # the backlog is 2 lines
    hub.leave(first)
    assert not follower.stopped
    hub.leave(second)
    hub.leave(second)
    assert follower.stopped and hub.readers == 0


def test_caps_per_token_and_per_chute(hub, follows):
    listen(hub, "t1"), listen(hub, "t1")
    with pytest.raises(TooManyFollowers) as over:
        listen(hub, "t1")
    assert (over.value.status, over.value.field) == (429, "token")
    listen(hub, "t2")
    with pytest.raises(TooManyFollowers) as over:
        listen(hub, "t3")
    assert over.value.field == "chute"
    listen(hub, "t3", chute="other")


def test_a_listener_that_fails_is_dropped_and_the_others_keep_theirs(hub, follows):
    def broken(*frame):
        raise ConnectionError("gone")
    hub.join("c", "t1", [("main", "c-main-1")], broken)
    good, got = listen(hub, "t2")
    follower = follows.open()
    follower.on_line("x one")
    follower.on_line("x two")
    assert [text for _, _, text in got] == ["x one", "x two"]
    hub.leave(good)
    assert follower.stopped
