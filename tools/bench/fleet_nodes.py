"""The processes behind tools/bench/fleet.py: many simulated nodes in one process, or the bare fan-out caller.

``nodes CREDS STATUS URL``: one light autobahn session per node in CREDS (JSON ``[[node_id, secret], ...]``),
at most JOINING joining at once. Each speaks the node's side of pdserver/cloud/protocol.py: WAMP-CRA with its id
and secret, every procedure of protocol.PROCEDURES registered under its prefix, its STATE published on join and
after every burst of changes (STATE_WINDOW seconds after its first). A command runs once per key (a key seen before runs
nothing and answers as a duplicate), as pdserver/cloud/link.py does: a progressive call (the controller's) is
answered when the change ends with ``{"change_id", "duplicate", "state", "message", "version", "chutes"}`` and
nothing is published (a change done within the link's window has no progress); a plain call answers
``{"change_id", "duplicate"}`` (queued), then its CHANGE event succeeded and the state are published. STATUS
(JSON, rewritten atomically) counts the sessions ready and failed, and the WAMP messages they sent and received by
type (``messages``, rewritten on SIGUSR1 with ``seq`` one higher); it runs until SIGTERM.

``fanout IDS CONFIG URL [AUTHID [BACKENDS]]``: joins as the controller with the ticket in the router's CONFIG (the
crossbar config.json the controller wrote in its state dir), or as AUTHID with the ticket CONFIG holds (a plain text
file: tools/bench/fleet.py's router run on its own gives the fan-out a principal and role of its own, with the
controller role's permissions, since the backends count every controller-role session as one of them); for every
line ``go`` on stdin it calls every node's get_state at once, and for every line ``go COMMAND`` (JSON
``{"procedure", "run", "config"}``) it sends every node that chute command at once, as the controller sends a
delivery (keyword arguments key, user, role and config; progressive results asked for; a key of its own per node
and run), and prints one JSON line ``{"seconds", "ok", "errors"}`` (ok: answered, and for a command, succeeded).
It prints ``{"joined": true}`` first, once BACKENDS (default 1) controller backends have registered the nodes'
authenticator. It speaks the controller backend's serializer (SERIALIZER), as the caller of the deployment
does.
"""
import collections
import json
import os
import resource
import signal
import sys
import time

# This directory holds a queue.py, which must not shadow the standard library's queue module (see api.py); the
# repository goes in front, for pdserver.cloud.protocol.
_HERE = os.path.dirname(os.path.realpath(__file__))
sys.path[:] = [os.path.dirname(os.path.dirname(_HERE))] + [p for p in sys.path
                                                          if os.path.realpath(p or ".") != _HERE] + [_HERE]

import txaio  # noqa: E402

txaio.use_twisted()

from autobahn.twisted.wamp import ApplicationSession  # noqa: E402
from autobahn.twisted.websocket import WampWebSocketClientFactory  # noqa: E402
from autobahn.wamp.auth import AuthWampCra  # noqa: E402
from autobahn.wamp.serializer import MsgPackSerializer  # noqa: E402
from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions, RegisterOptions  # noqa: E402
from twisted.internet import defer, reactor, stdio, task  # noqa: E402
from twisted.protocols.basic import LineReceiver  # noqa: E402

from pdserver.cloud import protocol  # noqa: E402
from pdserver.logs import plain_autobahn_text  # noqa: E402

JOINING = 100  # sessions joining at once per process
SERIALIZER = MsgPackSerializer  # the controller backend's (pdserver.controller.wamp: msgpack first)
VERSION = "fleet-sim-1"
FANOUT_USER = "fleet-bench-fanout"  # the cloud user a fan-out's commands name
ACK = PublishOptions(acknowledge=True)
STATE_WINDOW = 0.2  # pdserver.cloud.link.WINDOW: one state message per burst of changes
CHUTE_COMMANDS = {protocol.INSTALL_CHUTE: "install", protocol.UPDATE_CHUTE: "update",
                  protocol.REMOVE_CHUTE: "remove", protocol.START_CHUTE: "start", protocol.STOP_CHUTE: "stop",
                  protocol.RESTART_CHUTE: "restart", protocol.SET_HOSTCONFIG: "hostconfig"}


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def write_json(path: str, value):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


