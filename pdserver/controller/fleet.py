"""The fleet as the controller sees it over WAMP: who is online, what each node reported, and the dispatcher that
brings deliveries (one chute version or command for one node) to the nodes.

A node's procedures exist once it has published its state (it registers them first), so deliveries go out on a
node's state message, on ``wake`` for nodes that are ready, and after the controller rejoins (it asks each node for
its state). Deliveries of one node go out one at a time, in order. A delivery is one progressive call: the node
answers when its change ends, with the outcome and its chutes after it, and sends the change's progress as
progressive results (protocol.py); a node that answers at once instead (an older one) reports the rest with change
events and state messages, as before. A call that fails leaves its delivery pending: the node's next state message,
or a retry after a backoff, sends it again with the same idempotency key, so a command that ran but whose answer was
lost never runs twice; a node's refusal of the command (its own error, wamp.refusal) ends the delivery failed with
the node's reason instead. A
delivery's state only moves forward: the node's answers, progress, change events and the ``commands`` list of its
state messages may arrive in any order.

With several backends on one router, each node has one owner among them (pdserver.controller.ownership): only it
sends the node's deliveries and writes its presence, and it relays what it stores (delivery progress, presence) to
the others, whose websockets show it too; a deployment created on one backend wakes the others' nodes through the
relay. A backend that comes to own a node (another left, or it just joined) reads the node's unfinished
deliveries from the database and sends again those it has not sent itself, with the same key: a change the node
ran for the backend that died answers as a duplicate when it ends, and runs once.
"""
import json
from typing import Callable, Dict, Iterable, List, Optional, Set

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from pdserver.backoff import backoff
from pdserver.cloud import protocol
from pdserver.controller.interfaces import IDeploymentEvents, IFleet, INodeEvents
from pdserver.controller.ownership import Backends
from pdserver.controller.wamp import IFleetObserver, is_node_id, refusal
from pdserver.errors import shorten

FINAL = ("succeeded", "failed", "cancelled", "interrupted", "forbidden")
RANK = {"pending": 0, "sent": 1, "queued": 2, "running": 3, **{state: 4 for state in FINAL}}
CHUTE_COMMANDS = {"start": protocol.START_CHUTE, "stop": protocol.STOP_CHUTE, "restart": protocol.RESTART_CHUTE,
                  "remove": protocol.REMOVE_CHUTE}
MAX_TEXT = 200  # characters of a string a node reports (names, versions, states, keys)
MAX_CHUTES = 1000
UNFINISHED = ("sent", "queued", "running")  # a call went out, from this backend or another
RELAY_EVENTS = 200  # updates per relayed message
RELAY_WAKE = 1000  # node ids per relayed wake
# What the deliveries of one deployment share (a relayed wake carries it once with each node's own part) and the
# most of it a relayed wake carries: a larger chute config is read from the database by the other backends.
SHARED = ("deployment_id", "command", "chute", "version", "config", "source", "user")
OWN = ("node_id", "key", "role", "state")
MAX_RELAYED_SHARED = 256 * 1024
WAKE_SLICE = 200  # nodes whose deliveries go out in one turn of the reactor
# A node whose call failed (no answer, or a refusal that may pass) is dispatched again after this backoff, even
# if it sends no state message meanwhile (an idle node sends none): 5 s doubling to 5 minutes, reset by an answer.
RETRY_INITIAL, RETRY_CAP = 5.0, 300.0

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


def _shared_form(deliveries: List[dict]) -> dict:
    """``{"shared": {...}, "each": [[node_id, key, role, state], ...]}`` for deliveries that differ only in OWN
    (one deployment's, made together), else nothing: the other backends then read them."""
    if not deliveries:
        return {}
    shared = {field: deliveries[0].get(field) for field in SHARED}
    if any(d.get(field) != shared[field] for d in deliveries for field in SHARED):
        return {}
    if len(json.dumps(shared)) > MAX_RELAYED_SHARED:
        return {}
    return {"shared": shared, "each": [[d.get(field) for field in OWN] for d in deliveries]}


