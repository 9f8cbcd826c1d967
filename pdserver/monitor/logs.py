"""Following chute output for many listeners: one reader per container, shared by every socket.

A reader is a thread and a connection to the engine; a socket is a socket. So however many clients follow
a chute, the node holds one reader per container, started with the first listener and stopped with the
last (also when the last one leaves before the reader has opened). A listener joining later first gets
the lines the reader kept (the same tail a reader starts with), then the live ones, with no gap and no
repeat. The number of listeners is capped per chute and per token, and a failure that repeats (a missing
container, an engine that is down) is logged once.
"""
import collections
import datetime
from typing import Callable, Dict, Iterable, Optional, Set, Tuple

from twisted.logger import Logger

from pdserver import errors

log = Logger()

MAX_PER_CHUTE = 32
MAX_PER_TOKEN = 8
BACKLOG = 100
_REMEMBERED_FAILURES = 256

Deliver = Callable[[str, float, str], None]  # (service, unix time, text)


class TooManyFollowers(errors.Error):
    """One more listener would pass a cap; ``field`` says which one (chute or token)."""

    status, code = 429, "too_many_followers"


def split_timestamp(line: str, now: float) -> Tuple[float, str]:
    """(unix time, text) of an engine log line prefixed with its RFC 3339 time."""
    stamp, _, text = line.partition(" ")
    try:
        return datetime.datetime.fromisoformat(stamp).timestamp(), text
    except ValueError:
        return now, line


class Listener:
    """One socket's subscription; ``LogHub.leave`` ends it (more than once is fine)."""

    def __init__(self, chute: str, token: str, deliver: Deliver):
        self.chute = chute
        self.token = token
        self.deliver = deliver
        self.readers: Dict[str, "_Reader"] = {}
        self.active = True


class _Reader:
    """One follow of one container, fanned out to its listeners (reactor thread only)."""

    def __init__(self, hub: "LogHub", name: str):
        self.hub = hub
        self.name = name
        self.listeners: Dict[Listener, str] = {}  # listener -> service name
        self.kept = collections.deque(maxlen=hub.backlog)
        self.follower = None
        self.stopped = False

    def start(self) -> None:
        d = self.hub.engine.follow_logs(self.name, self.line, tail=self.hub.backlog, timestamps=True)
        d.addCallbacks(self.opened, self.failed)

    def join(self, listener: Listener, service: str) -> None:
        for timestamp, text in self.kept:
            self.hub.send(listener, service, timestamp, text)
        self.listeners[listener] = service

    def line(self, line: str) -> None:
        timestamp, text = split_timestamp(line, self.hub.clock.seconds())
        self.kept.append((timestamp, text))
        for listener, service in list(self.listeners.items()):
            self.hub.send(listener, service, timestamp, text)

    def opened(self, follower) -> None:
        self.follower = follower
        if self.stopped:
            follower.stop()
            return
        follower.done.addCallbacks(lambda _: self.hub.forget(self), self.failed)

    def failed(self, failure) -> None:
        self.hub.forget(self)
        message = f"[logs unavailable: {failure.getErrorMessage()}]"
        self.hub.log_once(self.name, message)
        for listener, service in list(self.listeners.items()):
            self.hub.send(listener, service, self.hub.clock.seconds(), message)

    def stop(self) -> None:
        self.stopped = True
        if self.follower is not None:
            self.follower.stop()


class LogHub:
    def __init__(self, engine, clock, per_chute: int = MAX_PER_CHUTE, per_token: int = MAX_PER_TOKEN,
                 backlog: int = BACKLOG):
        self.engine = engine
        self.clock = clock
        self.backlog = backlog
        self._per_chute = per_chute
        self._per_token = per_token
        self._readers: Dict[str, _Reader] = {}
        self._chutes = collections.Counter()
        self._tokens = collections.Counter()
        self._logged: Set[Tuple[str, str]] = set()

    @property
    def readers(self) -> int:
        """Readers running or opening now."""
        return len(self._readers)

    def check(self, chute: str, token: str) -> None:
        """TooManyFollowers when one more listener would pass a cap."""
        if self._chutes[chute] >= self._per_chute:
            raise TooManyFollowers(f"{self._per_chute} sockets already follow the logs of chute {chute}, the "
                                    f"most this node allows; close one first", field="chute")
        if self._tokens[token] >= self._per_token:
            raise TooManyFollowers(f"this token already follows {self._per_token} log streams, the most this "
                                    f"node allows; close one first", field="token")

    def join(self, chute: str, token: str, containers: Iterable[Tuple[str, str]], deliver: Deliver) -> Listener:
        """Follow (service, container) pairs; ``deliver(service, time, text)`` gets every line."""
        self.check(chute, token)
        listener = Listener(chute, token, deliver)
        self._chutes[chute] += 1
        self._tokens[token] += 1
        for service, name in containers:
            reader = self._readers.get(name)
            started = reader is not None
            if not started:
                reader = self._readers[name] = _Reader(self, name)
            listener.readers[name] = reader
            reader.join(listener, service)
            if not started:
                reader.start()
        return listener

    def leave(self, listener: Listener) -> None:
        if not listener.active:
            return
        listener.active = False
        _decrement(self._chutes, listener.chute)
        _decrement(self._tokens, listener.token)
        for reader in listener.readers.values():
            reader.listeners.pop(listener, None)
            if not reader.listeners:
                self.forget(reader)
                reader.stop()

    def forget(self, reader: _Reader) -> None:
        """A reader that ended or is ending: later listeners start a new one."""
        if self._readers.get(reader.name) is reader:
            del self._readers[reader.name]

    def send(self, listener: Listener, service: str, timestamp: float, text: str) -> None:
        if not listener.active:
            return
        try:
            listener.deliver(service, timestamp, text)
        except Exception:
            log.failure("a follower of {chute}'s logs failed; dropping it", chute=listener.chute)
            self.leave(listener)

    def log_once(self, name: str, message: str) -> None:
        key = (name, message)
        if key in self._logged:
            return
        if len(self._logged) >= _REMEMBERED_FAILURES:
            self._logged.clear()
        self._logged.add(key)
        log.warn("following the output of {container}: {message}", container=name, message=message)


def _decrement(counter: collections.Counter, key: Optional[str]) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