class Fleet:
    """The sessions of this process and their counts; launches joins JOINING at a time."""

    def __init__(self, creds, status_path: str, url: str, host: str, port: int):
        self.creds = creds
        self.status_path = status_path
        self.url, self.host, self.port = url, host, port
        self.next = self.inflight = self.ready = self.failed = self.lost = 0
        self.first_error = None
        self.change_ids = 0
        self.messages = collections.Counter()  # "in Invocation", "out Yield"... of all sessions
        self.seq = 0

    def status(self):
        self.seq += 1
        write_json(self.status_path, {"pid": os.getpid(), "count": len(self.creds), "ready": self.ready,
                                      "failed": self.failed, "lost": self.lost, "first_error": self.first_error,
                                      "messages": dict(self.messages), "seq": self.seq})

    def launch(self):
        while self.inflight < JOINING and self.next < len(self.creds):
            node_id, secret = self.creds[self.next]
            self.next += 1
            self.inflight += 1
            reactor.connectTCP(self.host, self.port, NodeFactory(self, node_id, secret), timeout=120)

    def done(self, ok: bool, error=None):
        self.inflight -= 1
        if ok:
            self.ready += 1
        else:
            self.failed += 1
            self.first_error = self.first_error or str(error)[:500]
        self.status()
        self.launch()


class Node(ApplicationSession):
    """One simulated node: a session with the node's procedures, its chutes and its remote commands by key."""

    def __init__(self, fleet: Fleet, node_id: str, secret: str):
        super().__init__(ComponentConfig(protocol.REALM))
        self.fleet = fleet
        self.node_id = node_id
        self.secret = secret
        self.counted = False
        self.chutes = {}  # name -> version
        self.commands = {}  # key -> {key, change_id, state}, in order
        self.state_call = None  # the state message due at the end of a burst of changes

    def onOpen(self, transport):
        """Count what the session sends (and, in onMessage, what it receives) by message type."""
        send, messages = transport.send, self.fleet.messages

        def counted(message):
            messages["out " + type(message).__name__] += 1
            send(message)
        transport.send = counted
        super().onOpen(transport)

    def onMessage(self, message):
        self.fleet.messages["in " + type(message).__name__] += 1
        super().onMessage(message)

    def onConnect(self):
        self.join(protocol.REALM, authmethods=["wampcra"], authid=self.node_id)

    def onChallenge(self, challenge):
        return AuthWampCra(authid=self.node_id, secret=self.secret).on_challenge(self, challenge)

    @defer.inlineCallbacks
    def onJoin(self, details):
        try:
            yield defer.gatherResults([self.register(self.handler(p), protocol.node_uri(self.node_id, p),
                                                     options=RegisterOptions(details_arg="details"))
                                       for p in protocol.PROCEDURES], consumeErrors=True)
            yield self.publish(protocol.node_uri(self.node_id, protocol.STATE), self.state(), options=ACK)
        except Exception as e:
            self.count(False, f"register/publish: {e!r}")
            self.leave()
            return
        self.count(True)

    def count(self, ok: bool, error=None):
        if not self.counted:
            self.counted = True
            self.fleet.done(ok, error)

    def onLeave(self, details):
        if self.counted:
            self.fleet.lost += 1
            self.fleet.status()
        self.count(False, f"left: {details.reason} {details.message}")
        self.disconnect()

    def onDisconnect(self):
        self.count(False, "disconnected before joining")

    def state(self) -> dict:
        return {"node_id": self.node_id, "version": VERSION, "time": time.time(),
                "chutes": [{"name": n, "version": v, "state": "running"} for n, v in self.chutes.items()],
                "commands": list(self.commands.values())[-protocol.COMMANDS_REPORTED:]}

    def handler(self, procedure: str):
        if procedure == protocol.GET_STATE:
            return lambda details=None, **kwargs: self.state()

        def command(key, user=None, role=None, config=None, source=None, chute=None, details=None):
            progressive = getattr(details, "progress", None) is not None
            duplicate = key in self.commands
            if not duplicate:
                self.fleet.change_ids += 1
                self.commands[key] = {"key": key, "change_id": self.fleet.change_ids, "state": "queued"}
                name = (config or {}).get("name") or chute
                if progressive:
                    self.apply(key, CHUTE_COMMANDS[procedure], name, config)
                else:
                    reactor.callLater(0, self.run, self.fleet.change_ids, key, CHUTE_COMMANDS[procedure], name,
                                      config)
            entry = self.commands[key]
            if not progressive:
                return {"change_id": entry["change_id"], "duplicate": duplicate}
            return {"change_id": entry["change_id"], "duplicate": duplicate, "state": entry["state"],
                    "message": f"change {entry['change_id']} {entry['state']}", "version": VERSION,
                    "chutes": self.state()["chutes"]}
        return command

    def apply(self, key, kind, chute, config):
        """A change's effect on the chutes; it succeeds at once."""
        self.commands[key]["state"] = "succeeded"
        if kind in ("install", "update") and isinstance(config, dict):
            self.chutes[chute] = str(config.get("version"))
        elif kind == "remove":
            self.chutes.pop(chute, None)

    @defer.inlineCallbacks
    def run(self, change_id, key, kind, chute, config):
        """The change's events in the node's order, then the state it leaves (an install adds its chute)."""
        try:
            self.apply(key, kind, chute, config)
            yield self.publish(protocol.node_uri(self.node_id, protocol.CHANGE),
                               {"change_id": change_id, "key": key, "type": kind, "chute": chute,
                                "state": "succeeded", "time": time.time(), "message": None}, options=ACK)
        except Exception as e:
            self.failed(f"change {key}: {e!r}")
        if self.state_call is None or not self.state_call.active():
            self.state_call = reactor.callLater(STATE_WINDOW, self.publish_state)

    def publish_state(self):
        self.publish(protocol.node_uri(self.node_id, protocol.STATE), self.state(), options=ACK).addErrback(
            lambda f: self.failed(f"state: {f.getErrorMessage()}"))

    def failed(self, error: str):
        self.fleet.first_error = self.fleet.first_error or error[:500]
        self.fleet.status()


