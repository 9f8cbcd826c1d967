"""Runs a plan step by step, journaling each one; on failure undoes the finished steps in reverse.

Undo steps must be idempotent and safe on a step that was only partly applied:
after a crash the journal knows a step started but not how far it got, so
recovery undoes started steps too.
"""
from typing import Any, Callable, List, Mapping, Optional, Protocol, Sequence

from twisted.internet import defer
from twisted.logger import Logger

from pdserver.execution.steps import Step

Action = Callable[[Mapping[str, Any]], Any]


class StepJournal(Protocol):
    def progress(self, message: str) -> None: ...
    def step_started(self, index: int, step: dict) -> None: ...
    def step_state(self, index: int, state: str, error: Optional[str] = None) -> None: ...


class StepFailed(Exception):
    def __init__(self, index: int, step: Step, error: str, undo_errors: List[str]):
        super().__init__(f"step {index + 1} ({step.description}) failed: {error}")
        self.index = index
        self.step = step
        self.error = error
        self.undo_errors = undo_errors


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
        """Refuse a plan naming an action we cannot run, before running any of it."""
        for step in steps:
            for s in (step, step.undo):
                if s is not None and s.action not in self._actions:
                    raise ValueError(f"no executor for action {s.action!r}")

    @defer.inlineCallbacks
    def run(self, steps: Sequence[Step], journal: StepJournal):
        self.check(steps)
        done: List[tuple] = []
        for index, step in enumerate(steps):
            journal.step_started(index, step.to_dict())
            journal.progress(f"step {index + 1}/{len(steps)}: {step.description}")
            try:
                yield defer.maybeDeferred(self._actions[step.action], step.args)
            except Exception as e:
                journal.step_state(index, "failed", str(e))
                journal.progress(f"step {index + 1} failed: {e}; rolling back")
                undo_errors = yield self._undo([(index, step)] + done[::-1], journal)
                raise StepFailed(index, step, str(e), undo_errors)
            journal.step_state(index, "finished")
            done.append((index, step))
            if self._after_step is not None:
                self._after_step(index)

    @defer.inlineCallbacks
    def rollback(self, journaled: Sequence[dict], journal: StepJournal):
        """Undo journaled steps (started or finished) in reverse; raise RollbackFailed if an undo fails."""
        pending = [(entry["index"], Step.from_dict(entry["step"])) for entry in journaled
                   if entry["state"] in ("started", "finished", "failed")]
        errors = yield self._undo(pending[::-1], journal)
        if errors:
            raise RollbackFailed(errors)
        return len(pending)

    @defer.inlineCallbacks
    def _undo(self, steps_newest_first, journal: StepJournal):
        errors = []
        for index, step in steps_newest_first:
            if step.undo is None:
                continue
            try:
                yield defer.maybeDeferred(self._actions[step.undo.action], step.undo.args)
            except Exception as e:
                self.log.failure("undo of step {index} ({description}) failed", index=index,
                                 description=step.description)
                errors.append(f"undo of step {index + 1} ({step.description}) failed: {e}")
                journal.step_state(index, "undo-failed", str(e))
                continue
            journal.step_state(index, "undone")
            journal.progress(f"undid step {index + 1}: {step.undo.description}")
        return errors
