"""Live state and output of installed chutes, read from the Docker engine."""
from typing import Dict, List, Optional, Tuple

from twisted.internet import defer
from twisted.python.failure import Failure

from pdserver import errors
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.store import ChuteRecord
from pdserver.containers.errors import EngineError
from pdserver.containers.spec import ContainerState
from pdserver.monitor.logs import LogHub


class StatusUnavailable(errors.Unavailable):
    """The engine could not tell us (it is down, say); the message says why."""


class ChuteMonitor:
    """Reads container states from the engine and keeps them while nothing happens to the container.

    ``events`` (the node's ContainerEvents) makes the cache safe: a container's state is dropped on any event
    for it, an inspect during which the container had an event (or the stream opened or ended) is not kept, and
    while the stream is down nothing is kept. A status read of an unchanged chute then costs no engine call.
    Without ``events`` every read asks the engine. ``deaths`` (a DeathWatch) adds each service's last unexpected
    exit, and ``usage`` (a ServiceUsage) the CPU and memory each running service uses."""

    def __init__(self, engine, names: ChuteNames, clock, events=None, deaths=None, usage=None):
        self._engine = engine
        self._usage = usage
        self._names = names
        self.logs = LogHub(engine, clock)
        self._inspecting: Dict[str, List[defer.Deferred]] = {}
        self._events = events
        self._deaths = deaths
        self._states: Dict[str, Optional[ContainerState]] = {}
        self._touched: Dict[str, int] = {}  # container -> events heard for it (or the stream's ups and downs)
        self._epoch = 0
        if events is not None:
            events.subscribe(self._on_event, on_open=self.forget, on_close=self.forget)

    def _on_event(self, event) -> None:
        self._states.pop(event.name, None)
        if event.action == "destroy" and event.name not in self._inspecting:
            self._touched.pop(event.name, None)
        else:
            self._touched[event.name] = self._touched.get(event.name, 0) + 1

    def forget(self) -> None:
        """Keep nothing read so far (nor what inspects under way read). Called when a change ends: its last engine
        call has answered, but the engine's events about it may still be on their way."""
        self._states.clear()
        self._epoch += 1

    def _mark(self, name: str):
        return self._epoch, self._touched.get(name, 0)

    def _inspect(self, name: str) -> defer.Deferred:
        """The container's state: the cached one, else one engine call for all who ask while it is under way
        (200 clients reading one chute cost one inspect at a time, not 200 queued in the adapter's thread pool)."""
        if name in self._states:
            return defer.succeed(self._states[name])
        waiter = defer.Deferred()
        waiters = self._inspecting.get(name)
        if waiters is not None:
            waiters.append(waiter)
            return waiter
        waiters = self._inspecting[name] = [waiter]
        before = self._mark(name)

        def answer(result):
            del self._inspecting[name]
            if not isinstance(result, Failure) and self._events is not None and self._events.following \
                    and self._mark(name) == before:
                self._states[name] = result
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
        """The state of each service; ``capabilities`` and ``memory`` are what its container was granted, ``usage``
        what it uses now (None while it does not run)."""
        out, pids = [], {}
        network = self._names.network(record.name)
        spec = record.spec()
        for svc, name in self.containers(record):
            try:
                state = yield self._inspect(name)
            except EngineError as e:
                raise StatusUnavailable(f"cannot read the state of {record.name}: {e.message}",
                                        field="engine") from None
            if state is not None and state.running and state.pid:
                pids[name] = state.pid
            out.append({"name": svc, "type": spec.service(svc).type, "container": name,
                        "status": state.status if state else "missing",
                        "running": bool(state and state.running), "health": state.health if state else None,
                        "restart_count": state.restart_count if state else 0,
                        "address": state.addresses.get(network) if state else None,
                        "capabilities": list(state.capabilities) if state and state.capabilities is not None
                        else None,
                        "memory": state.memory if state else None,
                        "exit_code": state.exit_code if state and not state.running else None,
                        "unexpected_exit": self._deaths.last(name) if self._deaths is not None else None,
                        "ports": [{"external": b.external, "internal": b.internal, "protocol": b.protocol}
                                  for b in spec.service(svc).port_bindings]})
        usage = (yield self._usage.of(pids)) if self._usage is not None and pids else {}
        for service in out:
            service["usage"] = usage.get(service["container"])
        return out

    @defer.inlineCallbacks
    def usage(self, records):
        """{chute: {service: usage}} of the running services of ``records`` (one read for all), for the status
        stream; a chute whose state the engine cannot tell is left out."""
        running = []
        for record in records:
            for svc, name in self.containers(record):
                try:
                    state = yield self._inspect(name)
                except EngineError:
                    break
                if state is not None and state.running and state.pid:
                    running.append((record.name, svc, name, state.pid))
        if self._usage is None or not running:
            return {}
        read = yield self._usage.of({name: pid for _, _, name, pid in running})
        out = {}
        for chute, svc, name, _ in running:
            if read.get(name) is not None:
                out.setdefault(chute, {})[svc] = read[name]
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
