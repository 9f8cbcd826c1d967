"""The controller's WAMP backend: one autobahn Component joined to the router as the controller.

On every join it serves the router's dynamic authenticator (WAMP-CRA for nodes) and authorizer (a node registers
and publishes under its own prefix only), and subscribes to what nodes publish and to session presence. What it
hears goes to an observer (the Fleet); ``call_node`` is how the Fleet reaches a node. Several backends may join
one router: the authenticator and authorizer are shared registrations, every backend hears every node, the
observer learns of the other backends' sessions (pdserver.controller.ownership), and ``relay`` reaches them.

crossbar 26.10 facts this module is built on (router/auth/wampcra.py, router/router.py):
- With ``salt``/``iterations``/``keylen`` in the authenticator's answer crossbar derives the key from ``secret``
  once more, so the answer is ``{"secret": <the key the node signs with>, "role": "node"}`` and no salt.
- Authorizations are cached per (realm, authrole, uri, action), not per session: once node A's publish on its
  topic is cached, node B may publish there too. So only allowed publishes are cached (every node publishes on
  every change: the authorizer would cost the router a third of its time), with the publisher disclosed, and the
  controller drops every event whose publisher is not the node of its topic. A denied publish is not cached (it
  would deny the topic's own node); register is never cached (a procedure must be its node's); call and
  subscribe are denied to every node alike.
- A PUBLISH may carry ``forward_for`` (meant for router-to-router links), and crossbar then discloses its first
  entry as the publisher: an event with a ``forward_for`` chain is dropped (nodes publish directly).
"""
from typing import Optional

from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, RegisterOptions, SubscribeOptions
from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from pdserver.cloud import protocol
from pdserver.logs import plain_autobahn_text

NOT_AUTHORIZED = "wamp.error.not_authorized"
AUTH_ERRORS = (NOT_AUTHORIZED, "wamp.error.authentication_failed", "wamp.error.no_such_principal",
               "wamp.error.no_such_role", "wamp.error.no_such_realm", "wamp.error.no_auth_method")
CALL_TIMEOUT = 120.0  # seconds: a command that downloads its chute archive answers only after the download

log = Logger()
plain_autobahn_text()


class INodeCaller(Interface):
    """How the fleet reaches nodes and the other controller backends."""

    def call_node(node_id, procedure, on_progress=None, **kwargs):
        """Call ``procedure`` (a suffix in protocol.PROCEDURES) on node ``node_id``; a Deferred of its answer.
        With ``on_progress`` (a callable of one message) the call asks for progressive results (a command is then
        answered when its change ends, protocol.py)."""

    def relay(message):
        """Publish ``message`` (a dict) to the other controller backends (their IFleetObserver.relayed); nothing
        when this backend is not joined."""


class IFleetObserver(Interface):
    """What the WAMP backend reports; the node id always comes from the router (authid) or the topic."""

    def connected():
        """The controller (re)joined: presence is rebuilt from here on (joins, then the router's session list)."""

    def listed():
        """Every node session the router had when the controller joined has been reported with node_joined."""

    def node_joined(session_id, node_id):
        """A node's session joined."""

    def node_left(session_id):
        """A session left (maybe not a node's)."""

    def node_published(node_id, topic, payload):
        """Node ``node_id`` published ``payload`` on its ``topic`` (a suffix in protocol.TOPICS)."""

    def backends_listed(me, others):
        """This backend's router session id and those of the other controller backends the router has now; comes
        after connected() and before the nodes are listed."""

    def backend_joined(session_id):
        """Another controller backend joined."""

    def backend_left(session_id):
        """A session left (maybe not a backend's)."""

    def relayed(message):
        """Another backend's INodeCaller.relay (a dict; only controller sessions may publish it)."""


def is_node_id(value) -> bool:
    return isinstance(value, str) and protocol.NODE_ID.fullmatch(value) is not None


@defer.inlineCallbacks
def authenticate(store, realm, authid, details):
    """The dynamic WAMP-CRA authenticator: the principal of a known node, ApplicationError for anything else."""
    if realm != protocol.REALM or not is_node_id(authid):
        raise ApplicationError(NOT_AUTHORIZED, "not a node id")
    record = yield store.node_auth(authid)
    if not record or not isinstance(record.get("key"), str) or not record["key"]:
        raise ApplicationError(NOT_AUTHORIZED, "unknown node")
    return {"secret": record["key"], "role": protocol.NODE_ROLE}


def authorize(details, uri, action, options=None) -> dict:
    """The dynamic authorizer of the node role: its own prefix, register and publish, nothing else. An allowed
    publish is cached and discloses its publisher (see the module's docstring); nothing else is cached."""
    allow = False
    if isinstance(details, dict) and details.get("authrole") == protocol.NODE_ROLE:
        authid = details.get("authid")
        allow = is_node_id(authid) and isinstance(uri, str) and protocol.node_may(authid, uri, action)
    if allow and action == "publish":
        return {"allow": True, "disclose": True, "cache": True}
    return {"allow": allow, "disclose": False, "cache": False}


