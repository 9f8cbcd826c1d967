"""The controller's WAMP side on a real crossbar with real autobahn clients as nodes: the router's life, WAMP-CRA
through the controller's authenticator, each node confined to its prefix by the authorizer, presence, and
deliveries brought to nodes and followed to their end.

One router and one controller session serve the whole module (crossbar takes seconds to start); each test makes
its own nodes in the shared in-memory store and disconnects them at teardown.
"""
import gc
import os
import secrets
import signal
import subprocess
from pathlib import Path

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.auth import AuthWampCra
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig, PublishOptions
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ClientEndpoint

from pdserver.cloud import protocol
from pdserver.controller.fleet import Fleet
from pdserver.controller.router import EmbeddedRouter, crossbar_path, probe
from pdserver.controller.router_worker import paradrop_router
from pdserver.controller.wamp import ControllerSession
from tests.conftest import free_port
from tests.integration import cloud_router
from tests.fleet_store import MemoryFleetStore

WAIT = 15.0


def wait_for(predicate, timeout=WAIT, message="condition"):
    return cloud_router.wait_for(predicate, timeout, message)


def process_tree(pid: int) -> set:
    """``pid`` and its descendants that are alive (not zombies); crossbar renames its processes, so they are
    found by parentage, not by command line."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2:].split()
            if fields[0] not in ("Z", "X"):
                parents[int(entry.name)] = int(fields[1])
    tree = {pid} if pid in parents else set()
    grew = True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return tree


class Client(ApplicationSession):
    """A node (or an impostor): joins with the auth method and secret it is given."""

    def onConnect(self):
        extra = self.config.extra
        self.join(self.config.realm, authmethods=[extra["method"]], authid=extra["authid"])

    def onChallenge(self, challenge):
        extra = self.config.extra
        if challenge.method == "wampcra":
            return AuthWampCra(authid=extra["authid"], secret=extra["secret"]).on_challenge(self, challenge)
        return extra["secret"]

    def onJoin(self, details):
        self.details = details
        self.config.extra["joined"].callback(self)

    def onLeave(self, details):
        joined = self.config.extra["joined"]
        if not joined.called:
            joined.errback(ApplicationError(details.reason, details.message))
        self.disconnect()

    def onDisconnect(self):
        joined = self.config.extra["joined"]
        if not joined.called:
            joined.errback(ApplicationError("disconnected", "the connection closed before a join"))
        self.config.extra["gone"].callback(None)


class FakeNode:
    """Enough of a node: its procedures (idempotent by key: a key it has seen answers the same change id with
    duplicate true and runs nothing), its state and change events."""

    def __init__(self, session, node_id):
        self.session = session
        self.node_id = node_id
        self.calls = []
        self.ran = []
        self.changes = {}
        self.drop_during_next_call = False

    async def register(self):
        for procedure in protocol.PROCEDURES:
            await self.session.register(self._handler(procedure), protocol.node_uri(self.node_id, procedure))

    def _handler(self, procedure):
        def handle(**kwargs):
            self.calls.append((procedure, kwargs))
            if procedure == protocol.GET_STATE:
                return self.state()
            key = kwargs["key"]
            duplicate = key in self.changes
            if not duplicate:
                self.changes[key] = 100 + len(self.changes)
                self.ran.append((procedure, key))
            if self.drop_during_next_call:
                self.drop_during_next_call = False
                self.session._transport.transport.abortConnection()
            return {"change_id": self.changes[key], "duplicate": duplicate}
        return handle

    def state(self, chutes=(), commands=()):
        return {"node_id": self.node_id, "version": "test", "time": reactor.seconds(),
                "chutes": [{"name": n, "version": v, "state": "running"} for n, v in chutes],
                "commands": list(commands)}

    def publish(self, topic, payload):
        return self.session.publish(protocol.node_uri(self.node_id, topic), payload,
                                    options=PublishOptions(acknowledge=True))


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    if not os.path.exists(crossbar_path()):
        pytest.fail(f"crossbar is not installed at {crossbar_path()} (tools/setup-crossbar or PARADROP_CROSSBAR)")
    store = MemoryFleetStore()
    ticket = secrets.token_urlsafe(24)
    router = EmbeddedRouter(reactor, tmp_path_factory.mktemp("controller"), "127.0.0.1", free_port(), ticket)
    fleet = Fleet(store, reactor)
    session = ControllerSession(reactor, router.url, ticket, store, fleet, initial_retry_delay=0.2,
                                max_retry_delay=1.0, call_timeout=10.0)
    fleet.caller = session
    router.startService()
    try:
        pytest_twisted.blockon(router.when_ready(60))
        session.startService()
        pytest_twisted.blockon(defer.ensureDeferred(wait_for(lambda: session.joined, 30, "the controller")))
        yield type("Controller", (), {"store": store, "router": router, "fleet": fleet, "session": session})
    finally:
        pytest_twisted.blockon(session.stopService())
        pytest_twisted.blockon(router.stopService())


@pytest.fixture
def connect(controller):
    """connect(authid, secret, method="wampcra") -> the joined Client, or the join's ApplicationError."""
    clients = []

    def start(authid, secret, method="wampcra"):
        extra = {"authid": authid, "secret": secret, "method": method, "joined": defer.Deferred(),
                 "gone": defer.Deferred()}
        factory = WampWebSocketClientFactory(lambda: Client(ComponentConfig(protocol.REALM, extra)),
                                             url=controller.router.url)
        clients.append(extra)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", controller.router.port, timeout=5)
        endpoint.connect(factory).addErrback(lambda f: extra["joined"].called or extra["joined"].errback(f))
        return extra["joined"]

    async def join_node(node_id, secret):
        session = await start(node_id, secret)
        node = FakeNode(session, node_id)
        await node.register()
        return node
    start.node = join_node
    yield start
    for extra in clients:
        joined = extra["joined"]
        if joined.called and isinstance(joined.result, Client):
            session = joined.result
            if session.is_attached():
                session.leave()
            elif session._transport is not None:
                session.disconnect()
            pytest_twisted.blockon(extra["gone"])
        elif joined.called:
            joined.addErrback(lambda _: None)


