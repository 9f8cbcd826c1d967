"""A node's change machinery without sockets or threads: the real queue, journal, handlers, executor and
chute actions over a MemoryEngine, an in-memory SQLite and a Clock; faults injected at chosen steps."""
import functools
import json
import sqlite3
from pathlib import Path

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.python.failure import Failure

from pdserver.changes.journal import ChangeJournal
from pdserver.changes.queue import ChangeQueue
from pdserver.chutes import naming
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord, ChuteStore
from pdserver.containers.errors import EngineError
from pdserver.containers.memory import MemoryEngine
from pdserver.containers.spec import ContainerSpec, PortBinding
from pdserver.execution.chute_actions import ChuteActions
from pdserver.execution.chute_handlers import ChuteHandlers
from pdserver.execution.chute_plans import BASE_IMAGES
from pdserver.execution.executor import Executor
from pdserver.execution.handlers import RecoveryHandler
from tests import previous_release

NAMES = naming.ChuteNames("unit-node")
NODE_LABELS = {naming.LABEL_NODE: NAMES.node_id}
NODE_LABEL = "{}={}".format(*next(iter(NODE_LABELS.items())))
PULLED_IMAGE = "registry.example/side:1"
# A volume with this label stands for one a chute wrote data into: removed and made again, it lacks it.
DATA_LABEL = "test.holds-data"


def memory_database() -> sqlite3.Connection:
    """The node's database as storage.open_database makes it, but in memory: a file costs a sync per
    change, which is most of a case's time here."""
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.row_factory = sqlite3.Row
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    return conn


class InlineReactor(Clock):
    """A Clock whose thread pool runs work at once: the unit tier has no threads."""

    def getThreadPool(self):
        return self

    def callInThreadWithCallback(self, on_result, function, *args, **kwargs):
        try:
            value = function(*args, **kwargs)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, value)

    def callFromThread(self, function, *args, **kwargs):
        function(*args, **kwargs)


def answered(reactor, url, timeout):
    """The readiness probe of the unit tier: every web service answers at once."""
    return defer.succeed(200)


class StepFaults:
    """Fails the executor's action call number ``index``, which is the plan's step ``index`` (each step is one
    call, and undos only follow a failure), ``before`` it acts or ``after`` (an answer lost); with
    ``undos=True`` every later call, all of them undos, fails too. A ``hook`` is called at that call
    instead of failing it (and the call then runs)."""

    def __init__(self):
        self.disarm()

    def arm(self, index: int, when: str = "before", undos: bool = False, hook=None) -> None:
        """Count calls from now on."""
        self._calls, self._index, self._when, self._undos, self._hook = 0, index, when, undos, hook

    def disarm(self) -> None:
        self._index = None

    def wrap(self, actions: dict) -> dict:
        return {name: functools.partial(self._call, action) for name, action in actions.items()}

    def _call(self, action, args, progress):
        if self._index is None:
            return action(args, progress)
        number, self._calls = self._calls, self._calls + 1
        if number == self._index and self._hook is not None:
            self._hook()
        elif number == self._index and self._when == "before":
            raise EngineError(f"injected failure of step {number + 1}")
        elif number == self._index:
            return defer.maybeDeferred(action, args, progress).addCallback(self._lost, number)
        elif number > self._index and self._undos:
            raise EngineError("injected failure of an undo")
        return action(args, progress)

    @staticmethod
    def _lost(_, number):
        raise EngineError(f"injected failure of step {number + 1} after it acted")


def description(name="hello", version=1, port=8001):
    """A light web service built from the project (host port ``port``) beside a pulled image."""
    main = {"type": "light", "image": "python3", "command": "python3 -m http.server 8000"}
    if port:
        main["requests"] = {"port-bindings": [{"external": port, "internal": 8000}]}
    return {"name": name, "version": version, "web": {"service": "main", "port": 8000},
            "services": {"main": main, "side": {"type": "image", "image": PULLED_IMAGE, "command": ["sleep", "9"]}}}


