"""Live state and output of installed chutes, read from the Docker engine."""
from typing import Callable, List, Tuple

from twisted.internet import defer

from pdserver import errors
from pdserver.chutes import naming
from pdserver.chutes.store import ChuteRecord
from pdserver.containers.errors import EngineError


class StatusUnavailable(errors.Unavailable):
    """The engine could not tell us (it is down, say); the message says why."""


class ChuteMonitor:
    def __init__(self, engine):
        self._engine = engine

    @staticmethod
    def containers(record: ChuteRecord) -> List[Tuple[str, str]]:
        """(service, container name) of the chute's current deployment."""
        return [(s.name, naming.container_name(record.name, s.name, record.deployment))
                for s in record.spec().services]

    @defer.inlineCallbacks
    def services(self, record: ChuteRecord):
        out = []
        network = naming.network_name(record.name)
        spec = record.spec()
        for svc, name in self.containers(record):
            try:
                state = yield self._engine.inspect_container(name)
            except EngineError as e:
                raise StatusUnavailable(f"cannot read the state of {record.name}: {e.message}", field="engine") from None
            out.append({"name": svc, "type": spec.service(svc).type, "container": name,
                        "status": state.status if state else "missing",
                        "running": bool(state and state.running), "health": state.health if state else None,
                        "restart_count": state.restart_count if state else 0,
                        "address": state.addresses.get(network) if state else None,
                        "ports": [{"external": b.external, "internal": b.internal, "protocol": b.protocol}
                                  for b in spec.service(svc).port_bindings]})
        return out

    @defer.inlineCallbacks
    def tail(self, record: ChuteRecord, lines: int):
        out = []
        for svc, name in self.containers(record):
            try:
                text = yield self._engine.logs(name, tail=lines)
            except EngineError as e:
                text = [f"[logs unavailable: {e.message}]"]
            out.extend({"service": svc, "message": line} for line in text)
        return out

    def follow(self, container: str, on_line: Callable[[str], None], tail: int = 100):
        """Fires with a follower (``.stop()``) of one container's output; lines start with their RFC 3339 time."""
        return self._engine.follow_logs(container, on_line, tail=tail, timestamps=True)