async def refused(deferred) -> str:
    with pytest.raises(ApplicationError) as raised:
        await deferred
    return raised.value.error


@pytest_twisted.ensureDeferred
async def test_a_node_with_its_secret_joins_and_the_controller_reaches_it(controller, connect):
    node_id, secret = controller.store.add_node()
    node = await connect.node(node_id, secret)
    assert (node.session.details.authid, node.session.details.authrole) == (node_id, protocol.NODE_ROLE)
    await wait_for(lambda: controller.fleet.is_online(node_id), message="the node online")
    answer = await controller.session.call_node(node_id, protocol.GET_STATE)
    assert answer["node_id"] == node_id and node.calls == [(protocol.GET_STATE, {})]


@pytest_twisted.ensureDeferred
async def test_wrong_secret_unknown_id_and_other_methods_are_refused(controller, connect):
    node_id, secret = controller.store.add_node()
    assert await refused(connect(node_id, secret + "x")) == "wamp.error.not_authorized"
    assert await refused(connect(secrets.token_hex(8), secret)) == "wamp.error.not_authorized"
    assert await refused(connect("controller", secret)) == "wamp.error.not_authorized"
    assert await refused(connect(node_id, secret, method="ticket")) == "wamp.error.not_authorized"
    assert await refused(connect(protocol.CONTROLLER_AUTHID, secret, method="ticket")) == \
        "wamp.error.not_authorized"
    assert await refused(connect(node_id, secret, method="anonymous")) == "wamp.error.no_auth_method"
    assert not controller.fleet.is_online(node_id)


