"""The node's link to its controller: a service in the node's tree that holds the WAMP session while the node is
provisioned, and reports the node's state, telemetry and change progress over it.

autobahn is imported (through pdserver.cloud.wamp) only when a provision record exists. Offline the node works as
ever; the session reconnects with backoff and republishes the full state on every join, so nothing a disconnected
node did is lost to the controller.

Every message goes through the router, so a remote command costs few of them (a deployment to a thousand nodes is
a thousand times this). A command whose caller asked for progressive results (the controller's) is answered when
its change ends, with the outcome and the node's chutes; its progress goes out as progressive results, at most one
per ``window`` seconds with the messages of that window; nothing is published for it (a change done within
``window`` seconds is one call: CALL, INVOCATION, YIELD, RESULT). For a plain call the answer says it is queued,
its progress goes out as "running" CHANGE events (the same pacing) and what is left of it with its final state;
the state message after changes goes out ``window`` seconds after the first of them, once for the burst.

A chute's state in the state message is what its containers do, not only what the node last made of it: a
"running" chute one of whose containers exited or is being restarted by Docker is reported with that container's
status ("exited", "restarting", "missing"...). Such a death, and the container's return, happen behind the node's
back, so the link follows the engine's container events (pdserver.monitor.events): an event of a chute's container
while no change is at work on that chute sends the state at once, and the events of the next ``window`` seconds
one more time at its end (a container Docker restarts within 0.1 s is seen dead, then running again).
"""
from typing import Callable, Dict, List, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Attribute, Interface

import pdserver
from pdserver.chutes.naming import LABEL_CHUTE
from pdserver.chutes.store import RUNNING
from pdserver.cloud import protocol
from pdserver.cloud.commands import RemoteCommands
from pdserver.cloud.provisioning import ProvisionFile, ProvisionRecord
from pdserver.errors import Error
from pdserver.monitor.deaths import queue_changing

log = Logger()

WINDOW = 0.2  # seconds: progress events and state messages of one burst of changes go out as one
LIVE_ACTIONS = ("start", "die", "pause", "unpause", "destroy")  # container events that change a chute's state


class ICloudSession(Interface):
    """The WAMP session of one provision record (pdserver.cloud.wamp.WampSession): made with (reactor, record,
    retry, procedures, on_join, on_leave), it joins and rejoins until stopped."""

    joined = Attribute("whether the session is joined now")

    def start():
        """Begin connecting (and reconnecting)."""

    def stop():
        """Leave and stop reconnecting: a Deferred that fires when the session is gone."""

    def publish(suffix, message):
        """Publish ``message`` on the node's topic ``suffix``: a Deferred, failed when not joined."""


def wamp_session(*args) -> ICloudSession:
    """The real session; autobahn is imported here, on the first provisioned start."""
    from pdserver.cloud.wamp import WampSession
    return WampSession(*args)