class NodeFactory(WampWebSocketClientFactory):
    """One connection's factory: it counts the failures that happen before a session exists."""

    def __init__(self, fleet: Fleet, node_id: str, secret: str):
        self.fleet = fleet
        self.node = Node(fleet, node_id, secret)
        super().__init__(lambda: self.node, url=fleet.url)
        self.setProtocolOptions(openHandshakeTimeout=120)

    def clientConnectionFailed(self, connector, reason):
        self.node.count(False, f"connect: {reason.getErrorMessage()}")

    def clientConnectionLost(self, connector, reason):
        self.node.count(False, f"connection lost: {reason.getErrorMessage()}")


class Caller(ApplicationSession):
    """The bare fan-out: the controller's role (or one with its permissions), no controller logic, one call per node
    at once."""

    def __init__(self, ticket: str, node_ids, joined: defer.Deferred, authid: str = protocol.CONTROLLER_AUTHID,
                 backends: int = 1):
        super().__init__(ComponentConfig(protocol.REALM))
        self.ticket = ticket
        self.join_as = authid
        self.backends = backends
        self.node_ids = node_ids
        self.joined = joined

    def onConnect(self):
        self.join(protocol.REALM, authmethods=["ticket"], authid=self.join_as)

    def onChallenge(self, challenge):
        return self.ticket

    @defer.inlineCallbacks
    def onJoin(self, details):
        """Ready once the controller's backends serve the nodes' authenticator (the router may be up before)."""
        while True:
            registration = yield self.call("wamp.registration.lookup", protocol.AUTHENTICATE)
            if registration and self.backends <= 1:
                break
            if registration and len((yield self.call("wamp.registration.list_callees", registration))
                                    or ()) >= self.backends:
                break
            yield task.deferLater(reactor, 0.05, lambda: None)
        self.joined.callback(self)

    def onLeave(self, details):
        if not self.joined.called:
            self.joined.errback(RuntimeError(f"the router refused the ticket: {details.reason}"))
        self.disconnect()

    def onDisconnect(self):
        if reactor.running:
            reactor.stop()

    @defer.inlineCallbacks
    def fan_out(self, command=None):
        """Every node's get_state, or (``command``) the same chute command to every node, all at once."""
        started = time.perf_counter()
        if command is None:
            calls = [self.call(protocol.node_uri(n, protocol.GET_STATE)) for n in self.node_ids]
        else:
            options = CallOptions(on_progress=lambda *args, **kwargs: None)
            calls = [self.call(protocol.node_uri(n, command["procedure"]), options=options,
                               key=f"fanout-{command['run']}-{n}", user=FANOUT_USER, role="owner",
                               config=command["config"]) for n in self.node_ids]
        results = yield defer.DeferredList(calls, consumeErrors=True)
        seconds = time.perf_counter() - started
        ok = sum(1 for success, value in results if success and (
            value.get("node_id") if command is None else value.get("state") == "succeeded"))
        return {"seconds": seconds, "ok": ok, "errors": len(results) - ok}


