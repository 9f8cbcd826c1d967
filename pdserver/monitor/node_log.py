"""The node's own recent log lines, kept in memory for ``/ws/paradrop_logs``.

A log observer (added next to the file and stdout observers, behind the same level filter) keeps the last
``size`` lines in a ring and hands each new one to a bounded set of followers: a follower first gets the ring,
then live lines. Log events come from any thread; followers are called on the reactor thread. Lines pass
through ``redact`` on the way in, so a credential that slipped into a message never reaches a socket. A line
logged while lines are being handed out (a socket's own debug output, say) is kept but not sent live: no loop.
"""
import collections
import re
import threading
from typing import Callable, Deque, Dict, List

from twisted.logger import ILogObserver, formatEvent
from twisted.python import threadable
from zope.interface import implementer

from pdserver.monitor.logs import TooManyFollowers

SIZE = 500
MAX_FOLLOWERS = 8

_SECRETS = re.compile(r"(?i)((?:bearer|basic)\s+|(?:token|password|secret|authorization)[\"']?\s*[=:]\s*[\"']?"
                      r"(?:(?:bearer|basic)\s+)?)[^\s\"',&;]+")

Line = Dict[str, object]  # {"time", "level", "namespace", "text"}


def redact(text: str) -> str:
    """``text`` with the value after "Bearer", "token=", "password: "... replaced."""
    return _SECRETS.sub(lambda m: m.group(1) + "[redacted]", text)


@implementer(ILogObserver)
class NodeLog:
    def __init__(self, size: int = SIZE, max_followers: int = MAX_FOLLOWERS, in_io_thread=threadable.isInIOThread):
        self._ring: Deque[Line] = collections.deque(maxlen=size)
        self._lock = threading.Lock()
        self._max_followers = max_followers
        self._in_io_thread = in_io_thread
        self._followers: List[tuple] = []  # (deliver, call_from_thread)
        self._delivering = False

    def __call__(self, event: dict) -> None:
        text = formatEvent(event)
        failure = event.get("log_failure")
        if failure is not None:
            text = f"{text}\n{failure.getTraceback()}".strip()
        level = event.get("log_level")
        line = {"time": event.get("log_time"), "level": level.name if level is not None else None,
                "namespace": event.get("log_namespace"), "text": redact(text)}
        with self._lock:
            self._ring.append(line)
            followers = list(self._followers)
        for deliver, call_from_thread in followers:
            if self._in_io_thread():
                self._deliver(deliver, line)
            else:
                call_from_thread(self._deliver, deliver, line)

    def _deliver(self, deliver: Callable[[Line], None], line: Line) -> None:
        if self._delivering:
            return
        self._delivering = True
        try:
            deliver(line)
        except Exception:
            pass  # a socket that fails is closed by its own protocol; logging here would loop
        finally:
            self._delivering = False

    def follow(self, deliver: Callable[[Line], None], call_from_thread) -> Callable[[], None]:
        """``deliver(line)`` for each kept line, then for each new one (on the reactor thread) until the returned
        function is called. TooManyFollowers over the cap."""
        with self._lock:
            self._check()
            follower = (deliver, call_from_thread)
            self._followers.append(follower)
            kept = list(self._ring)
        for line in kept:
            self._deliver(deliver, line)

        def stop():
            with self._lock:
                if follower in self._followers:
                    self._followers.remove(follower)
        return stop

    def check(self) -> None:
        """TooManyFollowers if one more follower would pass the cap (before a socket is upgraded)."""
        with self._lock:
            self._check()

    def _check(self) -> None:
        if len(self._followers) >= self._max_followers:
            raise TooManyFollowers(f"at most {self._max_followers} followers of the node's log at once",
                                   field="followers")


NODE_LOG = NodeLog()
