"""Live state and output of installed chutes, read from the Docker engine."""
from typing import Dict, List, Tuple

from twisted.internet import defer
from twisted.python.failure import Failure

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.store import ChuteRecord
from pdserver.containers.errors import EngineError
from pdserver.monitor.logs import LogHub


class StatusUnavailable(errors.Unavailable):
    """The engine could not tell us (it is down, say); the message says why."""


class ChuteMonitor:
    def __init__(self, engine, names: ChuteNames, clock):
        self._engine = engine
        self._names = names
        self.logs = LogHub(engine, clock)
        self._inspecting: Dict[str, List[defer.Deferred]] = {}

    def _inspect(self, name: str) -> defer.Deferred:
        """The container's state, one engine call for all who ask while it is under way: 200 clients reading
        one chute cost one inspect at a time, not 200 queued in the adapter's thread pool."""
        waiter = defer.Deferred()
        waiters = self._inspecting.get(name)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        waiters = self._inspecting[name] = [waiter]

        def answer(result):
            del self._inspecting[name]
            for each in waiters:
                if isinstance(result, Failure):
                    each.errback(result)
                else:
                    each.callback(result)
        self._engine.inspect_container(name).addBoth(answer)
        return waiter

    def containers(self, record: ChuteRecord) -> List[Tuple[str, str]]:
        """(service, container name) of the chute's current deployment."""
        return [(s.name, self._names.container(record.name, s.name, record.deployment))
                for s in record.spec().services]

    def objects(self, record: ChuteRecord) -> dict:
        """The names of the chute's Docker objects."""
        spec, names = record.spec(), self._names
        return {"network": names.network(record.name), "volume": record.volume,
                "containers": {svc: name for svc, name in self.containers(record)},
                "images": {s.name: (s.image if s.type == "image" else
                                    names.image(record.name, s.name, spec.version, record.deployment))
                           for s in spec.services}}

    @defer.inlineCallbacks
    def services(self, record: ChuteRecord):
        """The state of each service; ``capabilities`` and ``memory`` are what its container was granted."""
        out = []
        network = self._names.network(record.name)
        spec = record.spec()
        for svc, name in self.containers(record):
            try:
                state = yield self._inspect(name)
            except EngineError as e:
                raise StatusUnavailable(f"cannot read the state of {record.name}: {e.message}",
                                        field="engine") from None
            out.append({"name": svc, "type": spec.service(svc).type, "container": name,
                        "status": state.status if state else "missing",
                        "running": bool(state and state.running), "health": state.health if state else None,
                        "restart_count": state.restart_count if state else 0,
                        "address": state.addresses.get(network) if state else None,
                        "capabilities": list(state.capabilities) if state and state.capabilities is not None
                        else None,
                        "memory": state.memory if state else None,
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