class UnitNode:
    """One node: chutes installed through changes, as a user would; ``faults`` break the steps. ``conn``
    is the node's database as it was before this start (a new one when None)."""

    def __init__(self, root: Path, conn: sqlite3.Connection = None):
        self.clock = InlineReactor()
        self.engine = MemoryEngine(self.clock, images={ref: {} for ref in BASE_IMAGES.values()},
                                   registry={PULLED_IMAGE: {}}, owner_label=naming.LABEL_NODE)
        conn = conn or memory_database()
        self.store = ChuteStore(conn)
        self.sources = root / "sources"
        self.sources.mkdir()
        self._uploads = 0
        self.faults = StepFaults()
        actions = ChuteActions(self.engine, self.store, self.clock, root / "build", NODE_LABELS, self._environment,
                               ready_grace=0.3, ready_timeout=2.0, ready_probe=answered)
        executor = Executor(self.faults.wrap(actions.actions()))
        handlers = ChuteHandlers(executor, self.store, self.engine, self.clock, NAMES,
                                 lambda: NodePolicy(api_port=8080), self.sources, lambda: [])
        self.queue = ChangeQueue(ChangeJournal(conn), handlers.handlers(), self.clock,
                                 recover=RecoveryHandler(executor))
        self.queue.startService()

    def _environment(self, chute, deployment, network):
        d = self.engine.network_gateway(network)
        return d.addCallback(lambda gateway: {"PARADROP_API_URL": f"http://{gateway}/api/v1"})

    def upload(self, chute: dict) -> str:
        """Unpack a project as the Edge API does: a new directory under the sources dir."""
        self._uploads += 1
        path = self.sources / f"upload-{self._uploads}"
        path.mkdir()
        (path / "paradrop.yaml").write_text(json.dumps(chute))
        return str(path)

    def run(self, type_, target=None, **params):
        """Submit a change and let time pass until it ends; the change as the journal has it then."""
        change = self.queue.submit(type_, target, "tester", params)
        for _ in range(1000):
            self.clock.advance(0.1)
            change = self.queue.get(change.id)
            if change.state.final:
                return change
        raise AssertionError(f"change {change.id} did not end")

    def steps(self, change_id):
        """The plan of a change as journaled, step by step."""
        return [entry["step"] for entry in self.queue.steps(change_id)]

    def observed(self) -> dict:
        """What the node holds: our engine objects (containers as name -> running) and project dirs."""
        found = _fired(self.engine.list_objects(NODE_LABEL))
        return {"containers": {name: _fired(self.engine.inspect_container(name)).running
                               for name, _ in found["containers"]},
                "networks": {name for name, _ in found["networks"]},
                "volumes": {name for name, _ in found["volumes"]},
                "images": {name for name, _ in found["images"]},
                "sources": {str(path) for path in self.sources.iterdir()}}


def previous_release_node(root: Path) -> UnitNode:
    """A node starting on what the release before node-scoped names left: its store with hello (running,
    host port 8001) and spare (stopped, 8002), their projects, and their objects under the old names, the
    /data volumes among them. No change has run yet."""
    conn = memory_database()
    chutes = [(description("hello"), RUNNING, 7), (description("spare", port=8002), STOPPED, 8)]
    sources = {chute["name"]: root / "sources" / f"upload-{chute['name']}" for chute, _, _ in chutes}
    previous_release.write_store(conn, [(chute, state, deployment, str(sources[chute["name"]]))
                                        for chute, state, deployment in chutes])
    node = UnitNode(root, conn)
    engine, build_dir = node.engine, root / "previous-build"
    build_dir.mkdir()
    (build_dir / "Dockerfile").write_text(f"FROM {BASE_IMAGES['python3']}\n")
    _fired(engine.pull_image(PULLED_IMAGE))
    for chute, state, deployment in chutes:
        name, version = chute["name"], str(chute["version"])
        sources[name].mkdir()
        (sources[name] / "paradrop.yaml").write_text(json.dumps(chute))
        labels = {**naming.labels(name, version), **NODE_LABELS}
        _fired(engine.create_network(previous_release.network(name), labels))
        _fired(engine.create_volume(previous_release.volume(name), {**labels, DATA_LABEL: "yes"}))
        image = previous_release.image(name, "main", version, deployment)
        _fired(engine.build_image(build_dir, image, {**naming.labels(name, version, deployment, "main"),
                                                     **NODE_LABELS}))
        port = chute["services"]["main"]["requests"]["port-bindings"][0]["external"]
        for service, ref, ports in (("main", image, [PortBinding(port, 8000)]), ("side", PULLED_IMAGE, [])):
            container = previous_release.container(name, service, deployment)
            _fired(engine.create_container(ContainerSpec(
                container, ref, labels={**naming.labels(name, version, deployment, service), **NODE_LABELS},
                network=previous_release.network(name), aliases=[service], port_bindings=ports,
                volumes={previous_release.volume(name): "/data"})))
            if state == RUNNING:
                _fired(engine.start_container(container))
    return node


def expected(records) -> dict:
    """What ``observed`` is when the engine holds exactly the recorded chutes, nothing more."""
    state = {"containers": {}, "networks": set(), "volumes": set(), "images": set(), "sources": set()}
    for record in records:
        spec = record.spec()
        for svc in spec.services:
            state["containers"][NAMES.container(record.name, svc.name, record.deployment)] = \
                record.state == RUNNING
            if svc.type != "image":
                state["images"].add(NAMES.image(record.name, svc.name, spec.version, record.deployment))
        state["networks"].add(NAMES.network(record.name))
        state["volumes"].add(record.volume)
        if record.source_dir:
            state["sources"].add(record.source_dir)
    return state


def holding_data(engine) -> set:
    """The volumes that hold a chute's data (see DATA_LABEL)."""
    return {name for name, _ in _fired(engine.list_objects(DATA_LABEL))["volumes"]}


def committed(records, commit_step: dict):
    """The records once ``commit_step`` (a journaled step) has run."""
    by_name = {record.name: record for record in records}
    if commit_step["action"] == "save_chute":
        record = ChuteRecord.from_dict(commit_step["args"]["record"])
        by_name[record.name] = record
    elif commit_step["action"] == "forget_chute":
        del by_name[commit_step["args"]["name"]]
    return sorted(by_name.values(), key=lambda r: r.name)


def _fired(d):
    results = []
    d.addBoth(results.append)
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]