def _from_shared_form(message: dict, node_ids: Set[str]) -> Optional[List[dict]]:
    """The deliveries of a relayed wake for ``node_ids``, as IFleetStore.pending_deliveries gives them; None when
    the message carries none or any part of it is malformed (they are read from the database instead)."""
    shared, each = message.get("shared"), message.get("each")
    if not isinstance(shared, dict) or not isinstance(each, list) or set(shared) != set(SHARED):
        return None
    if not all(value is None or isinstance(value, dict if field in ("config", "source") else str)
               for field, value in shared.items()):
        return None
    out = []
    for entry in each:
        if not (isinstance(entry, list) and len(entry) == len(OWN) and all(isinstance(v, str) for v in entry)):
            return None
        delivery = dict(shared, **dict(zip(OWN, entry)))
        if delivery["state"] != "pending" or not is_node_id(delivery["node_id"]):
            return None
        if delivery["node_id"] in node_ids:
            out.append(delivery)
    return out


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
    the ControllerSession) and ``base_url`` are set once they exist; ``backends``: who owns which node."""

    def __init__(self, store, reactor, caller=None, base_url: Callable[[], str] = lambda: "",
                 retry_delay: Callable[[int], float] = lambda attempt: backoff(attempt, RETRY_INITIAL,
                                                                               cap=RETRY_CAP)):
        self.store = store
        self.caller = caller
        self.base_url = base_url  # what nodes reach this backend's HTTP API at (its archives)
        self.events = EventHub()
        self.node_events = EventHub()  # by node id: presence and reported state, once stored (/ws/nodes)
        self.telemetry: Dict[str, dict] = {}
        self._reactor = reactor
        self.backends = Backends()
        self._sessions: Dict[int, str] = {}  # session id -> node id
        self._nodes: Dict[str, Set[int]] = {}  # node id -> its session ids (a reconnect may overlap the old one)
        self._chutes: Dict[str, Dict[str, str]] = {}  # node id -> {chute: version} as last reported
        self._deliveries: Dict[str, Dict[str, dict]] = {}  # node id -> {key: delivery} not final
        self._loaded: Set[str] = set()  # nodes whose deliveries in memory are all there are (wake keeps them so)
        self._busy: Set[str] = set()  # nodes with a dispatch running
        self._again: Set[str] = set()  # nodes to dispatch once more when the running dispatch ends
        self._reported: Dict[str, list] = {}  # node id -> the commands list of its last state message
        self._sent: Set[str] = set()  # keys of deliveries this session has called their node for, not final yet
        self._relay_out: List[dict] = []  # updates for the other backends, sent together at the end of the turn
        self._relay_flush = None
        self._retry_delay = retry_delay
        self._failures: Dict[str, int] = {}  # node id -> its calls that failed in a row
        self._retries: Dict[str, object] = {}  # node id -> the delayed call that dispatches it again

    # --- presence

    def online(self) -> Set[str]:
        return set(self._nodes)

    def is_online(self, node_id: str) -> bool:
        return node_id in self._nodes

    def connected(self):
        self._loaded.clear()
        self._sessions.clear()
        self._nodes.clear()
        self._sent.clear()
        for node_id in list(self._retries):
            self._cancel_retry(node_id)
        self.backends.reset(None)

    def backends_listed(self, me, others):
        self.backends.reset(me, others)
        self._forget_others()

    def listed(self):
        return self._record(self._take_over(None))

    def backend_joined(self, session_id):
        self.backends.add(session_id)
        self._forget_others()

    def backend_left(self, session_id):
        if session_id not in self.backends or session_id == self.backends.me:  # most leaves are nodes'
            return None
        gained = [node_id for node_id in self.online() if self.backends.owner_of(node_id) == session_id]
        if self.backends.remove(session_id):
            log.info("controller backend {backend} left: this one takes over {count} of its online nodes",
                     backend=session_id, count=len(gained))
            return self._record(self._take_over(gained))

    def _forget_others(self):
        """Drop the deliveries of nodes another backend owns now: if they come back, they are read again."""
        for node_id in [n for n in self._deliveries if not self.backends.owns(n)]:
            del self._deliveries[node_id]
            self._loaded.discard(node_id)
            self._reported.pop(node_id, None)

    @defer.inlineCallbacks
    def _take_over(self, gained: Optional[List[str]]):
        """Look after the nodes this backend has come to own: ``gained`` (None: every node, at its join). Their
        presence in the database is made true (the last owner may have gone before writing it, or the controller
        was down while nodes left), then their unfinished deliveries are read and sent."""
        marked = set((yield self.store.online_nodes()) or ())
        for node_id in marked:
            if not self.is_online(node_id) and self.backends.owns(node_id):
                self._offline(node_id)
        mine = [n for n in (self.online() if gained is None else gained) if self.backends.owns(n)]
        for node_id in mine:
            if node_id not in marked:
                self._record(self._seen(node_id, True, None))
        yield self.wake(mine)

    def node_joined(self, session_id, node_id):
        was_online = self.is_online(node_id)
        self._sessions[session_id] = node_id
        self._nodes.setdefault(node_id, set()).add(session_id)
        if not was_online and self.backends.owns(node_id):
            log.info("node {node} is online", node=node_id)
            self._record(self._seen(node_id, True, None))

    def node_left(self, session_id):
        node_id = self._sessions.pop(session_id, None)
        if node_id is None:
            return
        self._nodes[node_id].discard(session_id)
        if not self._nodes[node_id]:
            del self._nodes[node_id]
            self._chutes.pop(node_id, None)
            self._cancel_retry(node_id)  # its return sends its state message, which dispatches it
            if self.backends.owns(node_id):
                self._offline(node_id)

    def _offline(self, node_id):
        log.info("node {node} is offline", node=node_id)
        self._record(self._seen(node_id, False, None))

    def _seen(self, node_id, online: bool, state) -> defer.Deferred:
        """Store a node's presence (and state), then tell the listeners of that node, here and on the other
        backends. (Plain callbacks, like the rest of a delivery's path: a thousand of them at once.)"""
        now = self._reactor.seconds()

        def written(_):
            update = {"node_id": node_id, "online": online, "time": now}
            self.node_events.emit(node_id, update)
            self._relay({"node": node_id, "update": update})
        return defer.maybeDeferred(self.store.node_seen, node_id, online, now, state).addCallback(written)

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
        if not self.backends.owns(node_id):
            return
        self._reported[node_id] = state["commands"]
        self._record(self._seen(node_id, True, state))  # dispatch does not wait for the write
        yield self._dispatch(node_id)

    @defer.inlineCallbacks
    def _change(self, node_id, event):
        key = _text(event.get("key"))
        if key is None or not self.backends.owns(node_id):
            return
        if node_id not in self._deliveries:  # the first event since the controller started
            yield self._load(node_id)
        delivery = self._deliveries.get(node_id, {}).get(key)
        if delivery is not None:
            yield self._advance(node_id, delivery, _text(event.get("state")), _int(event.get("change_id")),
                                _message(event.get("message")))

    # --- the dispatcher

    def wake(self, node_ids: Iterable[str], deliveries: Optional[List[dict]] = None) -> defer.Deferred:
        """Send the pending deliveries of those nodes that are online; fires when they have been tried here (the
        nodes other backends own are woken there). ``deliveries``: the ones just created for them (as
        IFleetStore.pending_deliveries gives them), which spares reading them; without it they are read again,
        in one query."""
        node_ids = set(node_ids)
        others = sorted(n for n in node_ids if not self.backends.owns(n))
        fresh = {d.get("node_id"): d for d in deliveries or ()}
        for start in range(0, len(others), RELAY_WAKE):
            chunk = others[start:start + RELAY_WAKE]
            self.caller.relay({"wake": chunk, **_shared_form([fresh[n] for n in chunk if n in fresh])})
        mine = node_ids.difference(others)
        online = [n for n in mine if self.is_online(n)]
        if deliveries is None:
            self._loaded -= mine  # an offline one's are read when it comes back
            loaded = self._load_many(online)
        else:
            for delivery in deliveries:
                if delivery.get("node_id") in self._loaded:
                    self._deliveries[delivery["node_id"]].setdefault(delivery["key"], dict(delivery))
            loaded = self._load_many([n for n in online if n not in self._loaded])  # in one query, not one each
        return loaded.addCallback(lambda _: self._dispatch_all(online))

    def _dispatch_all(self, node_ids: List[str]) -> defer.Deferred:
        """Start the nodes' dispatches a slice per turn of the reactor, so that the first calls leave (and their
        nodes start) while the later ones are made; fires when all have been tried."""
        started, finished = [], defer.Deferred()

        def start(first):
            for node_id in node_ids[first:first + WAKE_SLICE]:
                started.append(self._record(self._dispatch(node_id)))
            if first + WAKE_SLICE < len(node_ids):
                self._reactor.callLater(0, start, first + WAKE_SLICE)
            else:
                defer.gatherResults(started).addBoth(lambda _: finished.callback(None))
        start(0)
        return finished

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
                pending = [d for d in self._deliveries.get(node_id, {}).values() if self._unsent(d)]
                if pending and node_id not in self._chutes:
                    yield self._ask_state(node_id)
                    if node_id not in self._chutes:  # its state message brings it back here
                        return
                for delivery in pending:
                    if not self._mine(node_id):
                        return
                    if self._unsent(delivery):
                        yield self._send(node_id, delivery)
                if node_id not in self._again or not self._mine(node_id):
                    return
        finally:
            self._busy.discard(node_id)

    def _mine(self, node_id) -> bool:
        return self.is_online(node_id) and self.backends.owns(node_id)

    def _unsent(self, delivery) -> bool:
        """Pending, or sent by a backend that is gone (or by this one before it rejoined)."""
        state = delivery.get("state")
        return state == "pending" or (state in UNFINISHED and delivery["key"] not in self._sent)

    @defer.inlineCallbacks
    def _load(self, node_id):
        self._merge(node_id, (yield self.store.pending_deliveries(node_id)))

    @defer.inlineCallbacks
    def _load_many(self, node_ids: List[str]):
        if not node_ids:
            return
        found: Dict[str, List[dict]] = {node_id: [] for node_id in node_ids}
        for delivery in (yield self.store.pending_deliveries_of(node_ids)) or ():
            if delivery.get("node_id") in found:
                found[delivery["node_id"]].append(delivery)
        for node_id, deliveries in found.items():
            self._merge(node_id, deliveries)

    def _merge(self, node_id, deliveries):
        """The node's deliveries as read. One this backend already holds stays the same object (a call in flight
        moves it on), taken forward to the read's state if that is further."""
        known = self._deliveries.get(node_id, {})
        fresh = {}
        for delivery in deliveries or ():
            if delivery.get("node_id") != node_id:
                continue
            current = known.get(delivery["key"])
            if current is not None:
                if RANK.get(delivery.get("state"), 0) > RANK.get(current.get("state"), 0):
                    current["state"] = delivery["state"]
                delivery = current
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
        source = delivery.get("source")
        if source:
            kwargs["source"] = source
            if isinstance(source.get("path"), str):  # the archive on this backend: the one that is here to send it
                kwargs["source"] = {"url": self.base_url() + source["path"], "token": source.get("token"),
                                    "sha256": source.get("sha256")}
        else:
            kwargs["config"] = delivery.get("config")
        return (protocol.UPDATE_CHUTE if installed is not None else protocol.INSTALL_CHUTE), kwargs

    def _send(self, node_id, delivery) -> defer.Deferred:
        """Call the node for a delivery; fires once its answer is taken in (never with a failure: a delivery
        whose call fails stays pending, to be sent again)."""
        try:
            call = self.command(node_id, delivery)
        except KeyError:
            self._advance(node_id, delivery, "failed", None, f"unknown command {delivery.get('command')!r}")
            return defer.succeed(None)
        if call is None:
            self._advance(node_id, delivery, "succeeded", None,
                          f"version {delivery.get('version')} is already installed")
            return defer.succeed(None)
        procedure, kwargs = call
        self._sent.add(delivery["key"])
        d = self.caller.call_node(node_id, procedure, on_progress=lambda message: self._record(
            self._progressed(node_id, delivery, message)), **kwargs)
        return d.addCallbacks(self._answered, self._unanswered, (node_id, delivery), None, (node_id, delivery))

    def _unanswered(self, failure, node_id, delivery):
        reason = refusal(failure.value)
        if reason is not None:
            self._failures.pop(node_id, None)
            self._advance(node_id, delivery, "failed", None, _message(f"the node refused it: {reason}"))
            return
        attempt = self._failures.get(node_id, 0)
        self._failures[node_id] = attempt + 1
        if node_id not in self._retries:
            self._retries[node_id] = self._reactor.callLater(self._retry_delay(attempt), self._retry, node_id)
        log.info("delivery {key} to node {node} stays pending, sent again in {delay:.0f} s or on its next state "
                 "message: {error}", key=delivery["key"], node=node_id, error=failure.value,
                 delay=self._retries[node_id].getTime() - self._reactor.seconds())

    def _retry(self, node_id):
        self._retries.pop(node_id, None)
        if self._mine(node_id):
            self._record(self._dispatch(node_id))

    def _cancel_retry(self, node_id):
        call = self._retries.pop(node_id, None)
        if call is not None and call.active():
            call.cancel()
        self._failures.pop(node_id, None)

    def _answered(self, answer, node_id, delivery):
        self._failures.pop(node_id, None)
        answer = answer if isinstance(answer, dict) else {}
        duplicate = "the node had it already" if answer.get("duplicate") is True else None
        state = _text(answer.get("state"))
        if state not in protocol.FINISHED_STATES:  # answered when queued: its events and state messages follow
            self._advance(node_id, delivery, "sent", _int(answer.get("change_id")), duplicate)
            return
        self._advance(node_id, delivery, state, _int(answer.get("change_id")),
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
        """Move a delivery forward (never back), write it, and tell the deployment's listeners, here and on the
        other backends: of its progress at once, of its end once written (a client that saw the deployment end
        then reads it ended)."""
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
            self._sent.discard(delivery["key"])
        update = {"node_id": node_id, "key": delivery["key"], "state": state, "message": message, "time": now}
        written = None
        if state != current or new_change:
            written = self._record(self.store.update_delivery(delivery["key"], state, now, change_id=change_id,
                                                              message=message))
        if state in FINAL and written is not None:
            written.addCallback(lambda _: self._tell(delivery.get("deployment_id"), update))
        else:
            self._tell(delivery.get("deployment_id"), update)

    def _tell(self, deployment_id, update: dict) -> None:
        self.events.emit(deployment_id, update)
        if deployment_id:
            self._relay({"deployment": deployment_id, "update": update})

    # --- the other backends

    def _relay(self, update: dict) -> None:
        """Tell the other backends' listeners, together with the other updates of this turn of the reactor."""
        if self.backends.alone:
            return
        self._relay_out.append(update)
        if self._relay_flush is None:
            self._relay_flush = self._reactor.callLater(0, self._flush_relay)

    def _flush_relay(self):
        self._relay_flush = None
        out, self._relay_out = self._relay_out, []
        for start in range(0, len(out), RELAY_EVENTS):
            self.caller.relay({"updates": out[start:start + RELAY_EVENTS]})

    def relayed(self, message):
        """Another backend's wake (only the nodes this one owns: views that differ for a moment must not bounce
        it back), with the deliveries it just created when it could carry them (then they are not read again),
        and updates (for the listeners here)."""
        wake = message.get("wake")
        if isinstance(wake, list):
            mine = [n for n in wake if is_node_id(n) and self.backends.owns(n)]
            self._record(self.wake(mine, _from_shared_form(message, set(mine))))
        updates = message.get("updates")
        for update in updates if isinstance(updates, list) else ():
            if not isinstance(update, dict) or not isinstance(update.get("update"), dict):
                continue
            if isinstance(update.get("deployment"), str):
                self.events.emit(update["deployment"], update["update"])
            elif is_node_id(update.get("node")):
                self.node_events.emit(update["node"], update["update"])

    @staticmethod
    def _record(d):
        """Log what fails in work nobody waits for (a store error must not end the session's handlers)."""
        if isinstance(d, defer.Deferred):
            d.addErrback(lambda f: log.failure("fleet bookkeeping failed", f))
        return d
