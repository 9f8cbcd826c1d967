"""A crossbar router of the tests' own and an autobahn session standing in for the controller.

The router knows a few node ids statically (WAMP-CRA with salted keys, the way the real controller answers), gives
each node a role allowed to register and publish under its own prefix only, and lets anonymous sessions (the
test's controller) do everything. Started with ``crossbar start`` from PARADROP_CROSSBAR (or the repo's
.venv-crossbar); ``kill()`` and ``start()`` again on the same port for reconnection tests.
"""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from twisted.internet import defer, reactor, task

from pdserver.cloud import protocol
from pdserver.controller.router import crossbar_path
from tests.conftest import free_port, wait_until

SALT_ITERATIONS = 1000
KEYLEN = 32


def node_credentials(count: int):
    """``count`` fresh (node id, secret) pairs."""
    return [(secrets.token_hex(8), secrets.token_urlsafe(24)) for _ in range(count)]


def router_config(port: int, nodes) -> dict:
    users, roles = {}, [{"name": "controller", "permissions": [
        {"uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
         "disclose": {"caller": True, "publisher": True}, "cache": True}]}]
    for node_id, secret in nodes:
        salt = secrets.token_hex(8)
        # crossbar 26.10 derives the key from "secret" itself when the principal carries a salt (its
        # router/auth/wampcra.py): the raw secret goes here, the node signs with the key derived from the salt
        # the challenge carries (autobahn's AuthWampCra).
        users[node_id] = {"secret": secret,
                          "role": f"node-{node_id}", "salt": salt, "iterations": SALT_ITERATIONS, "keylen": KEYLEN}
        roles.append({"name": f"node-{node_id}", "permissions": [
            {"uri": protocol.node_prefix(node_id), "match": "prefix",
             "allow": {"call": False, "register": True, "publish": True, "subscribe": False},
             "disclose": {"caller": False, "publisher": False}, "cache": True}]})
    return {"version": 2, "controller": {}, "workers": [{
        "type": "router",
        "realms": [{"name": protocol.REALM, "roles": roles}],
        "transports": [{"type": "web", "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port},
                        "paths": {"ws": {"type": "websocket", "serializers": ["json", "msgpack", "cbor"],
                                         "auth": {"wampcra": {"type": "static", "users": users},
                                                  "anonymous": {"type": "static", "role": "controller"}}}}}]}]}


class Crossbar:
    def __init__(self, directory: Path, nodes):
        self.directory = directory
        self.nodes = nodes
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/ws"
        self.proc = None
        cbdir = directory / ".crossbar"
        cbdir.mkdir(parents=True, exist_ok=True)
        (cbdir / "config.json").write_text(json.dumps(router_config(self.port, nodes)))
        self.log = directory / "crossbar.log"
        self._unused = list(nodes)

    def take(self):
        """A node id and secret no one took before."""
        return self._unused.pop()

    def start(self):
        out = open(self.log, "ab")
        self.proc = subprocess.Popen([crossbar_path(), "start", "--cbdir", str(self.directory / ".crossbar")],
                                     stdout=out, stderr=subprocess.STDOUT, cwd=str(self.directory),
                                     start_new_session=True)
        out.close()
        wait_until(self._accepts, timeout=60, message=f"crossbar on port {self.port} (log: {self.log})")
        return self

    def _accepts(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"crossbar exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", self.port)) == 0

    def kill(self, sig=signal.SIGKILL):
        """Signal the router (kill -9 by default: all its process group) and wait for it to end."""
        if self.proc is not None and self.proc.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(self.proc.pid, sig)
            else:
                self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            finally:
                if self.proc.poll() is None:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(30)

    def remove(self):
        self.kill()
        shutil.rmtree(self.directory / ".crossbar", ignore_errors=True)


def wait_for(predicate, timeout=30.0, message="condition"):
    """A Deferred that fires with the predicate's first true value (polled on the reactor), or fails."""
    @defer.inlineCallbacks
    def poll():
        deadline = reactor.seconds() + timeout
        while reactor.seconds() < deadline:
            value = predicate()
            if value:
                return value
            yield task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError(f"timed out waiting for {message}")
    return poll()


class ControllerClient:
    """An anonymous session on the test router: records every event under the node prefix as (node id, topic
    suffix, message) and calls nodes' procedures."""

    def __init__(self, url: str):
        from autobahn.twisted.component import Component
        self.events = []
        self.session = None
        self._component = Component(
            transports=[{"type": "websocket", "url": url, "max_retries": -1, "initial_retry_delay": 0.2,
                         "max_retry_delay": 1, "retry_delay_growth": 1.5, "retry_delay_jitter": 0.1}],
            realm=protocol.REALM)
        self._component.on_join(self._joined)
        self._component.on_leave(self._left)
        self._done = None

    def start(self):
        self._done = self._component.start(reactor)
        return wait_for(lambda: self.session, message="the test controller to join")

    @defer.inlineCallbacks
    def _joined(self, session, details):
        from autobahn.wamp.types import SubscribeOptions
        yield session.subscribe(self._event, protocol.NODE_PREFIX,
                                options=SubscribeOptions(match="prefix", details_arg="details"))
        self.session = session

    def _left(self, session, details):
        self.session = None

    def _event(self, message, details):
        node_id, suffix = protocol.parse_node_uri(details.topic)
        self.events.append((node_id, suffix, message))

    def of(self, node_id, suffix):
        return [m for n, s, m in self.events if n == node_id and s == suffix]

    def call(self, node_id, procedure, **kwargs):
        return self.session.call(protocol.node_uri(node_id, procedure), **kwargs)

    def stop(self):
        self._component.stop()
        return self._done


class Gate:
    """A TCP forwarder in front of the router that the test opens and closes: a node behind it reconnects only
    when the test lets it (so the controller is back and subscribed first)."""

    def __init__(self, router_port: int):
        self.port = free_port()
        self._router_port = router_port
        self._listening = None

    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def open(self):
        from twisted.protocols.portforward import ProxyFactory
        self._listening = reactor.listenTCP(self.port, ProxyFactory("127.0.0.1", self._router_port),
                                            interface="127.0.0.1")
        return self

    def close(self):
        listening, self._listening = self._listening, None
        return defer.maybeDeferred(listening.stopListening) if listening else defer.succeed(None)