@pytest_twisted.ensureDeferred
async def test_a_node_is_confined_to_its_own_prefix(controller, connect):
    a_id, a_secret = controller.store.add_node()
    b_id, b_secret = controller.store.add_node()
    a = await connect.node(a_id, a_secret)
    b = await connect(b_id, b_secret)
    uri_a = protocol.node_uri(a_id, protocol.STATE)
    assert await refused(b.publish(uri_a, {"node_id": a_id, "chutes": []},
                                   options=PublishOptions(acknowledge=True))) == "wamp.error.not_authorized"
    await a.publish(protocol.STATE, a.state())  # B's refusal was not cached; A's permission is now
    await wait_for(lambda: controller.store.last_seen(a_id) and controller.store.last_seen(a_id)[3],
                   message="A's state")
    seen_before = len(controller.store.seen)
    assert await refused(b.register(lambda: None, protocol.node_uri(a_id, "spare"))) == "wamp.error.not_authorized"
    assert await refused(b.call(protocol.node_uri(a_id, protocol.GET_STATE))) == "wamp.error.not_authorized"
    assert await refused(b.call(protocol.node_uri(b_id, protocol.GET_STATE))) == "wamp.error.not_authorized"
    assert await refused(b.subscribe(lambda *a: None, protocol.node_uri(b_id, protocol.STATE))) == \
        "wamp.error.not_authorized"
    assert await refused(b.call(protocol.AUTHENTICATE, protocol.REALM, a_id, {})) == "wamp.error.not_authorized"
    assert await refused(b.register(lambda *a: None, "org.paradrop.controller.spare")) == \
        "wamp.error.not_authorized"
    assert await refused(b.call("wamp.session.list")) == "wamp.error.not_authorized"
    # B's own prefix works, and what B claims in a payload does not make it A
    await b.register(lambda: None, protocol.node_uri(b_id, "spare"))
    await b.publish(protocol.node_uri(b_id, protocol.STATE), {"node_id": a_id, "chutes": []},
                    options=PublishOptions(acknowledge=True))
    await wait_for(lambda: controller.store.last_seen(b_id) and controller.store.last_seen(b_id)[3],
                   message="B's state")
    assert all(entry[0] == b_id for entry in controller.store.seen[seen_before:])
    assert controller.store.last_seen(b_id)[3]["node_id"] == b_id


@pytest_twisted.ensureDeferred
async def test_the_router_worker_collects_garbage_under_our_policy_and_shows_it_to_the_controller_only(
        controller, connect):
    figures = await controller.session.session.call(paradrop_router.GC_PROCEDURE)
    assert tuple(figures["thresholds"]) == paradrop_router.GC_THRESHOLDS != tuple(gc.get_threshold())
    assert len(figures["collections"]) == 3 and figures["collections"][0] > 0
    node_id, secret = controller.store.add_node()
    node = await connect(node_id, secret)
    assert await refused(node.call(paradrop_router.GC_PROCEDURE)) == "wamp.error.not_authorized"
    assert await refused(node.register(lambda: None, paradrop_router.ROUTER_PREFIX + "spare")) == \
        "wamp.error.not_authorized"
    assert controller.fleet.backends.alone  # the component is not taken for another controller backend


@pytest_twisted.ensureDeferred
async def test_a_publish_on_another_nodes_topic_that_the_router_let_through_from_its_cache_is_ignored(
        controller, connect):
    a_id, a_secret = controller.store.add_node()
    b_id, b_secret = controller.store.add_node()
    a = await connect.node(a_id, a_secret)
    delivery = controller.store.add_delivery(a_id, chute="web", version="1")
    b = await connect(b_id, b_secret)
    await a.publish(protocol.STATE, a.state(chutes=[("web", "0")]))  # the router caches A's publish on its topic
    await wait_for(lambda: controller.store.deliveries[delivery["key"]]["state"] == "sent", message="sent")
    change_id = controller.store.deliveries[delivery["key"]]["change_id"]
    running = {"change_id": change_id, "key": delivery["key"], "type": "install", "chute": "web",
               "state": "running", "time": 1.0, "message": "building"}
    await a.publish(protocol.CHANGE, running)  # and its publish on its change topic
    await wait_for(lambda: controller.store.deliveries[delivery["key"]]["state"] == "running", message="running")
    forged = dict(running, state="failed", message="forged")
    spoofed = [{"session": a.session._session_id, "authid": a_id, "authrole": protocol.NODE_ROLE}]
    seen_before = len(controller.store.seen)
    for uri, payload, forward_for in [
            (protocol.node_uri(a_id, protocol.STATE), a.state(chutes=[("evil", "1")]), None),
            (protocol.node_uri(a_id, protocol.STATE), a.state(chutes=[("evil", "2")]), spoofed),
            (protocol.node_uri(a_id, protocol.CHANGE), forged, spoofed)]:
        await b.publish(uri, payload, options=PublishOptions(acknowledge=True, forward_for=forward_for))
    await b.publish(protocol.node_uri(b_id, protocol.STATE), {"node_id": b_id, "chutes": []},
                    options=PublishOptions(acknowledge=True))  # B's own event arrives after those
    await wait_for(lambda: any(entry[0] == b_id for entry in controller.store.seen[seen_before:]),
                   message="B's state")
    assert [entry[0] for entry in controller.store.seen[seen_before:]] == [b_id]
    assert controller.store.last_seen(a_id)[3]["chutes"] == [{"name": "web", "version": "0", "state": "running"}]
    assert controller.store.deliveries[delivery["key"]]["state"] == "running"
    assert {(b_id, False), (a_id, True)} <= controller.session.impostors


