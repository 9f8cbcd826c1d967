"""One follow of the engine's container events for the whole node, fanned out to its subscribers.

Each follow costs the engine a connection and us a thread, and every part that cares (the interface re-attach,
the state cache, the death watch, the status stream) wants the same events of the node's containers: they
subscribe here. When the engine ends the stream (it stopped, say), it is opened again with backoff (0.5 s
doubling to 30 s, reset once a stream stayed open ``stable_after`` seconds). Events while it was down are not
replayed, so subscribers hear ``on_open`` each time it opens (to catch up) and ``on_close`` when it ends.
"""
import random
from dataclasses import dataclass
from typing import Callable, List, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from pdserver.backoff import backoff

log = Logger()

# Every action that changes what an inspect of the container says (the state cache depends on it).
ACTIONS = ("create", "start", "restart", "die", "kill", "oom", "stop", "pause", "unpause", "destroy", "rename",
           "update", "health_status")


@dataclass(eq=False)
class _Subscriber:
    on_event: Callable
    on_open: Optional[Callable[[], None]]
    on_close: Optional[Callable[[], None]]


class ContainerEvents(Service):
    """Follows ``actions`` of the containers carrying ``label`` (the node's) while the service runs."""

    def __init__(self, reactor, engine, label: str, actions=ACTIONS, stable_after: float = 30.0,
                 rand=random.random):
        self._reactor = reactor
        self._engine = engine
        self._label = label
        self._actions = tuple(actions)
        self._stable_after = stable_after
        self._rand = rand
        self._subscribers: List[_Subscriber] = []
        self._follower = None
        self._opened_at = 0.0
        self._attempt = 0
        self._retry = None

    @property
    def following(self) -> bool:
        """True while the stream is open: no event of ours goes unheard."""
        return self._follower is not None

    def subscribe(self, on_event: Callable, on_open: Optional[Callable[[], None]] = None,
                  on_close: Optional[Callable[[], None]] = None) -> Callable[[], None]:
        """``on_event(ContainerEvent)`` for each event; ``on_open()`` each time the stream opens (at once if it is
        open), ``on_close()`` when it ends. Returns the unsubscribe function."""
        subscriber = _Subscriber(on_event, on_open, on_close)
        self._subscribers.append(subscriber)
        if self.following and on_open is not None:
            _call(on_open)
        return lambda: subscriber in self._subscribers and self._subscribers.remove(subscriber)

    # lifetime

    def startService(self):
        super().startService()
        self._open()

    def stopService(self):
        """Stop following; fires once the stream is closed."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        follower, self._follower = self._follower, None
        if follower is None:
            return defer.succeed(None)
        self._tell("on_close")
        return follower.stop()

    # the stream

    def _open(self) -> None:
        self._retry = None
        d = self._engine.follow_events(self._on_event, self._label, self._actions)
        d.addCallbacks(self._opened, self._not_opened)

    def _opened(self, follower) -> None:
        if not self.running:
            follower.stop()
            return
        self._follower, self._opened_at = follower, self._reactor.seconds()
        follower.done.addBoth(self._ended, follower)
        self._tell("on_open")

    def _not_opened(self, failure) -> None:
        log.warn("cannot follow the engine's container events: {why}", why=failure.getErrorMessage())
        self._again_later()

    def _ended(self, result, follower) -> None:
        if self._follower is not follower:
            return  # stopped by us
        self._follower = None
        self._tell("on_close")
        if not self.running:
            return
        log.info("the engine ended its container events; following them again")
        if self._reactor.seconds() - self._opened_at >= self._stable_after:
            self._attempt = 0
        self._again_later()

    def _again_later(self) -> None:
        if not self.running:
            return
        delay = backoff(self._attempt, rand=self._rand)
        self._attempt += 1
        self._retry = self._reactor.callLater(delay, self._open)

    def _on_event(self, event) -> None:
        for subscriber in list(self._subscribers):
            _call(subscriber.on_event, event)

    def _tell(self, what: str) -> None:
        for subscriber in list(self._subscribers):
            callback = getattr(subscriber, what)
            if callback is not None:
                _call(callback)


def _call(f, *args) -> None:
    """One subscriber's failure is logged; the others still hear the event."""
    try:
        f(*args)
    except Exception:
        log.failure("a container event subscriber failed")