def publisher_is(details, node_id: str) -> bool:
    """Whether an event was published by ``node_id`` itself: the router's disclosure, no forwarding chain."""
    return (getattr(details, "publisher_authid", None) == node_id
            and getattr(details, "publisher_authrole", None) == protocol.NODE_ROLE
            and not getattr(details, "forward_for", None))


def refusal(error) -> Optional[str]:
    """Why a node refused a command for good: the message of its error (protocol.ERROR_PREFIX), unless the error
    is one that may pass (protocol.PASSING_ERRORS); None for those and for any other failure of the call (a
    timeout, a lost session, the router's own errors such as a procedure the node has not registered yet)."""
    if not isinstance(error, ApplicationError) or not isinstance(error.error, str) \
            or not error.error.startswith(protocol.ERROR_PREFIX):
        return None
    code = error.error[len(protocol.ERROR_PREFIX):]
    if code in protocol.PASSING_ERRORS:
        return None
    message = error.kwargs.get("message") if isinstance(error.kwargs, dict) else None
    return message if isinstance(message, str) and message else code


def is_auth_error(error) -> bool:
    """Authentication and authorization errors never heal by retrying: the ticket or the config is wrong."""
    return isinstance(error, ApplicationError) and error.error in AUTH_ERRORS


@implementer(INodeCaller)
class ControllerSession(Service):
    """The controller's WAMP session as a service; it rejoins (1 s growing to 60 s, with jitter) until stopped or
    refused: ``ended`` fires when it is over for good, with the error that ended it (the router refused the ticket)
    or None (stopped)."""

    def __init__(self, reactor, router_url: str, ticket: str, store, observer: IFleetObserver,
                 initial_retry_delay=1.0, max_retry_delay=60.0, retry_delay_growth=1.5, retry_delay_jitter=0.1,
                 call_timeout=CALL_TIMEOUT):
        self._reactor = reactor
        self.router_url = router_url
        self._ticket = ticket
        self._store = store
        self._observer = observer
        self._retry = {"max_retries": -1, "initial_retry_delay": initial_retry_delay,
                       "max_retry_delay": max_retry_delay, "retry_delay_growth": retry_delay_growth,
                       "retry_delay_jitter": retry_delay_jitter}
        self._call_timeout = call_timeout
        self._component: Optional[Component] = None
        self._done: Optional[defer.Deferred] = None
        self.session = None
        self.ended = defer.Deferred()
        self.last_error: Optional[str] = None
        self.failed_attempts = 0  # connection attempts that failed since the last join
        self.impostors = set()  # authids of node sessions that published on another node's topic (logged once)
        self._left_since_join = None  # sessions that left while the router's session list was being read
        self._authenticator = None  # the id of the shared registration of protocol.AUTHENTICATE: its callees
        # are the controller's backends

    def _make_component(self) -> Component:
        transport = {"type": "websocket", "url": self.router_url, "serializers": ["msgpack", "json"]}
        transport.update(self._retry)
        component = Component(transports=[transport], realm=protocol.REALM, is_fatal=self._is_fatal,
                              authentication={"ticket": {"authid": protocol.CONTROLLER_AUTHID,
                                                         "ticket": self._ticket}})
        component.on("join", self._joined)
        component.on("leave", self._left)
        return component

    def _is_fatal(self, error) -> bool:
        self.last_error = str(error)
        self.failed_attempts += 1
        return is_auth_error(error)

    def _ended(self, result):
        if self.running and self.last_error:
            log.error("the controller's WAMP session gave up: {error}", error=self.last_error)
        if not self.ended.called:
            self.ended.callback(None if not self.running else self.last_error)

    def startService(self):
        super().startService()
        self._component = self._make_component()
        self._done = self._component.start(self._reactor)
        self._done.addBoth(self._ended)

    def stopService(self):
        """Fires when the session has left and the component is done."""
        super().stopService()
        component, done = self._component, self._done
        self._component = self._done = None
        if component is None:
            return defer.succeed(None)
        stopping = defer.maybeDeferred(component.stop)
        stopping.addErrback(lambda f: None)
        return defer.gatherResults([stopping, done]).addCallback(lambda _: None)

    @property
    def joined(self) -> bool:
        return self.session is not None and self.session.is_attached()

    @defer.inlineCallbacks
    def _joined(self, session, details):
        if not self.running:
            session.leave()
            return
        yield session.register(lambda realm, authid, details: authenticate(self._store, realm, authid, details),
                               protocol.AUTHENTICATE, options=RegisterOptions(invoke="roundrobin"))
        yield session.register(authorize, protocol.AUTHORIZE, options=RegisterOptions(invoke="roundrobin"))
        yield session.subscribe(self._on_node_event, protocol.NODE_PREFIX,
                                options=SubscribeOptions(match="prefix", details_arg="details"))
        yield session.subscribe(self._on_relay, protocol.RELAY)
        self._observer.connected()
        self._left_since_join = set()
        yield session.subscribe(self._on_session_join, "wamp.session.on_join")
        yield session.subscribe(self._on_session_leave, "wamp.session.on_leave")
        yield session.subscribe(self._on_register, "wamp.registration.on_register")
        yield session.subscribe(self._on_unregister, "wamp.registration.on_unregister")
        self.session = session
        self.last_error, self.failed_attempts = None, 0
        log.info("the controller joined the WAMP router at {url}", url=self.router_url)
        # The backends are the callees of the shared authenticator: other sessions with the controller's ticket
        # (a readiness probe, a tool) are not.
        self._authenticator = yield session.call("wamp.registration.lookup", protocol.AUTHENTICATE)
        backends = yield session.call("wamp.registration.list_callees", self._authenticator)
        self._observer.backends_listed(session.session_id, [b for b in backends or ()
                                                            if b != session.session_id
                                                            and b not in self._left_since_join])
        ids = yield session.call("wamp.session.list", [protocol.NODE_ROLE])
        for session_id in ids or ():
            if session_id in self._left_since_join:
                continue
            try:
                info = yield session.call("wamp.session.get", session_id)
            except ApplicationError:  # it left meanwhile
                continue
            self._on_session_join(info)
        self._left_since_join = None
        self._observer.listed()

    def _left(self, session, details):
        if self.session is session:
            self.session = None
        log.info("the controller left the WAMP router: {reason}", reason=getattr(details, "reason", details))

    def _on_session_join(self, info):
        if isinstance(info, dict) and info.get("authrole") == protocol.NODE_ROLE and is_node_id(info.get("authid")):
            self._observer.node_joined(info.get("session"), info["authid"])

    def _on_register(self, session_id, registration_id, *args, **kwargs):
        if registration_id == self._authenticator and self.session is not None \
                and session_id != self.session.session_id:
            self._observer.backend_joined(session_id)

    def _on_unregister(self, session_id, registration_id, *args, **kwargs):
        if registration_id == self._authenticator:
            self._observer.backend_left(session_id)

    def _on_session_leave(self, session_id, *args, **kwargs):
        if self._left_since_join is not None:
            self._left_since_join.add(session_id)
        self._observer.node_left(session_id)
        self._observer.backend_left(session_id)

    def _on_relay(self, message):
        if isinstance(message, dict):
            self._observer.relayed(message)

    def relay(self, message: dict) -> None:
        if self.joined:
            self.session.publish(protocol.RELAY, message)

    def _on_node_event(self, *args, details=None, **kwargs):
        parsed = protocol.parse_node_uri(getattr(details, "topic", None) or "")
        if parsed is None or parsed[1] not in protocol.TOPICS:
            return
        if not publisher_is(details, parsed[0]):
            self._impostor(details, parsed[0])
            return
        payload = args[0] if len(args) == 1 and not kwargs else kwargs or None
        self._observer.node_published(parsed[0], parsed[1], payload)

    def _impostor(self, details, node_id: str) -> None:
        publisher = (getattr(details, "publisher_authid", None), bool(getattr(details, "forward_for", None)))
        if publisher not in self.impostors:
            self.impostors.add(publisher)
            log.warn("dropped an event on node {node}'s topic published by {publisher!r} (forwarded: {forwarded}); "
                     "further ones from it are dropped silently", node=node_id, publisher=publisher[0],
                     forwarded=publisher[1])

    def call_node(self, node_id: str, procedure: str, on_progress=None, **kwargs) -> defer.Deferred:
        """A call times out after ``call_timeout`` seconds; a progressive one after that long without progress (its
        change may run longer), and its cancel tells the node, which then publishes the change's end instead."""
        if not is_node_id(node_id) or procedure not in protocol.PROCEDURES:
            return defer.fail(ValueError(f"no procedure {procedure!r} on node {node_id!r}"))
        if not self.joined:
            return defer.fail(ApplicationError(protocol.ERROR_PREFIX + "service_unavailable",
                                               message="the controller is not connected to the router"))
        uri = protocol.node_uri(node_id, procedure)
        if on_progress is None:
            return self.session.call(uri, options=CallOptions(), **kwargs).addTimeout(self._call_timeout,
                                                                                     self._reactor)
        timer = None

        def progressed(*args, **kw):
            if timer is not None and timer.active():
                timer.reset(self._call_timeout)
            on_progress(args[0] if len(args) == 1 and not kw else None)

        d = self.session.call(uri, options=CallOptions(on_progress=progressed), **kwargs)
        timer = self._reactor.callLater(self._call_timeout, d.cancel)

        def done(result):
            if timer.active():
                timer.cancel()
            return result
        return d.addBoth(done)
