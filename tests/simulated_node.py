"""A simulated node: a light autobahn client speaking the node's side of the WAMP protocol (WAMP-CRA with the secret
the controller handed out), for tests of the controller without a node daemon. In a test's reactor, or as a process
of its own (tests that block, like the browser's): ``python -m tests.simulated_node NODE_ID URL STEP`` with the
secret in the SIMULATED_NODE_SECRET environment variable; it prints ``joined`` once it has published its state.
Many nodes in one process: ``python -m tests.simulated_node --nodes FILE URL STEP``, FILE a JSON list of
``{"id", "secret"}``; it prints ``joined N`` once all N have published their state.

A process prints ``ran NODE_ID KEY`` (flushed at once) each time one of its nodes runs a command, that is the first
time it gets that key (a duplicate key runs nothing), so a test can count runs per node and key across processes."""
import hashlib
import io
import json
import os
import sys
import tarfile

import yaml

from twisted.internet import defer, task

from pdserver.cloud import protocol


class SimulatedNode:
    """Just enough of a node: registers install_chute, update_chute (the same) and get_state, publishes its state,
    runs a command by its key once (a duplicate key answers the same change id). A progressive call (the
    controller's) is answered when the install ends, with its outcome and the node's chutes, its steps coming as
    progressive results; a plain call is answered at once and followed by change events and the state message. With
    ``step`` > 0 an install goes through queued and running, ``step`` seconds apart, before it succeeds; a command
    with a ``source`` has its archive downloaded with the command's token (and its sha256 checked) first, before its
    key counts as seen (a failed download is a refusal that may pass, as on the node). Each
    command it runs (a new key) is appended to ``runs`` and, with ``on_run``, reported as ``on_run(node_id, key)``."""

    def __init__(self, node_id, secret, url, reactor=None, step=0.0, on_run=None):
        from autobahn.twisted.component import Component
        if reactor is None:
            from twisted.internet import reactor
        self.node_id = node_id
        self.runs = []
        self.chutes = []
        self.joined = defer.Deferred()
        self._reactor = reactor
        self._step = step
        self._on_run = on_run
        # The router may still be starting: retry connecting; a refusal of the secret ends it (is_fatal).
        self.component = Component(
            transports=[{"url": url, "max_retries": 200, "initial_retry_delay": 0.1, "max_retry_delay": 0.5,
                         "retry_delay_jitter": 0.1, "retry_delay_growth": 1.5}], realm=protocol.REALM,
            authentication={"wampcra": {"authid": node_id, "secret": secret}},
            is_fatal=lambda error: "not_authorized" in str(error) or "authentication" in str(error).lower())
        self.component.on("join", self._on_join)

    def _state(self):
        return {"node_id": self.node_id, "version": "sim-1", "time": self._reactor.seconds(), "chutes": self.chutes,
                "commands": []}

    @defer.inlineCallbacks
    def _on_join(self, session, details):
        from autobahn.wamp.exception import ApplicationError
        from autobahn.wamp.types import PublishOptions, RegisterOptions
        changes = {}  # key -> change id
        ended = {}  # key -> (state, message) once its install ended
        waiting = {}  # key -> Deferreds of its end

        def finish(result, key):
            ended[key] = result
            for waiter in waiting.pop(key, []):
                waiter.callback(result)

        def end_of(key):
            if key in ended:
                return defer.succeed(ended[key])
            waiting.setdefault(key, []).append(defer.Deferred())
            return waiting[key][-1]

        def publish(topic, payload):
            return session.publish(protocol.node_uri(self.node_id, topic), payload,
                                   options=PublishOptions(acknowledge=True))

        @defer.inlineCallbacks
        def run(key, config, report):
            """The install: (state, message) of its end; ``report(chute, state, message)`` tells its steps."""
            name, version = config["name"], str(config.get("version"))
            if self._step > 0:
                for state, message in (("queued", "waiting in the change queue"),
                                       ("running", "pulling and starting")):
                    yield report(name, state, message)
                    yield task.deferLater(self._reactor, self._step, lambda: None)
            self.chutes = [c for c in self.chutes if c["name"] != name] + [
                {"name": name, "version": version, "state": "running"}]
            return "succeeded", "installed"

        def event(key, name, state, message):
            return publish(protocol.CHANGE, {"change_id": changes[key], "key": key, "type": "install", "chute": name,
                                             "state": state, "time": self._reactor.seconds(), "message": message})

        @defer.inlineCallbacks
        def published_end(key):
            state, message = yield end_of(key)
            yield event(key, None, state, message)
            yield publish(protocol.STATE, self._state())

        @defer.inlineCallbacks
        def answered_end(key, duplicate):
            state, message = yield end_of(key)
            return {"change_id": changes[key], "duplicate": duplicate, "state": state, "message": message,
                    "version": "sim-1", "chutes": self.chutes}

        @defer.inlineCallbacks
        def install(key, user, role, config=None, source=None, details=None):
            progress = getattr(details, "progress", None)
            if key not in changes and config is None:
                # As the node does (pdserver.cloud.commands): the archive is fetched before the key is taken.
                try:
                    config = yield self._project(source)
                except Exception as e:
                    raise ApplicationError(protocol.ERROR_PREFIX + "service_unavailable", code="service_unavailable",
                                           message=f"cannot fetch the archive: {e}") from None
            duplicate = key in changes
            if not duplicate:
                changes[key] = 100 + len(changes)
                self.runs.append({"key": key, "user": user, "role": role, "config": config})
                if self._on_run is not None:
                    self._on_run(self.node_id, key)
                if progress is not None:
                    report = lambda name, state, message: progress({  # noqa: E731
                        "change_id": changes[key], "key": key, "type": "install", "chute": name, "state": state,
                        "time": self._reactor.seconds(), "message": message})
                else:
                    report = lambda name, state, message: event(key, name, state, message)  # noqa: E731
                run(key, config, report).addCallback(finish, key)
                if progress is None:
                    published_end(key)
            if progress is None:
                return {"change_id": changes[key], "duplicate": duplicate}
            return (yield answered_end(key, duplicate))
        options = RegisterOptions(details_arg="details")
        yield session.register(install, protocol.node_uri(self.node_id, protocol.INSTALL_CHUTE), options=options)
        yield session.register(install, protocol.node_uri(self.node_id, protocol.UPDATE_CHUTE), options=options)
        yield session.register(self._state, protocol.node_uri(self.node_id, protocol.GET_STATE))
        yield publish(protocol.STATE, self._state())
        if not self.joined.called:
            self.joined.callback(None)


    @staticmethod
    @defer.inlineCallbacks
    def _project(source):
        """The paradrop.yaml of the archive a command's source names, fetched as a node does."""
        import treq
        response = yield treq.get(source["url"], headers={"Authorization": f"Bearer {source['token']}"})
        body = yield response.content()
        if response.code != 200 or hashlib.sha256(body).hexdigest() != source["sha256"]:
            raise ValueError(f"HTTP {response.code}, or not the archive of sha256 {source['sha256']}")
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            return yaml.safe_load(tar.extractfile("paradrop.yaml"))


def _print_run(node_id, key):
    print("ran", node_id, key, flush=True)


def main(argv):
    from twisted.internet import reactor
    if argv and argv[0] == "--nodes":
        path, url, step = argv[1:]
        with open(path) as f:
            listed = json.load(f)
        nodes = [SimulatedNode(n["id"], n["secret"], url, reactor, float(step), on_run=_print_run) for n in listed]
        defer.gatherResults([n.joined for n in nodes]).addCallback(lambda _: print("joined", len(nodes), flush=True))
    else:
        node_id, url, step = argv
        nodes = [SimulatedNode(node_id, os.environ["SIMULATED_NODE_SECRET"], url, reactor, float(step),
                               on_run=_print_run)]
        nodes[0].joined.addCallback(lambda _: print("joined", flush=True))
    # The process ends once every node's component has ended (its secret refused, or out of retries).
    defer.DeferredList([n.component.start(reactor) for n in nodes]).addBoth(
        lambda _: reactor.stop() if reactor.running else None)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1:])