class CloudLink(Service):
    name = "cloud-link"

    def __init__(self, reactor, provision_file: ProvisionFile, retry: dict, commands: RemoteCommands, queue,
                 chutes, telemetry, telemetry_config: Callable[[], dict], audit,
                 session_factory: Callable[..., ICloudSession] = wamp_session, window: float = WINDOW,
                 events=None, monitor=None):
        """``retry``: {initial, max, growth, jitter} seconds (pdserver.settings); ``telemetry_config()`` the host
        config's ``telemetry`` section as it stands ({enabled, interval}). ``events`` (the node's ContainerEvents)
        and ``monitor`` (its ChuteMonitor): without them chutes are reported in their recorded state only."""
        self._session_factory = session_factory
        self._reactor = reactor
        self._file = provision_file
        self._retry = retry
        self._commands = commands
        self._queue = queue
        self._chutes = chutes
        self._telemetry = telemetry
        self._telemetry_config = telemetry_config
        self._audit = audit
        self._record: Optional[ProvisionRecord] = None
        self._session = None
        self._telemetry_call = None
        self._window = window
        self._state_call = None  # the state message due at the end of a burst of changes
        self._state_sent = None  # when the last state message was made (container events: at most one a window)
        self._state_making = False  # a state message is being made (they go out in order, one at a time)
        self._state_again = False  # ...and another is due once it is out
        self._monitor = monitor
        self._changing = queue_changing(queue)
        self._progress: Dict[int, List[str]] = {}  # change id -> progress messages not yet published
        self._progress_calls: Dict[int, object] = {}  # change id -> when they go out
        self._answering: Dict[int, Callable[[dict], None]] = {}  # change id -> progress of the call awaiting its end
        self._ends: Dict[int, List[tuple]] = {}  # change id -> (Deferred, duplicate) of the calls awaiting its end
        self.connected = False
        self.last_connected: Optional[float] = None
        self.last_error: Optional[str] = None
        commands.on_submitted = self._submitted
        if events is not None and monitor is not None:
            events.subscribe(self._container_event)

    def startService(self):
        super().startService()
        try:
            record = self._file.load()
        except Exception as e:
            log.error("cannot use the provision record {path} ({error}); the node runs unprovisioned",
                      path=str(self._file.path), error=str(e))
            self.last_error = f"cannot use the provision record: {e}"
            return
        if record is not None:
            self._start(record)

    def stopService(self):
        super().stopService()
        return self._stop()

    def status(self) -> dict:
        record = self._record
        return {"provisioned": record is not None, "routerId": record.node_id if record else None,
                "pdserver": record.controller if record else None,
                "wampRouter": record.wamp_router if record else None, "connected": self.connected,
                "last_connected": self.last_connected, "last_error": self.last_error}

    @defer.inlineCallbacks
    def provision(self, record: ProvisionRecord, user: Optional[str], address: Optional[str] = None):
        """Store ``record`` and connect with it at once (leaving any session of an older record first)."""
        yield self._stop()
        self._file.save(record)
        self._audit.record(user, "cloud:provision", "ok", target=record.node_id, address=address,
                           detail={"controller": record.controller, "wamp_router": record.wamp_router})
        self.last_error = None
        if self.running:
            self._start(record)
        else:
            self._record = record

    @defer.inlineCallbacks
    def unprovision(self, user: Optional[str], address: Optional[str] = None):
        yield self._stop()
        self._file.clear()
        self._audit.record(user, "cloud:unprovision", "ok", address=address)
        self.last_error = None

    def _start(self, record: ProvisionRecord) -> None:
        self._record = record
        procedures = {name: self._command(name) for name in protocol.COMMANDS}
        procedures[protocol.GET_STATE] = self.state_message
        self._session = self._session_factory(self._reactor, record, self._retry, procedures, self._joined,
                                              self._left)
        self._session.start()

    def _stop(self) -> defer.Deferred:
        self._record = None
        self._left(None)
        session, self._session = self._session, None
        return session.stop() if session is not None else defer.succeed(None)

    def _joined(self) -> None:
        self.connected = True
        self.last_connected = self._reactor.seconds()
        self.last_error = None
        self.publish_state()
        self._schedule_telemetry(0)

    def _left(self, reason: Optional[str]) -> None:
        self.connected = False
        if reason is not None:
            self.last_error = reason
        for call in [self._telemetry_call, self._state_call, *self._progress_calls.values()]:
            if call is not None and call.active():
                call.cancel()
        self._telemetry_call = self._state_call = None
        self._progress.clear()
        self._progress_calls.clear()
        self._answering.clear()  # their calls went with the session; the next join's state message tells
        self._ends.clear()

    def _command(self, name: str) -> Callable:
        def run(progress: Optional[Callable[[dict], None]] = None, **kwargs) -> defer.Deferred:
            d = self._commands.run(name, **kwargs)
            return d if progress is None else d.addCallback(self._answer_at_end, progress)
        return run

    def _answer_at_end(self, answer: dict, progress: Callable[[dict], None]) -> defer.Deferred:
        """The answer of a progressive call: when its change ends (at once if it has)."""
        change = self._queue.get(answer["change_id"])
        if change is None or change.state.value in protocol.FINISHED_STATES:
            return self._final_answer(change, answer, [])
        self._answering[change.id] = progress  # the latest call gets the progress (an earlier one's may be gone)
        entry = (defer.Deferred(lambda d: self._not_awaited(change.id, entry)), answer)
        self._ends.setdefault(change.id, []).append(entry)
        return entry[0]

    def _not_awaited(self, change_id: int, entry: tuple) -> None:
        """A call cancelled (by its caller or the router): with no other call waiting, the change's end is
        published as for a plain call."""
        waiting = self._ends.get(change_id, [])
        if entry in waiting:
            waiting.remove(entry)
        if not waiting:
            self._ends.pop(change_id, None)
            self._answering.pop(change_id, None)

    @defer.inlineCallbacks
    def _final_answer(self, change, answer: dict, messages: List[str]):
        chutes = yield self._chute_states()
        if change is None:
            return {**answer, "state": "unknown", "message": None, "version": pdserver.__version__, "chutes": chutes}
        return {"change_id": change.id, "duplicate": answer["duplicate"], "state": change.state.value,
                "message": "\n".join(messages + [self._end_message(change)]), "version": pdserver.__version__,
                "chutes": chutes}

    @staticmethod
    def _end_message(change) -> str:
        result = change.result or {}
        return f"change {change.id} {change.state.value}" + (f": {result['message']}" if result.get("message")
                                                             else "")

    @defer.inlineCallbacks
    def _chute_states(self):
        chutes = []
        for record in self._chutes.list():
            state = yield self._live_state(record)
            chutes.append({"name": record.name, "version": record.version, "state": state})
        return chutes

    @defer.inlineCallbacks
    def state_message(self):
        """A Deferred of the state message (protocol.STATE), with each chute's state as its containers have it."""
        chutes = yield self._chute_states()
        return {"node_id": self._record.node_id if self._record else None, "version": pdserver.__version__,
                "time": self._reactor.seconds(), "chutes": chutes, "commands": self._commands.recent()}

    @defer.inlineCallbacks
    def _live_state(self, record):
        """A running chute's state is the status of its first container that does not run, if any."""
        if self._monitor is None or record.state != RUNNING:
            return record.state
        try:
            services = yield self._monitor.services(record)
        except Error as e:
            log.info("cloud link: the state of {chute} as recorded ({error})", chute=record.name, error=e.message)
            return record.state
        return next((s["status"] for s in services if not s["running"]), record.state)

    def _publish(self, topic: str, message: dict) -> None:
        """Publish if connected; a message lost to a disconnect is made good by the state sent on the next join."""
        if self._session is None or not self._session.joined:
            return
        self._session.publish(topic, message).addErrback(
            lambda f: log.info("cloud link: {topic} not published: {error}", topic=topic, error=f.getErrorMessage()))

    def publish_state(self) -> None:
        """The state message now (after the one being made, if any: messages made at once may be done out of
        order, and the controller keeps the last it hears)."""
        if self._state_call is not None and self._state_call.active():
            self._state_call.cancel()
        self._state_call = None
        if self._state_making:
            self._state_again = True
            return
        self._state_making, self._state_again = True, False
        self._state_sent = self._reactor.seconds()
        d = self.state_message()
        d.addCallback(lambda message: self._publish(protocol.STATE, message))
        d.addErrback(lambda f: log.failure("cloud link: no state message", f))
        d.addBoth(self._state_made)

    def _state_made(self, _) -> None:
        self._state_making = False
        if self._state_again:
            self.publish_state()

    def _container_event(self, event) -> None:
        """A chute's container started, died...: the state at once, or at the end of the window of the last one
        (a change at work on the chute sends it when it ends)."""
        chute = event.attributes.get(LABEL_CHUTE)
        if chute is None or event.action not in LIVE_ACTIONS or self._changing(chute) or \
                self._session is None or not self._session.joined:
            return
        if self._state_call is not None and self._state_call.active():
            return
        # Not at once even when due now: the monitor drops the container's cached state on this same event.
        delay = 0.0 if self._state_sent is None else max(0.0, self._state_sent + self._window - self._reactor.seconds())
        self._state_call = self._reactor.callLater(delay, self.publish_state)

    def _state_changed(self) -> None:
        """The state message ``window`` seconds after the first change of a burst, once for all of them."""
        if self._state_call is None or not self._state_call.active():
            self._state_call = self._reactor.callLater(self._window, self.publish_state)

    def _change_event(self, change, key, state: str, time: float, message: str) -> None:
        self._publish(protocol.CHANGE, {"change_id": change.id, "key": key, "type": change.type,
                                        "chute": change.target, "state": state, "time": time, "message": message})

    def _submitted(self, change, key: str) -> None:
        """A remote command queued ``change`` (its answer says so): follow its progress (its end: change_finished)."""
        self._queue.observe(change.id, lambda event: "state" not in event and self._progressed(change, key, event))

    def _progressed(self, change, key: str, event: dict) -> None:
        if self._session is None or not self._session.joined:
            return
        self._progress.setdefault(change.id, []).append(event["message"])
        if change.id not in self._progress_calls:
            self._progress_calls[change.id] = self._reactor.callLater(
                self._window, self._flush_progress, change, key)

    def _unpublished_progress(self, change_id: int) -> List[str]:
        call = self._progress_calls.pop(change_id, None)
        if call is not None and call.active():
            call.cancel()
        return self._progress.pop(change_id, None) or []

    def _flush_progress(self, change, key: str) -> None:
        """One "running" event with the progress messages since the last one: a progressive result of the call
        awaiting the change, else a CHANGE event."""
        messages = self._unpublished_progress(change.id)
        if not messages:
            return
        progress = self._answering.get(change.id)
        if progress is None:
            self._change_event(change, key, "running", self._reactor.seconds(), "\n".join(messages))
        else:
            progress({"change_id": change.id, "key": key, "type": change.type, "chute": change.target,
                      "state": "running", "time": self._reactor.seconds(), "message": "\n".join(messages)})

    def change_finished(self, change) -> None:
        """Every change's end: the answer of the calls awaiting it; else its final state (with the key of the
        command that made it, if any) after the rest of its progress, then (for the burst) the node's new state."""
        if self._session is None or not self._session.joined:
            return
        self._answering.pop(change.id, None)
        waiting = self._ends.pop(change.id, [])
        messages = self._unpublished_progress(change.id)
        if waiting:
            for waiter, answer in waiting:
                self._final_answer(change, answer, messages).chainDeferred(waiter)
            return
        self._change_event(change, self._commands.key_of(change.id), change.state.value,
                           change.finished or self._reactor.seconds(),
                           "\n".join(messages + [self._end_message(change)]))
        self._state_changed()

    def _schedule_telemetry(self, delay: float) -> None:
        self._telemetry_call = self._reactor.callLater(delay, self._send_telemetry)

    def _send_telemetry(self) -> None:
        config = self._telemetry_config()
        self._schedule_telemetry(config.get("interval", 60))
        if config.get("enabled", True):
            self._telemetry.current().addCallbacks(
                lambda sample: self._publish(protocol.TELEMETRY, sample),
                lambda f: log.failure("cloud link: no telemetry sample", f))
