"""The node's log pipeline: library chatter (Twisted's factory and port lines, autobahn's narration, the stdlib's
records) reaches a person only at debug level; ``log_level`` holds for stdout, the JSON file and the in-memory
ring alike; the JSON log rotates by size into a bounded number of bounded files; the change queue says one line
when a change starts and one when it ends, with who, what and how long."""
import io
import json
import logging

import pytest
import pytest_twisted
from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.logger import Logger, LogLevel, globalLogPublisher
from twisted.web.resource import Resource

from pdserver import logs
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.model import ChangeFailed
from pdserver.changes.queue import ChangeQueue
from pdserver.storage import open_database


class Pipeline:
    """The observers of start_logging, without making them global; published to directly or from the global
    publisher for the duration of a test."""

    def __init__(self, tmp_path, level="info", max_bytes=5 * 1024 * 1024, files=3):
        self.stdout = io.StringIO()
        self.recent = []
        self.log_dir = tmp_path / "logs"
        self.publisher = logs.build_observer(self.log_dir, level, self.stdout, self.recent.append, max_bytes, files)

    def logger(self, namespace="pdserver.test"):
        return Logger(namespace=namespace, observer=self.publisher)

    def json_lines(self, name=logs.JSON_LOG):
        return [json.loads(line) for line in (self.log_dir / name).read_text().splitlines()]

    def texts(self):
        return self.stdout.getvalue()


@pytest.fixture
def on_global(tmp_path):
    """A pipeline that also receives what Twisted itself logs (factories, ports, legacy log.msg)."""
    made = []

    def make(level):
        pipeline = Pipeline(tmp_path / level, level)
        globalLogPublisher.addObserver(pipeline.publisher)
        made.append(pipeline)
        return pipeline
    yield make
    for pipeline in made:
        globalLogPublisher.removeObserver(pipeline.publisher)


class Page(Resource):
    isLeaf = True

    def render_GET(self, request):
        return b"ok"


@pytest_twisted.ensureDeferred
async def test_factory_and_port_chatter_of_a_real_listener_and_the_nodes_http_probe_shows_only_at_debug(on_global):
    from twisted.internet import reactor, task
    from twisted.web.server import Site

    from pdserver.containers.health import http_probe
    info, debug = on_global("info"), on_global("debug")
    port = reactor.listenTCP(0, Site(Page()), interface="127.0.0.1")
    number = port.getHost().port
    assert await http_probe(reactor, f"http://127.0.0.1:{number}/", 5.0) == 200
    for _ in range(500):  # the probe hangs up once it has the answer: its factory stops a moment later
        if "Stopping factory _HTTP11ClientFactory" in debug.texts():
            break
        await task.deferLater(reactor, 0.01, lambda: None)
    await defer.maybeDeferred(port.stopListening)
    Logger(namespace="pdserver.test", observer=globalLogPublisher).info("the node's own line")
    for chatter in ("Starting factory _HTTP11ClientFactory", "Stopping factory _HTTP11ClientFactory",
                    f"Site starting on {number}", f"Port {number} Closed"):
        assert chatter not in info.texts(), info.texts()
        assert not any(chatter in logs_text(event) for event in info.recent)
        assert not any(chatter in json.dumps(line) for line in info.json_lines())
        assert chatter in debug.texts()
    assert "the node's own line" in info.texts() and "the node's own line" in debug.texts()
    assert all(event["log_level"] is LogLevel.debug for event in debug.recent if logs.is_chatter(event))


def logs_text(event):
    from twisted.logger import formatEvent
    return formatEvent(event)


def test_autobahn_narrates_its_retries_at_debug_a_failed_attempt_is_a_warning_other_warnings_stay(tmp_path):
    pipeline = Pipeline(tmp_path)
    component = pipeline.logger("autobahn.twisted.component.Component")
    component.info('connecting once using transport type "websocket" over endpoint "tcp"')
    component.warn('trying transport {transport_idx} ("{transport_url}") using connect delay {transport_delay}',
                   transport_idx=0, transport_url="ws://127.0.0.1:9/ws", transport_delay=1.7)
    component.error("Connection failed: {error}", error="ConnectionRefusedError: Connection refused")
    component.warn("the router closed the session")
    text = pipeline.texts()
    assert "connecting once" not in text and "trying transport" not in text
    assert "#warn] Connection failed: ConnectionRefusedError" in text and "#error]" not in text
    assert "#warn] the router closed the session" in text


@pytest.mark.parametrize("level, shown, hidden", [
    ("warn", ["a warning", "an error"], ["an info line", "a debug line"]),
    ("error", ["an error"], ["an info line", "a warning"]),
    ("debug", ["a debug line", "an info line", "a warning"], []),
])
def test_log_level_holds_for_stdout_the_json_log_and_the_ring(tmp_path, level, shown, hidden):
    pipeline = Pipeline(tmp_path, level)
    log = pipeline.logger()
    log.debug("a debug line")
    log.info("an info line")
    log.warn("a warning")
    log.error("an error")
    json_texts = " ".join(line["log_format"] for line in pipeline.json_lines())
    ring_texts = " ".join(event["log_format"] for event in pipeline.recent)
    for text in shown:
        assert text in pipeline.texts() and text in json_texts and text in ring_texts
    for text in hidden:
        assert text not in pipeline.texts() and text not in json_texts and text not in ring_texts


