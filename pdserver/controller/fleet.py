"""The fleet as the controller sees it over WAMP: who is online, what each node reported, and the dispatcher that
brings deliveries (one chute version or command for one node) to the nodes.

A node's procedures exist once it has published its state (it registers them first), so deliveries go out on a
node's state message, on ``wake`` for nodes that are ready, and after the controller rejoins (it asks each node for
its state). Deliveries of one node go out one at a time, in order. A delivery is one progressive call: the node
answers when its change ends, with the outcome and its chutes after it, and sends the change's progress as
progressive results (protocol.py); a node that answers at once instead (an older one) reports the rest with change
events and state messages, as before. A call that fails leaves its delivery pending: the node's next state message
retries it with the same idempotency key, so a command that ran but whose answer was lost never runs twice. A
delivery's state only moves forward: the node's answers, progress, change events and the ``commands`` list of its
state messages may arrive in any order.
"""
from typing import Callable, Dict, Iterable, List, Optional, Set

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pdserver.cloud import protocol
from pdserver.controller.interfaces import IDeploymentEvents, IFleet, INodeEvents
from pdserver.controller.wamp import IFleetObserver
from pdserver.errors import shorten

FINAL = ("succeeded", "failed", "cancelled", "interrupted", "forbidden")
RANK = {"pending": 0, "sent": 1, "queued": 2, "running": 3, **{state: 4 for state in FINAL}}
CHUTE_COMMANDS = {"start": protocol.START_CHUTE, "stop": protocol.STOP_CHUTE, "restart": protocol.RESTART_CHUTE,
                  "remove": protocol.REMOVE_CHUTE}
MAX_TEXT = 200  # characters of a string a node reports (names, versions, states, keys)
MAX_CHUTES = 1000

log = Logger()


def _text(value, limit=MAX_TEXT) -> Optional[str]:
    """A string a node reported, as valid UTF-8; None for other types and for longer strings (a version cut short
    could equal another)."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    text = str(value)
    if len(text) > limit:
        return None
    return text.encode("utf-8", "replace").decode("utf-8")


def _message(value) -> Optional[str]:
    if not isinstance(value, str) or not value:
        return None
    return shorten(value.encode("utf-8", "replace").decode("utf-8"))


def _int(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2 ** 63 else None


def clean_state(node_id: str, message) -> Optional[dict]:
    """The parts of a node's state message we keep, with the node id of its topic; None when it is no dict."""
    if not isinstance(message, dict):
        return None
    chutes = message.get("chutes") if isinstance(message.get("chutes"), list) else []
    commands = message.get("commands") if isinstance(message.get("commands"), list) else []
    return {
        "node_id": node_id,
        "version": _text(message.get("version")),
        "time": message.get("time") if isinstance(message.get("time"), (int, float)) else None,
        "chutes": [{"name": _text(c.get("name")), "version": _text(c.get("version")), "state": _text(c.get("state"))}
                   for c in chutes[:MAX_CHUTES] if isinstance(c, dict) and _text(c.get("name"))],
        "commands": [{"key": _text(c.get("key")), "change_id": _int(c.get("change_id")), "state": _text(c.get("state"))}
                     for c in commands[:protocol.COMMANDS_REPORTED] if isinstance(c, dict) and _text(c.get("key"))],
    }


@implementer(IDeploymentEvents, INodeEvents)
class EventHub:
    """Updates by subject (deployment id, node id), for the HTTP websocket routes: ``listen`` returns its
    unsubscribe."""

    def __init__(self):
        self._listeners: Dict[str, List[Callable]] = {}

    def listen(self, subject, callback: Callable[[dict], None]) -> Callable[[], None]:
        key = str(subject)
        self._listeners.setdefault(key, []).append(callback)

        def unsubscribe():
            callbacks = self._listeners.get(key, [])
            if callback in callbacks:
                callbacks.remove(callback)
            if not callbacks:
                self._listeners.pop(key, None)
        return unsubscribe

    def emit(self, subject, message: dict):
        for callback in list(self._listeners.get(str(subject), ())):
            try:
                callback(message)
            except Exception:
                log.failure("a listener of {subject} failed", subject=subject)