class Commands(LineReceiver):
    delimiter = b"\n"

    caller = None

    def lineReceived(self, line):
        word, _, command = line.strip().partition(b" ")
        if word == b"go" and self.caller is not None:
            self.caller.fan_out(json.loads(command) if command else None).addCallbacks(
                self.answer, lambda f: self.answer({"error": f.getErrorMessage()}))

    def answer(self, result):
        self.sendLine(json.dumps(result).encode())

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def run_nodes(creds_path: str, status_path: str, url: str):
    from urllib.parse import urlparse

    raise_nofile()
    parsed = urlparse(url)
    with open(creds_path) as f:
        fleet = Fleet(json.load(f), status_path, url, parsed.hostname, parsed.port)
    fleet.status()
    signal.signal(signal.SIGUSR1, lambda *_: reactor.callFromThread(fleet.status))
    reactor.callWhenRunning(fleet.launch)
    reactor.run()


def controller_ticket(config_path: str) -> str:
    """The controller principal's ticket in crossbar's config (pdserver.controller.router.router_config), or the
    ticket a plain text file holds."""
    with open(config_path) as f:
        text = f.read()
    try:
        config = json.loads(text)
    except ValueError:
        return text.strip()
    for transport in config["workers"][0]["transports"]:
        for path in transport.get("paths", {}).values():
            principals = path.get("auth", {}).get("ticket", {}).get("principals", {})
            if protocol.CONTROLLER_AUTHID in principals:
                return principals[protocol.CONTROLLER_AUTHID]["ticket"]
    raise SystemExit(f"no ticket for {protocol.CONTROLLER_AUTHID} in {config_path}")


def run_fanout(ids_path: str, config_path: str, url: str, authid: str = protocol.CONTROLLER_AUTHID,
               backends: str = "1"):
    from urllib.parse import urlparse

    raise_nofile()
    parsed = urlparse(url)
    with open(ids_path) as f:
        node_ids = json.load(f)
    ticket = controller_ticket(config_path)
    joined = defer.Deferred()
    factory = WampWebSocketClientFactory(lambda: Caller(ticket, node_ids, joined, authid, int(backends)), url=url,
                                         serializers=[SERIALIZER()])
    reactor.connectTCP(parsed.hostname, parsed.port, factory, timeout=30)

    commands = Commands()
    stdio.StandardIO(commands)  # txaio's logging redirects sys.stdout: answers go through this transport

    def ready(caller):
        commands.caller = caller
        commands.answer({"joined": True})

    def failed(failure):
        commands.answer({"error": failure.getErrorMessage()})
        reactor.stop()
    joined.addCallbacks(ready, failed)
    reactor.run()


def main():
    txaio.start_logging(level="warn", out=sys.stderr)
    plain_autobahn_text()  # as the node and the controller have it
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "nodes":
        run_nodes(*args)
    elif mode == "fanout":
        run_fanout(*args)
    else:
        sys.exit(f"unknown mode {mode!r}: nodes CREDS STATUS URL | fanout IDS CONFIG URL [AUTHID [BACKENDS]]")


if __name__ == "__main__":
    main()