@pytest_twisted.ensureDeferred
async def test_online_and_offline_are_tracked(controller, connect):
    node_id, secret = controller.store.add_node()
    node = await connect.node(node_id, secret)
    await wait_for(lambda: controller.fleet.is_online(node_id), message="online")
    node.session.leave()
    await wait_for(lambda: not controller.fleet.is_online(node_id), message="offline")
    assert [online for n, online, _, _ in controller.store.seen if n == node_id] == [True, False]


@pytest_twisted.ensureDeferred
async def test_a_pending_delivery_goes_out_on_join_and_follows_the_nodes_answer_and_events(controller, connect):
    store = controller.store
    node_id, secret = store.add_node()
    delivery = store.add_delivery(node_id, chute="web", version="2", deployment_id="dep-a", user="alice",
                                  role="admin")
    heard = []
    stop_listening = controller.fleet.events.listen("dep-a", heard.append)
    node = await connect.node(node_id, secret)
    await node.publish(protocol.STATE, node.state(chutes=[("web", "1")]))
    await wait_for(lambda: store.deliveries[delivery["key"]]["state"] == "sent", message="sent")
    assert node.calls == [(protocol.UPDATE_CHUTE, {"key": delivery["key"], "user": "alice", "role": "admin",
                                                   "config": {"name": "web", "version": "2"}})]
    change_id = store.deliveries[delivery["key"]]["change_id"]
    assert change_id == node.changes[delivery["key"]]
    for state in ("running", "succeeded"):
        await node.publish(protocol.CHANGE, {"change_id": change_id, "key": delivery["key"], "type": "update",
                                             "chute": "web", "state": state, "time": 1.0, "message": state})
    await wait_for(lambda: store.deliveries[delivery["key"]]["state"] == "succeeded", message="succeeded")
    assert store.history[delivery["key"]] == ["pending", "sent", "running", "succeeded"]
    assert [m["state"] for m in heard] == ["sent", "running", "succeeded"]
    stop_listening()


@pytest_twisted.ensureDeferred
async def test_a_delivery_whose_answer_was_lost_is_sent_again_with_its_key_and_runs_once(controller, connect):
    store = controller.store
    node_id, secret = store.add_node()
    delivery = store.add_delivery(node_id, chute="web", version="1")
    node = await connect.node(node_id, secret)
    node.drop_during_next_call = True  # it runs the command, then its connection dies before the answer
    await node.publish(protocol.STATE, node.state())
    await wait_for(lambda: not controller.fleet.is_online(node_id), message="the node gone")
    assert node.ran == [(protocol.INSTALL_CHUTE, delivery["key"])]
    assert store.deliveries[delivery["key"]]["state"] == "pending"

    again = await connect.node(node_id, secret)
    again.changes, again.ran = node.changes, node.ran  # the node's idempotency table outlives its session
    await again.publish(protocol.STATE, again.state())  # its commands list no longer reaches back that far
    await wait_for(lambda: store.deliveries[delivery["key"]]["state"] == "sent", message="sent again")
    assert again.calls == [(protocol.INSTALL_CHUTE, node.calls[0][1])]
    assert node.ran == [(protocol.INSTALL_CHUTE, delivery["key"])]
    assert store.deliveries[delivery["key"]]["change_id"] == node.changes[delivery["key"]]
    assert store.deliveries[delivery["key"]]["message"] == "the node had it already"
    await again.publish(protocol.STATE, again.state(chutes=[("web", "1")], commands=[
        {"key": delivery["key"], "change_id": node.changes[delivery["key"]], "state": "succeeded"}]))
    await wait_for(lambda: store.deliveries[delivery["key"]]["state"] == "succeeded", message="succeeded")


@pytest_twisted.ensureDeferred
async def test_wake_sends_to_a_ready_node_and_skips_what_it_already_runs(controller, connect):
    store = controller.store
    node_id, secret = store.add_node()
    node = await connect.node(node_id, secret)
    await node.publish(protocol.STATE, node.state(chutes=[("db", "5")]))
    await wait_for(lambda: (controller.store.last_seen(node_id) or (0, 0, 0, None))[3], message="state")
    same = store.add_delivery(node_id, chute="db", version="5")
    new = store.add_delivery(node_id, chute="web", version="1")
    await controller.fleet.wake([node_id])
    assert [(p, kw["key"]) for p, kw in node.calls] == [(protocol.INSTALL_CHUTE, new["key"])]
    assert store.deliveries[same["key"]]["state"] == "succeeded"
    assert store.deliveries[new["key"]]["state"] == "sent"