@implementer(IFleetObserver, IFleet)
class Fleet:
    """Presence, the nodes' latest state and telemetry, and the deployment dispatcher. ``caller`` (an INodeCaller,
    the ControllerSession) is set once both exist."""

    def __init__(self, store, reactor, caller=None):
        self.store = store
        self.caller = caller
        self.events = EventHub()
        self.node_events = EventHub()  # by node id: presence and reported state, once stored (/ws/nodes)
        self.telemetry: Dict[str, dict] = {}
        self._reactor = reactor
        self._sessions: Dict[int, str] = {}  # session id -> node id
        self._nodes: Dict[str, Set[int]] = {}  # node id -> its session ids (a reconnect may overlap the old one)
        self._previous: Set[str] = set()  # online before the controller rejoined
        self._chutes: Dict[str, Dict[str, str]] = {}  # node id -> {chute: version} as last reported
        self._deliveries: Dict[str, Dict[str, dict]] = {}  # node id -> {key: delivery} not final
        self._loaded: Set[str] = set()  # nodes whose deliveries in memory are all there are (wake keeps them so)
        self._busy: Set[str] = set()  # nodes with a dispatch running
        self._again: Set[str] = set()  # nodes to dispatch once more when the running dispatch ends
        self._reported: Dict[str, list] = {}  # node id -> the commands list of its last state message

    # --- presence

    def online(self) -> Set[str]:
        return set(self._nodes)

    def is_online(self, node_id: str) -> bool:
        return node_id in self._nodes

    def connected(self):
        self._previous = self.online()
        self._loaded.clear()
        self._sessions.clear()
        self._nodes.clear()

    def listed(self):
        gone, self._previous = self._previous - self.online(), set()
        for node_id in gone:
            self._offline(node_id)
        return self.wake(self.online())

    def node_joined(self, session_id, node_id):
        was_online = self.is_online(node_id)
        self._sessions[session_id] = node_id
        self._nodes.setdefault(node_id, set()).add(session_id)
        if not was_online:
            log.info("node {node} is online", node=node_id)
            self._record(self._seen(node_id, True, None))

    def node_left(self, session_id):
        node_id = self._sessions.pop(session_id, None)
        if node_id is None:
            return
        self._nodes[node_id].discard(session_id)
        if not self._nodes[node_id]:
            del self._nodes[node_id]
            self._offline(node_id)

    def _offline(self, node_id):
        log.info("node {node} is offline", node=node_id)
        self._chutes.pop(node_id, None)
        self._record(self._seen(node_id, False, None))

    @defer.inlineCallbacks
    def _seen(self, node_id, online: bool, state):
        """Store a node's presence (and state), then tell the listeners of that node."""
        now = self._reactor.seconds()
        yield self.store.node_seen(node_id, online, now, state)
        self.node_events.emit(node_id, {"node_id": node_id, "online": online, "time": now})

    # --- what nodes publish

    def node_published(self, node_id, topic, payload):
        if topic == protocol.STATE:
            return self._record(self._state(node_id, payload))
        if topic == protocol.TELEMETRY and isinstance(payload, dict):
            self.telemetry[node_id] = payload
        elif topic == protocol.CHANGE and isinstance(payload, dict):
            return self._record(self._change(node_id, payload))

    @defer.inlineCallbacks
    def _state(self, node_id, message):
        state = clean_state(node_id, message)
        if state is None or not self.is_online(node_id):
            return
        self._chutes[node_id] = {c["name"]: c["version"] for c in state["chutes"]}
        self._reported[node_id] = state["commands"]
        self._record(self._seen(node_id, True, state))  # dispatch does not wait for the write
        yield self._dispatch(node_id)

    @defer.inlineCallbacks
    def _change(self, node_id, event):
        key = _text(event.get("key"))
        if key is None:
            return
        if node_id not in self._deliveries:  # the first event since the controller started
            yield self._load(node_id)
        delivery = self._deliveries.get(node_id, {}).get(key)
        if delivery is not None:
            yield self._advance(node_id, delivery, _text(event.get("state")), _int(event.get("change_id")),
                                _message(event.get("message")))

    # --- the dispatcher

    def wake(self, node_ids: Iterable[str], deliveries: Optional[List[dict]] = None) -> defer.Deferred:
        """Send the pending deliveries of those nodes that are online; fires when they have been tried.
        ``deliveries``: the ones just created for them (as IFleetStore.pending_deliveries gives them), which
        spares a query per node; without it their deliveries are read again."""
        node_ids = set(node_ids)
        if deliveries is None:
            self._loaded -= node_ids
        for delivery in deliveries or ():
            if delivery.get("node_id") in self._loaded:
                self._deliveries[delivery["node_id"]].setdefault(delivery["key"], dict(delivery))
        return defer.gatherResults([self._record(self._dispatch(node_id)) for node_id in node_ids
                                    if self.is_online(node_id)]).addCallback(lambda _: None)

    @defer.inlineCallbacks
    def _dispatch(self, node_id):
        if node_id in self._busy:
            self._again.add(node_id)
            return
        self._busy.add(node_id)
        try:
            while True:
                self._again.discard(node_id)
                if node_id not in self._loaded:
                    yield self._load(node_id)
                for reported in self._reported.pop(node_id, ()):
                    delivery = self._deliveries.get(node_id, {}).get(reported["key"])
                    if delivery is not None:
                        yield self._advance(node_id, delivery, reported["state"], reported["change_id"], None)
                pending = [d for d in self._deliveries.get(node_id, {}).values() if d.get("state") == "pending"]
                if pending and node_id not in self._chutes:
                    yield self._ask_state(node_id)
                    if node_id not in self._chutes:  # its state message brings it back here
                        return
                for delivery in pending:
                    if not self.is_online(node_id):
                        return
                    if delivery.get("state") == "pending":
                        yield self._send(node_id, delivery)
                if node_id not in self._again or not self.is_online(node_id):
                    return
        finally:
            self._busy.discard(node_id)

    @defer.inlineCallbacks
    def _load(self, node_id):
        deliveries = yield self.store.pending_deliveries(node_id)
        known = self._deliveries.get(node_id, {})
        fresh = {}
        for delivery in deliveries or ():
            if delivery.get("node_id") != node_id:
                continue
            current = known.get(delivery["key"])
            if current is not None and RANK.get(current.get("state"), 0) > RANK.get(delivery.get("state"), 0):
                delivery = dict(delivery, state=current["state"])
            fresh[delivery["key"]] = delivery
        self._deliveries[node_id] = fresh
        self._loaded.add(node_id)

    @defer.inlineCallbacks
    def _ask_state(self, node_id):
        """Learn a node's chutes when we have no state message of it (the controller restarted)."""
        try:
            state = yield self.caller.call_node(node_id, protocol.GET_STATE)
        except Exception as e:
            log.info("could not get the state of node {node}: {error}", node=node_id, error=e)
            return
        state = clean_state(node_id, state)
        if state is not None:
            self._chutes[node_id] = {c["name"]: c["version"] for c in state["chutes"]}

    def command(self, node_id, delivery) -> Optional[tuple]:
        """(procedure, kwargs) that brings ``delivery`` to its node; None when the node already has it."""
        kwargs = {"key": delivery["key"], "user": delivery.get("user"), "role": delivery.get("role")}
        chute = delivery.get("chute")
        if delivery.get("command"):
            return CHUTE_COMMANDS[delivery["command"]], dict(kwargs, chute=chute)
        installed = self._chutes.get(node_id, {}).get(chute)
        if installed is not None and installed == _text(delivery.get("version")):
            return None
        if delivery.get("source"):
            kwargs["source"] = delivery["source"]
        else:
            kwargs["config"] = delivery.get("config")
        return (protocol.UPDATE_CHUTE if installed is not None else protocol.INSTALL_CHUTE), kwargs

    @defer.inlineCallbacks
    def _send(self, node_id, delivery):
        try:
            call = self.command(node_id, delivery)
        except KeyError:
            yield self._advance(node_id, delivery, "failed", None, f"unknown command {delivery.get('command')!r}")
            return
        if call is None:
            yield self._advance(node_id, delivery, "succeeded", None,
                                f"version {delivery.get('version')} is already installed")
            return
        procedure, kwargs = call
        try:
            answer = yield self.caller.call_node(node_id, procedure, on_progress=lambda message: self._record(
                self._progressed(node_id, delivery, message)), **kwargs)
        except Exception as e:
            log.info("delivery {key} to node {node} stays pending: {error}", key=delivery["key"], node=node_id,
                     error=e)
            return
        answer = answer if isinstance(answer, dict) else {}
        duplicate = "the node had it already" if answer.get("duplicate") is True else None
        state = _text(answer.get("state"))
        if state not in protocol.FINISHED_STATES:  # answered when queued: its events and state messages follow
            yield self._advance(node_id, delivery, "sent", _int(answer.get("change_id")), duplicate)
            return
        yield self._advance(node_id, delivery, state, _int(answer.get("change_id")),
                            _message(answer.get("message")) or duplicate)
        reported = clean_state(node_id, {"version": answer.get("version"), "chutes": answer.get("chutes")})
        self._chutes[node_id] = {c["name"]: c["version"] for c in reported["chutes"]}
        self._record(self._seen(node_id, True, reported))

    def _progressed(self, node_id, delivery, message):
        """A progressive result of a delivery's call: its change's progress, like a change event."""
        if isinstance(message, dict):
            return self._advance(node_id, delivery, _text(message.get("state")), _int(message.get("change_id")),
                                 _message(message.get("message")))

    def _advance(self, node_id, delivery, state, change_id, message):
        """Move a delivery forward (never back), tell the deployment's listeners, and write it (the listeners
        do not wait for the write)."""
        current = delivery.get("state")
        if state not in RANK or current in FINAL or RANK[state] < RANK.get(current, 0):
            return
        if state == current and not message and (change_id is None or change_id == delivery.get("change_id")):
            return
        now = self._reactor.seconds()
        new_change = change_id is not None and change_id != delivery.get("change_id")
        delivery["state"] = state
        if change_id is not None:
            delivery["change_id"] = change_id
        if state in FINAL:
            self._deliveries.get(node_id, {}).pop(delivery["key"], None)
        self.events.emit(delivery.get("deployment_id"), {"node_id": node_id, "key": delivery["key"],
                                                         "state": state, "message": message, "time": now})
        if state != current or new_change:
            self._record(self.store.update_delivery(delivery["key"], state, now, change_id=change_id,
                                                    message=message))

    @staticmethod
    def _record(d):
        """Log what fails in work nobody waits for (a store error must not end the session's handlers)."""
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda f: log.failure("fleet bookkeeping failed", f))
        return d
