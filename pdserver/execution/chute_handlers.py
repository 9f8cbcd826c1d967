"""Handlers of chute changes: read the committed state, plan, run. The API's checks (pdserver.chutes.checks)
repeat at run time because the state may have changed while the change waited in the queue; an install
or update that fails removes the project it brought."""
import shutil
from pathlib import Path
from typing import Callable, List, Optional

from twisted.internet import defer, threads

from pdserver import errors
from pdserver.changes.model import ChangeFailed, ChangeState
from pdserver.chutes import checks, policy
from pdserver.chutes.naming import LABEL_NODE, ChuteNames
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, STOPPED, ChuteStore
from pdserver.execution import chute_plans as plans
from pdserver.execution.chute_actions import all_of
from pdserver.execution.executor import Executor
from pdserver.execution.handlers import run_plan
from pdserver.execution.network_plans import NetworkFacts


def _failed(error: errors.Error) -> ChangeFailed:
    """A request check that fails at run time, with the field and code the API would have answered."""
    return ChangeFailed(error.message, {"field": error.field, "code": error.code})


class ChuteHandlers:
    def __init__(self, executor: Executor, store: ChuteStore, engine, clock, names: ChuteNames,
                 node_policy: Callable[[], policy.NodePolicy], sources_dir: Path,
                 pending_sources: Callable[[], List[str]],
                 network_facts: Callable[[], NetworkFacts] = NetworkFacts):
        """``pending_sources()`` names the project dirs that queued changes will still use;
        ``node_policy()`` and ``network_facts()`` are the node's policy for chutes and its host networks as
        they stand (the host config can change)."""
        self._network_facts = network_facts
        self._sources_dir = sources_dir
        self._pending_sources = pending_sources
        self._names = names
        self._node_policy = node_policy
        self._node_label = f"{LABEL_NODE}={names.node_id}"
        self._executor = executor
        self._store = store
        self._engine = engine
        self._clock = clock

    def handlers(self) -> dict:
        return {"install": self.install, "update": self.update, "delete": self.delete, "start": self.start,
                "stop": self.stop, "restart": self.restart, "reconcile": self.reconcile}

    def _facts(self) -> plans.NodeFacts:
        return plans.NodeFacts(self._names, self._node_policy(), self._network_facts(), tuple(self._store.list()))

    def _spec(self, params, facts: plans.NodeFacts):
        """The chute as the node accepts it: valid, and within the node's policy (errors.Error otherwise)."""
        spec = build(params["description"])
        policy.check(spec, facts.policy)
        return spec

    def _record(self, name):
        try:
            return checks.installed(self._store, name)
        except errors.Error as e:
            raise _failed(e) from None

    @defer.inlineCallbacks
    def _bringing_upload(self, context, run):
        """Run an install or update; when it fails (its checks or its plan), remove the project it brought
        unless the installed chute uses it (a restart with new settings reuses the installed project)."""
        try:
            result = yield defer.maybeDeferred(run, context.change.params)
        except errors.Error as e:
            yield self._discard_upload(context.change)
            raise _failed(e) from None
        except BaseException:
            yield self._discard_upload(context.change)
            raise
        return result

    def finished(self, change) -> Optional[defer.Deferred]:
        """The queue's finish hook: an install or update that never ran (cancelled while queued, or
        interrupted before its plan adopted the project) leaves no project behind either."""
        if change.type in ("install", "update") and change.state is not ChangeState.SUCCEEDED:
            return self._discard_upload(change)
        return None

    def _discard_upload(self, change) -> defer.Deferred:
        source = change.params.get("source_dir")
        record = self._store.get(change.target) if change.target else None
        if not source or (record is not None and record.source_dir == source):
            return defer.succeed(None)
        return threads.deferToThreadPool(self._clock, self._clock.getThreadPool(), shutil.rmtree, source, True)

    def install(self, context):
        def run(params):
            facts = self._facts()
            spec = self._spec(params, facts)
            checks.name_free(self._store, spec.name)
            steps = plans.plan_install(facts, spec, context.change.id, params.get("source_dir"),
                                       self._clock.seconds())
            return run_plan(self._executor, context, steps, f"installed {spec.name} {spec.version}")
        return self._bringing_upload(context, run)

    def update(self, context):
        def run(params):
            facts = self._facts()
            spec = self._spec(params, facts)
            old = checks.installed(self._store, spec.name)
            checks.newer(old, spec.version, same_version_ok=params.get("same_version_ok", False))
            steps = plans.plan_update(facts, old, spec, context.change.id, params.get("source_dir"),
                                      self._clock.seconds())
            return run_plan(self._executor, context, steps, f"updated {spec.name} to {spec.version}")
        return self._bringing_upload(context, run)

    def delete(self, context):
        record = self._record(context.change.target)
        return run_plan(self._executor, context, plans.plan_delete(self._facts(), record), f"removed {record.name}")

    def start(self, context):
        record = self._record(context.change.target)
        if record.state == RUNNING:
            context.progress(f"{record.name} is already running; checking its services")
        return run_plan(self._executor, context, plans.plan_start(self._facts(), record, self._clock.seconds()),
                        f"{record.name} is running")

    def stop(self, context):
        record = self._record(context.change.target)
        if record.state == STOPPED:
            context.progress(f"{record.name} is already stopped")
        return run_plan(self._executor, context, plans.plan_stop(self._facts(), record, self._clock.seconds()),
                        f"{record.name} is stopped")

    def restart(self, context):
        record = self._record(context.change.target)
        return run_plan(self._executor, context, plans.plan_restart(self._facts(), record, self._clock.seconds()),
                        f"{record.name} restarted")

    @defer.inlineCallbacks
    def reconcile(self, context):
        context.progress("comparing installed chutes with the Docker engine")
        observed = yield self.observe()
        on_disk = [str(p) for p in self._sources_dir.iterdir()] if self._sources_dir.is_dir() else []
        steps = plans.plan_reconcile(self._facts(), self._store.list(), observed, (on_disk, self._pending_sources()))
        result = yield run_plan(self._executor, context, steps, f"converged with {len(steps)} step(s)")
        return result

    @defer.inlineCallbacks
    def observe(self):
        """What the engine holds with our chute label, in the shape plan_reconcile takes."""
        found = yield self._engine.list_objects(self._node_label)
        names = [name for name, _labels in found["containers"]]
        states = yield all_of([self._engine.inspect_container(name) for name in names])
        containers = {name: {"running": state.running} for name, state in zip(names, states) if state is not None}
        return {"containers": containers,
                "networks": {name: {} for name, _ in found["networks"]},
                "volumes": {name: {} for name, _ in found["volumes"]},
                "images": {name: {} for name, _ in found["images"]}}