@pytest_twisted.ensureDeferred
async def test_the_router_starts_and_stops_and_leaves_no_process(tmp_path):
    ticket = secrets.token_urlsafe(24)
    router = EmbeddedRouter(reactor, tmp_path, "127.0.0.1", free_port(), ticket)
    router.startService()
    try:
        assert await router.when_ready(60) == router.url
        tree = process_tree(router.status().pid)
        assert len(tree) >= 2  # the crossbar node controller and its router worker
        assert (router.cbdir / "config.json").stat().st_mode & 0o777 == 0o600
        assert not await probe(reactor, "127.0.0.1", router.port, ticket + "x")  # a wrong ticket does not join
    finally:
        await router.stopService()
    assert router.status() is None or router.status().pid is None
    assert {pid for pid in tree if process_tree(pid)} == set()
    assert not await probe(reactor, "127.0.0.1", router.port, ticket)


@pytest_twisted.ensureDeferred
async def test_a_controller_session_without_a_router_keeps_trying_and_stops_at_once():
    session = ControllerSession(reactor, f"ws://127.0.0.1:{free_port()}/ws", "t" * 20, MemoryFleetStore(),
                                Fleet(MemoryFleetStore(), reactor), initial_retry_delay=0.05, max_retry_delay=0.1)
    session.startService()
    await wait_for(lambda: session.failed_attempts >= 3, message="three refused connections")
    assert not session.ended.called
    started = reactor.seconds()
    await session.stopService()
    assert reactor.seconds() - started < 1.0
    assert await session.ended is None


@pytest_twisted.ensureDeferred
async def test_a_controller_with_a_wrong_ticket_gives_up_at_once(controller):
    impostor = ControllerSession(reactor, controller.router.url, "not-the-ticket-at-all", MemoryFleetStore(),
                                 Fleet(MemoryFleetStore(), reactor), initial_retry_delay=0.1, max_retry_delay=0.2)
    impostor.startService()
    try:
        error = await impostor.ended.addTimeout(WAIT, reactor)
        assert "not_authorized" in error and not impostor.joined
    finally:
        await impostor.stopService()


@pytest_twisted.ensureDeferred
async def test_a_killed_router_is_restarted_the_controller_rejoins_and_presence_is_rebuilt(controller, connect):
    """Last in the module: it kills the shared router (the supervisor brings it back)."""
    node_id, secret = controller.store.add_node()
    await connect.node(node_id, secret)
    await wait_for(lambda: controller.fleet.is_online(node_id), message="online")
    killed = controller.router.status().pid
    old_tree = process_tree(killed)
    os.kill(killed, signal.SIGKILL)
    await wait_for(lambda: (controller.router.status().pid or killed) != killed, 30, "crossbar restarted")
    await wait_for(lambda: controller.session.joined and not controller.fleet.is_online(node_id), 60,
                   "the controller back, the node's lost session seen offline")
    assert controller.store.last_seen(node_id)[1] is False
    assert {pid for pid in old_tree if process_tree(pid)} == set()  # its worker went with it
    await connect.node(node_id, secret)
    await wait_for(lambda: controller.fleet.is_online(node_id), message="online again")


@pytest_twisted.ensureDeferred
async def test_a_crossbar_left_by_a_killed_controller_is_replaced_at_the_next_start(tmp_path):
    ticket, port = secrets.token_urlsafe(24), free_port()
    router = EmbeddedRouter(reactor, tmp_path, "127.0.0.1", port, ticket)
    router.write_config()
    spec = router.spec()  # what a controller that was then killed with -9 had started, now nobody's child
    left = subprocess.Popen(spec.argv, env=spec.environment(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await wait_for(lambda: (router.cbdir / "node.pid").exists(), 60, "the left crossbar's node.pid")
        while not await probe(reactor, "127.0.0.1", port, ticket):
            assert left.poll() is None, "the left crossbar died"
        old_tree = process_tree(left.pid)
        router.startService()
        await wait_for(lambda: left.poll() is not None, 30, "the left crossbar stopped")
        await router.when_ready(60)
        assert {pid for pid in old_tree if process_tree(pid)} == set()
        assert router.status().running and router.status().pid != left.pid
    finally:
        await router.stopService()
        if left.poll() is None:
            left.kill()
        left.wait()
