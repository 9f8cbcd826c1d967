"""Runs a plan step by step, journaling each one.

Before a commit step has finished, a failure undoes the started steps in
reverse and the node keeps its old state. A commit step (the one that records
the new state) is the point of no return: after it, a failure leaves the new
state in place with the leftovers named, and crash recovery rolls forward.

Undo steps must be idempotent and safe on a step that was only partly applied:
after a crash the journal knows a step started but not how far it got. Steps
after a commit must be idempotent too, since recovery may run them again.
"""
from typing import Any, Callable, List, Mapping, Optional, Protocol, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from pdserver.execution.steps import Step

Action = Callable[[Mapping[str, Any], Callable[[str], None]], Any]  # (args, progress)


class StepJournal(Protocol):
    def progress(self, message: str) -> None: ...
    def record_plan(self, steps: List[dict]) -> None: ...
    def step_state(self, index: int, state: str, error: Optional[str] = None) -> None: ...


class StepFailed(Exception):
    def __init__(self, index: int, step: Step, error: str, undo_errors: List[str], committed: bool = False):
        super().__init__(f"step {index + 1} ({step.description}) failed: {error}")
        self.index = index
        self.step = step
        self.error = error
        self.undo_errors = undo_errors
        self.committed = committed


class RollbackFailed(Exception):
    def __init__(self, undo_errors: List[str]):
        super().__init__("; ".join(undo_errors))
        self.undo_errors = undo_errors


class Executor:
    log = Logger()

    def __init__(self, actions: Mapping[str, Action], after_step: Optional[Callable[[int], None]] = None):
        self._actions = dict(actions)
        self._after_step = after_step

    def check(self, steps: Sequence[Step]) -> None:
        """Refuse a plan naming an action we cannot run, or a commit step run together with others, before
        running any of it."""
        for step in steps:
            for s in (step, step.undo):
                if s is not None and s.action not in self._actions:
                    raise ValueError(f"no executor for action {s.action!r}")
            if step.commit and step.together:
                raise ValueError(f"commit step {step.description!r} must run alone")

    @defer.inlineCallbacks
    def run(self, steps: Sequence[Step], journal: StepJournal):
        self.check(steps)
        journal.record_plan([s.to_dict() for s in steps])
        yield self._run_from(list(enumerate(steps)), len(steps), _Guarded(journal), committed=False)

    @defer.inlineCallbacks
    def _run_from(self, indexed: List[tuple], total: int, journal: "_Guarded", committed: bool):
        done: List[tuple] = []
        for batch in _batches(indexed):
            for index, step in batch:
                journal.step_state(index, "started")
                journal.progress(f"step {index + 1}/{total}: {step.description}")
            outcomes = yield defer.DeferredList(
                [defer.maybeDeferred(self._actions[step.action], step.args, journal.progress) for _, step in batch],
                consumeErrors=True)
            failed = None
            for (index, step), (ok, outcome) in zip(batch, outcomes):
                if ok:
                    journal.step_state(index, "finished")
                    done.append((index, step))
                    committed = committed or step.commit
                    if self._after_step is not None:
                        self._after_step(index)
                elif failed is None:
                    failed = (index, step, outcome.value)
                else:  # a second failure in the batch: recorded, and undone with the rest
                    journal.note_state(index, "failed", str(outcome.value))
                    done.append((index, step))
            if failed is None:
                continue
            index, step, e = failed
            journal.note_state(index, "failed", str(e))
            if committed:
                journal.progress(f"step {index + 1} failed after the change was committed: {e}")
                raise StepFailed(index, step, str(e), [], committed=True)
            journal.progress(f"step {index + 1} failed: {e}; rolling back")
            undo_errors = yield self._undo(sorted(done + [(index, step)], key=lambda d: d[0], reverse=True), journal)
            raise StepFailed(index, step, str(e), undo_errors)

    @defer.inlineCallbacks
    def recover(self, journaled: Sequence[dict], journal: StepJournal):
        """Finish a change a crash interrupted: forward if it committed, else back.

        Returns ("forward" | "back", number of steps run); raises RollbackFailed
        or StepFailed when that cannot be completed.
        """
        journal = _Guarded(journal)
        steps = [(entry["index"], Step.from_dict(entry["step"]), entry["state"]) for entry in journaled]
        if any(step.commit and state == "finished" for _, step, state in steps):
            remaining = [(i, step) for i, step, state in steps if state != "finished"]
            journal.progress(f"the change had committed; finishing its last {len(remaining)} step(s)")
            yield self._run_from(remaining, len(steps), journal, committed=True)
            return "forward", len(remaining)
        started = [(i, step) for i, step, state in steps if state in ("started", "finished", "failed")]
        errors = yield self._undo(started[::-1], journal)
        if errors:
            raise RollbackFailed(errors)
        return "back", len(started)

    @defer.inlineCallbacks
    def _undo(self, steps_newest_first, journal: "_Guarded"):
        errors = []
        for index, step in steps_newest_first:
            if step.undo is None:
                continue
            try:
                yield defer.maybeDeferred(self._actions[step.undo.action], step.undo.args, journal.progress)
            except Exception as e:
                self.log.failure("undo of step {index} ({description}) failed", index=index,
                                 description=step.description)
                errors.append(f"undo of step {index + 1} ({step.description}) failed: {e}")
                journal.note_state(index, "undo-failed", str(e))
                continue
            journal.note_state(index, "undone")
            journal.progress(f"undid step {index + 1}: {step.undo.description}")
        return errors


def _batches(indexed: List[tuple]) -> List[List[tuple]]:
    """Consecutive steps marked ``together`` form one batch; every other step is a batch of its own."""
    batches: List[List[tuple]] = []
    for index, step in indexed:
        if step.together and batches and batches[-1][-1][1].together:
            batches[-1].append((index, step))
        else:
            batches.append([(index, step)])
    return batches


class _Guarded:
    """A step journal whose progress reports cannot fail a step or stop a rollback halfway.

    Forward step states still raise: a change whose steps cannot be journaled must not go on.
    """

    log = Logger()

    def __init__(self, journal: StepJournal):
        self._journal = journal

    def progress(self, message: str) -> None:
        try:
            self._journal.progress(message)
        except Exception:
            self.log.failure("progress report failed: {message}", message=message)

    def step_state(self, index: int, state: str, error: Optional[str] = None) -> None:
        self._journal.step_state(index, state, error)

    def note_state(self, index: int, state: str, error: Optional[str] = None) -> None:
        """For failure and undo records: a rollback goes on when its record fails, since undoing the rest
        matters more than the record."""
        try:
            self._journal.step_state(index, state, error)
        except Exception:
            self.log.failure("recording {state} of step {index} failed", state=state, index=index)
