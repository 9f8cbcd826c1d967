"""Noticing a chute's container that dies behind the node's back.

A "die" of a container of a running chute's current deployment while no change is at work on that chute was
caused by nobody here (a crash, an OOM kill, a ``docker stop`` by hand): it gets an audit record at once (the
engine's event stream tells us, no poll) and is kept per container for the chute's status. Dies that a change
causes (stop, update, delete, restart) are expected and left alone; so is the die of a container whose chute is
stopped or gone by the time the event arrives (the change that did it just ended).
"""
from typing import Callable, Dict, List, Optional

from twisted.logger import Logger

from pdserver.chutes.naming import LABEL_CHUTE, LABEL_DEPLOYMENT, LABEL_SERVICE
from pdserver.chutes.store import RUNNING, ChuteStore

log = Logger()


class DeathWatch:
    """``changing(chute)`` says whether a change is at work on the chute; ``audit`` is AuditLog.record."""

    def __init__(self, events, chutes: ChuteStore, changing: Callable[[str], bool], audit: Callable):
        self._chutes = chutes
        self._changing = changing
        self._audit = audit
        self._last: Dict[str, dict] = {}
        self._counts: Dict[str, int] = {}
        self._listeners: List[Callable[[dict], None]] = []
        events.subscribe(self._on_event)

    def last(self, container: str) -> Optional[dict]:
        """The container's last unexpected death ({time, exit_code, count}), or None."""
        death = self._last.get(container)
        return None if death is None else {**death, "count": self._counts[container]}

    def listen(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """``listener(death)`` for each unexpected death; returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: listener in self._listeners and self._listeners.remove(listener)

    def _on_event(self, event) -> None:
        if event.action == "destroy":
            self._last.pop(event.name, None)
            self._counts.pop(event.name, None)
            return
        if event.action != "die":
            return
        chute, service = event.attributes.get(LABEL_CHUTE), event.attributes.get(LABEL_SERVICE)
        record = self._chutes.get(chute) if chute else None
        current = record is not None and str(record.deployment) == event.attributes.get(LABEL_DEPLOYMENT)
        if not current or record.state != RUNNING or self._changing(chute):
            return
        try:
            code = int(event.attributes.get("exitCode", ""))
        except ValueError:
            code = None
        self._last[event.name] = {"time": event.time, "exit_code": code}
        self._counts[event.name] = self._counts.get(event.name, 0) + 1
        log.warn("container {container} of chute {chute} died unexpectedly (exit code {code})",
                 container=event.name, chute=chute, code=code)
        self._audit("node", "chute_died", "failed", target=chute,
                    detail={"service": service, "container": event.name, "exit_code": code})
        death = {"chute": chute, "service": service, "container": event.name, "time": event.time, "exit_code": code}
        for listener in list(self._listeners):
            listener(death)


def queue_changing(queue) -> Callable[[str], bool]:
    """``changing(chute)`` of a change queue: its running change targets the chute, or the whole node."""
    def changing(chute: str) -> bool:
        running = queue.running_change
        if running is None:
            return False
        change = queue.get(running)
        return change is not None and change.target in (None, chute)
    return changing
