"""Change handlers: turn a queued change into a plan and run it through the executor."""
from twisted.internet import defer

from pdserver.changes.model import ChangeFailed
from pdserver.execution.executor import Executor, RollbackFailed, StepFailed
from pdserver.execution.plans import plan_hostconfig
from pdserver.sysconfig.hostconfig import HostConfigStore


def host_actions(store: HostConfigStore) -> dict:
    return {"write_hostconfig": lambda args: store.save(args["config"])}


class ExecutionHandlers:
    """The handler per change type, plus crash recovery, over one executor."""

    def __init__(self, executor: Executor, hostconfig: HostConfigStore):
        self._executor = executor
        self._hostconfig = hostconfig

    def handlers(self) -> dict:
        return {"hostconfig": self.update_hostconfig}

    @defer.inlineCallbacks
    def _run(self, context, steps):
        if not steps:
            context.progress("nothing to do: the node already has this configuration")
            return {"message": "no change needed", "steps": 0}
        try:
            yield self._executor.run(steps, context)
        except StepFailed as e:
            if e.committed:
                raise ChangeFailed(f"{e}; the change was applied but left this step undone",
                                   {"failed_step": e.step.description}, needs_attention=True) from None
            if e.undo_errors:
                raise ChangeFailed(str(e), {"undo_errors": e.undo_errors}, needs_attention=True) from None
            raise ChangeFailed(f"{e}; rolled back") from None
        return {"message": f"applied {len(steps)} step(s)", "steps": len(steps)}

    def update_hostconfig(self, context):
        steps = plan_hostconfig(self._hostconfig.load(), context.change.params["config"])
        return self._run(context, steps)

    @defer.inlineCallbacks
    def recover(self, context, journaled_steps):
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