def test_the_json_log_rotates_by_size_into_a_bounded_set_of_bounded_files(tmp_path):
    max_bytes, files = 2000, 3
    pipeline = Pipeline(tmp_path, max_bytes=max_bytes, files=files)
    log = pipeline.logger()
    for n in range(400):
        log.info("line {n} of a node that talks a lot", n=n)
    kept = sorted(p.name for p in pipeline.log_dir.iterdir())
    assert kept == [logs.JSON_LOG, logs.JSON_LOG + ".1", logs.JSON_LOG + ".2"]
    longest = max(len(line) for p in pipeline.log_dir.iterdir() for line in p.read_text().splitlines(True))
    for path in pipeline.log_dir.iterdir():
        assert path.stat().st_size <= max_bytes + longest
        assert path.stat().st_mode & 0o077 == 0
    newest = pipeline.json_lines()
    assert newest[-1]["n"] == 399
    oldest = pipeline.json_lines(logs.JSON_LOG + ".2")
    assert [line["n"] for line in oldest] == list(range(oldest[0]["n"], oldest[-1]["n"] + 1))


def test_the_json_log_goes_on_in_the_same_file_after_a_restart(tmp_path):
    first = Pipeline(tmp_path)
    first.logger().info("before the restart")
    second = Pipeline(tmp_path)
    second.logger().info("after the restart")
    assert [line["log_format"] for line in second.json_lines()] == ["before the restart", "after the restart"]


@pytest.fixture
def bridged(tmp_path):
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)

    def make(log_level):
        pipeline = Pipeline(tmp_path / log_level, log_level)
        globalLogPublisher.addObserver(pipeline.publisher)
        made.append(pipeline)
        logs.bridge_stdlib(log_level)
        return pipeline
    made = []
    yield make
    for pipeline in made:
        globalLogPublisher.removeObserver(pipeline.publisher)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_stdlib_records_of_docker_and_urllib3_are_bridged_warnings_at_their_level_the_rest_at_debug(bridged):
    info = bridged("info")
    logging.getLogger("urllib3.connectionpool").debug('http://localhost:None "GET /v1.41/version HTTP/1.1" 200')
    logging.getLogger("docker.utils.config").info("Trying paths: %r", ["/root/.docker/config.json"])
    logging.getLogger("urllib3.connectionpool").warning("Connection pool is full, discarding connection: %s",
                                                        "localhost")
    assert "GET /v1.41/version" not in info.texts() and "Trying paths" not in info.texts()
    assert "[urllib3.connectionpool#warn] Connection pool is full, discarding connection: localhost" in info.texts()
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logs.StdlibBridge)]) == 1
    debug = bridged("debug")
    logging.getLogger("docker.utils.config").info("Trying paths: %r", ["/root/.docker/config.json"])
    assert "[docker.utils.config#debug] Trying paths" in debug.texts()
    assert len([h for h in logging.getLogger().handlers if isinstance(h, logs.StdlibBridge)]) == 1


class Gate:
    def __init__(self):
        self.gates = {}

    def __call__(self, context):
        gate = self.gates[context.change.target] = defer.Deferred()
        return gate


def test_one_line_when_a_change_starts_and_one_when_it_ends_with_who_what_result_and_duration(tmp_path):
    conn = open_database(tmp_path / "node.db")
    try:
        clock, gate = Clock(), Gate()
        queue = ChangeQueue(ChangeJournal(conn), {"install": gate}, clock)
        pipeline = Pipeline(tmp_path)
        queue.log = pipeline.logger("pdserver.changes.queue.ChangeQueue")
        queue.startService()
        first = queue.submit("install", "hello", "alice").id
        second = queue.submit("install", "broken", None).id
        clock.advance(0)
        clock.advance(2.5)
        gate.gates["hello"].callback({"message": "installed"})
        clock.advance(0)
        clock.advance(1)
        gate.gates["broken"].errback(ChangeFailed("the base image is missing"))
        lines = pipeline.texts().splitlines()
    finally:
        conn.close()
    assert [line.split("] ", 1)[1] for line in lines] == [
        f"change {first} started: install hello by alice",
        f"change {first} succeeded: install hello by alice in 2.5 s",
        f"change {second} started: install broken by the node",
        f"change {second} failed: install broken by the node in 1.0 s (the base image is missing)",
    ]
    assert "#warn]" in lines[-1]
    ended = [line for line in pipeline.json_lines() if "result" in line]
    assert [(e["id"], e["type"], e["chute"], e["who"], e["result"], e["duration"]) for e in ended] == [
        (first, "install", "hello", "alice", "succeeded", 2.5),
        (second, "install", "broken", "the node", "failed", 1.0)]


def test_rotation_settings_have_router_sized_defaults_and_refuse_what_cannot_work():
    from pdserver import settings as settings_module
    defaults = settings_module.load(None, environ={})
    assert (defaults.log_max_bytes, defaults.log_files) == (5 * 1024 * 1024, 3)
    assert settings_module.load(None, environ={"PARADROP_LOG_FILES": "5"}).log_files == 5
    for name, value in (("log_max_bytes", "1000"), ("log_files", "1"), ("log_files", "x")):
        with pytest.raises(settings_module.SettingsError) as refused:
            settings_module.load(None, environ={f"PARADROP_{name.upper()}": value})
        assert refused.value.name == name


def test_autobahn_log_arguments_are_plain_text_without_terminal_colours(tmp_path):
    from autobahn.util import hltype, hlval
    logs.plain_autobahn_text()
    pipeline = Pipeline(tmp_path, level="debug")
    pipeline.logger("autobahn.wamp.websocket").debug("{action} {kind}", action=hlval("WAMP-Transmit(", color="red"),
                                                     kind=hltype(Pipeline))
    text = pipeline.texts()
    assert "WAMP-Transmit( <" in text and "\x1b[" not in text
