"""Change handlers: turn a queued change into a plan and run it through the executor."""
from twisted.internet import defer

from pdserver.changes.model import ChangeFailed
from pdserver.chutes.naming import ChuteNames
from pdserver.execution.executor import Executor, RollbackFailed, StepFailed
from pdserver.execution.plans import plan_hostconfig
from pdserver.sysconfig.hostconfig import HostConfigStore


def host_actions(store: HostConfigStore) -> dict:
    return {"write_hostconfig": lambda args, progress: store.save(args["config"])}


@defer.inlineCallbacks
def run_plan(executor: Executor, context, steps, done_message: str):
    """Run ``steps`` for a change; translate executor failures into ChangeFailed for people."""
    if not steps:
        context.progress("nothing to do: the node is already in that state")
        return {"message": "no change needed", "steps": 0}
    try:
        yield executor.run(steps, context)
    except StepFailed as e:
        if e.committed:
            raise ChangeFailed(f"{e}; the change was applied but this clean-up step failed",
                               {"failed_step": e.step.description}, needs_attention=True) from None
        if e.undo_errors:
            raise ChangeFailed(str(e), {"undo_errors": e.undo_errors}, needs_attention=True) from None
        raise ChangeFailed(f"{e}; rolled back") from None
    return {"message": done_message, "steps": len(steps)}


class RecoveryHandler:
    """Crash recovery of any change: back to the old state, or forward past its commit."""

    def __init__(self, executor: Executor):
        self._executor = executor

    @defer.inlineCallbacks
    def __call__(self, context, journaled_steps):
        try:
            direction, count = yield self._executor.recover(journaled_steps, context)
        except RollbackFailed as e:
            raise ChangeFailed("rollback failed", {"undo_errors": e.undo_errors}, needs_attention=True) from None
        except StepFailed as e:
            raise ChangeFailed(f"finishing the committed change failed: {e}", needs_attention=True) from None
        if direction == "forward":
            return {"message": "interrupted by a node restart after it was committed; completed",
                    "completed_steps": count}
        return {"rolled_back_steps": count}


class HostConfigHandlers:
    def __init__(self, executor: Executor, hostconfig: HostConfigStore, names: ChuteNames, chutes=None):
        """``chutes``: the chute store; the radios its chutes hold are checked again when the change runs."""
        self._executor = executor
        self._hostconfig = hostconfig
        self._names = names
        self._chutes = chutes

    def handlers(self) -> dict:
        return {"hostconfig": self.update_hostconfig}

    def update_hostconfig(self, context):
        held = [(r.name, r.networks) for r in self._chutes.list()] if self._chutes is not None else ()
        steps = plan_hostconfig(self._names, self._hostconfig.load(), context.change.params["config"], held)
        return run_plan(self._executor, context, steps, f"applied {len(steps)} step(s)")
