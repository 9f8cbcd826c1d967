"""What /ws/status pushes: node telemetry every ``interval`` seconds, chute container events as they happen.

Nothing is sampled while nobody listens: the periodic sample runs only while there is at least one listener,
and all listeners share it. Each message is a dict with a ``type``: "telemetry" (the sample), "usage" (the CPU and
memory of each running chute service, {"chutes": {chute: {service: usage}}}, at the same pace), "container"
(an engine event of a chute's container: start, die, stop, health_status...) or "chute_died" (a death no change
of the node caused; it is also in the audit log).
"""
from typing import Callable, List

from twisted.internet import task
from twisted.logger import Logger

from pdserver.chutes.naming import LABEL_CHUTE, LABEL_DEPLOYMENT, LABEL_SERVICE

log = Logger()


class StatusHub:
    """``events`` is the node's ContainerEvents, ``deaths`` its DeathWatch, ``telemetry`` its Telemetry;
    ``usage()`` -> Deferred {chute: {service: usage}} (ChuteMonitor.usage of the installed chutes)."""

    def __init__(self, events, deaths, telemetry, clock, usage=None, interval: float = 5.0):
        self._telemetry = telemetry
        self._usage = usage
        self._clock = clock
        self._interval = interval
        self._listeners: List[Callable[[dict], None]] = []
        self._loop = None
        events.subscribe(self._on_event)
        deaths.listen(lambda death: self._send({"type": "chute_died", **death}))

    def listen(self, listener: Callable[[dict], None]) -> Callable[[], None]:
        """``listener(message)`` from now on, starting with a telemetry sample; returns the function that stops it."""
        self._listeners.append(listener)
        if self._loop is None:
            self._loop = task.LoopingCall(self._push_telemetry)
            self._loop.clock = self._clock
            self._loop.start(self._interval, now=True)
        else:
            self._telemetry.current().addCallbacks(lambda sample: listener({"type": "telemetry", **sample}),
                                                   self._not_sampled).addCallback(lambda _: self._read_usage(listener))

        def stop():
            if listener in self._listeners:
                self._listeners.remove(listener)
            if not self._listeners and self._loop is not None:
                self._loop.stop()
                self._loop = None
        return stop

    def _push_telemetry(self) -> None:
        self._telemetry.current().addCallbacks(lambda sample: self._send({"type": "telemetry", **sample}),
                                               self._not_sampled).addCallback(lambda _: self._read_usage(self._send))

    def _read_usage(self, send) -> None:
        """After the telemetry: a listener's first message is always a telemetry sample."""
        if self._usage is not None:
            self._usage().addCallbacks(lambda chutes: send({"type": "usage", "time": self._clock.seconds(),
                                                            "chutes": chutes}), self._not_sampled)

    def _not_sampled(self, failure) -> None:
        log.failure("cannot sample the node's telemetry or its chutes' usage", failure)

    def _on_event(self, event) -> None:
        chute = event.attributes.get(LABEL_CHUTE)
        if chute is None:
            return
        exit_code = event.attributes.get("exitCode")
        self._send({"type": "container", "action": event.action, "chute": chute,
                    "service": event.attributes.get(LABEL_SERVICE),
                    "deployment": event.attributes.get(LABEL_DEPLOYMENT), "container": event.name,
                    "time": event.time, "exit_code": int(exit_code) if exit_code and exit_code.isdigit() else None})

    def _send(self, message: dict) -> None:
        for listener in list(self._listeners):
            try:
                listener(message)
            except Exception:
                log.failure("a status listener failed")
