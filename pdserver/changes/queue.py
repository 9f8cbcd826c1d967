"""The change queue: exactly one change runs at a time, in submission order.

Submitting writes the change to the journal and returns at once; the runner
picks changes up one by one as a chain of Deferreds. Observers (the websocket
stream, the cloud link) get every progress message and the final result.
"""
import collections
from typing import Callable, Deque, Dict, List, Mapping, Optional

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from pdserver import errors
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.model import Change, ChangeFailed, ChangeState

Observer = Callable[[dict], None]


class UnknownChangeType(ValueError):
    pass


class NotCancellable(errors.Conflict):
    code = "not_cancellable"


class ChangeContext:
    """What a handler gets: the change, a progress reporter and the step journal."""

    def __init__(self, queue: "ChangeQueue", change: Change):
        self._queue = queue
        self.change = change

    def progress(self, message: str) -> None:
        self._queue._emit(self.change.id, message)

    def record_plan(self, steps: List[dict]) -> None:
        self._queue._journal.record_plan(self.change.id, steps)

    def step_state(self, index: int, state: str, error: Optional[str] = None) -> None:
        self._queue._journal.step_state(self.change.id, index, state, self._queue._now(), error)


Handler = Callable[[ChangeContext], "defer.Deferred | dict | None"]
Recovery = Callable[[ChangeContext, List[dict]], "defer.Deferred | dict | None"]


class ChangeQueue(Service):
    log = Logger()
    STOP_GRACE = 30.0

    def __init__(self, journal: ChangeJournal, handlers: Mapping[str, Handler], clock,
                 recover: Optional[Recovery] = None, on_finished: Optional[Callable[[Change], None]] = None,
                 max_queued: int = 100):
        self._journal = journal
        self._handlers = dict(handlers)
        self._clock = clock
        self._recover = recover
        self._on_finished = on_finished
        self._pending: Deque[int] = collections.deque()
        self._running: Optional[int] = None
        self._running_done: Optional[defer.Deferred] = None
        self._pump_scheduled = False
        self._observers: Dict[int, List[Observer]] = {}
        self._max_queued = max_queued

    def plug(self, handlers: Mapping[str, Handler], recover: Optional[Recovery] = None,
             on_finished: Optional[Callable[[Change], None]] = None) -> None:
        """Add change types (and the crash recovery and end-of-change hook) before the queue starts: the
        queue knows no change type itself, the node plugs them in."""
        if self.running:
            raise RuntimeError("plug change types in before the queue starts")
        self._handlers.update(handlers)
        self._recover = recover if recover is not None else self._recover
        self._on_finished = on_finished if on_finished is not None else self._on_finished

    def _now(self) -> float:
        return self._clock.seconds()

    @property
    def running_change(self) -> Optional[int]:
        return self._running

    def get(self, change_id: int) -> Optional[Change]:
        return self._journal.get(change_id)

    def list(self, state: Optional[ChangeState] = None, limit: int = 100, before: Optional[int] = None
             ) -> List[Change]:
        """Changes newest first, optionally only those in ``state`` or with an id below ``before``."""
        return self._journal.list(state, limit, before)

    def messages(self, change_id: int) -> List[dict]:
        return self._journal.messages(change_id)

    def steps(self, change_id: int) -> List[dict]:
        """The change's plan as journaled, with each step's state."""
        return self._journal.steps(change_id)

    def unfinished(self) -> List[Change]:
        """The running change and the queued ones: what still reads its parameters (upload dirs, say)."""
        return self._journal.list(ChangeState.QUEUED, limit=-1) + self._journal.list(ChangeState.RUNNING)

    def submit(self, type_: str, target: Optional[str], user: Optional[str], params: Optional[dict] = None) -> Change:
        """Journal and queue a change; Throttled when ``max_queued`` changes already wait."""
        if type_ not in self._handlers:
            raise UnknownChangeType(type_)
        if len(self._pending) >= self._max_queued:
            raise errors.Throttled(5.0, f"{len(self._pending)} changes are waiting already; retry when they have run")
        change = self._journal.create(type_, target, user, params or {}, self._now())
        self._journal.add_message(change.id, change.created, f"change {change.id} queued: {type_}"
                                 + (f" {target}" if target else ""))
        self._pending.append(change.id)
        self._schedule_pump()
        return change

    def cancel(self, change_id: int, user: Optional[str]) -> Change:
        change = self._journal.get(change_id)
        if change is None:
            raise KeyError(change_id)
        if change.state is not ChangeState.QUEUED:
            raise NotCancellable(f"change {change_id} is {change.state.value}; only queued changes can be cancelled",
                                 field="change_id")
        try:
            self._pending.remove(change_id)
        except ValueError:
            pass
        self._emit(change_id, f"cancelled by {user}")
        self._finish(change_id, ChangeState.CANCELLED, {"message": f"cancelled by {user}"})
        return self._journal.get(change_id)

    def observe(self, change_id: int, observer: Observer) -> Callable[[], None]:
        """Call ``observer`` with every future event of a change; returns the unsubscribe function."""
        self._observers.setdefault(change_id, []).append(observer)

        def unsubscribe():
            observers = self._observers.get(change_id, [])
            if observer in observers:
                observers.remove(observer)
            if not observers:
                self._observers.pop(change_id, None)
        return unsubscribe

    def _emit(self, change_id: int, message: str) -> None:
        now = self._now()
        self._journal.add_message(change_id, now, message)
        event = {"time": now, "message": message}
        for observer in list(self._observers.get(change_id, [])):
            self._notify(change_id, observer, event)

    def _notify(self, change_id: int, observer: Observer, event: dict) -> None:
        """An observer that raises (a websocket closed at the wrong moment) is dropped; the change goes on."""
        try:
            observer(event)
        except Exception:
            self.log.failure("observer of change {id} failed; unsubscribed", id=change_id)
            observers = self._observers.get(change_id, [])
            if observer in observers:
                observers.remove(observer)

    def _finish(self, change_id: int, state: ChangeState, result: Optional[dict],
                needs_attention: bool = False) -> None:
        now = self._now()
        self._journal.finish(change_id, state, result, now, needs_attention)
        message = f"change {change_id} {state.value}"
        if result and result.get("message"):
            message += f": {result['message']}"
        self._journal.add_message(change_id, now, message)
        finished = self._journal.get(change_id)
        self._log_end(finished, result)
        final = {"time": now, "message": message, "state": state.value, "result": result}
        for observer in self._observers.pop(change_id, []):
            self._notify(change_id, observer, final)
        if self._on_finished is not None:
            try:
                self._on_finished(finished)
            except Exception:
                self.log.failure("on_finished of change {id} failed", id=change_id)

    def _log_end(self, change: Change, result: Optional[dict]) -> None:
        """One line per finished change: what, on which chute, for whom, how it ended and how long it ran (or
        waited, when it never started)."""
        duration = (change.finished or 0.0) - (change.started or change.created)
        reason = (result or {}).get("message") if change.state is not ChangeState.SUCCEEDED else None
        emit = self.log.info if change.state in (ChangeState.SUCCEEDED, ChangeState.CANCELLED) else self.log.warn
        emit("change {id} {result}: {what} by {who} in {duration} s{reason}", id=change.id, what=_what(change),
             result=change.state.value, type=change.type, chute=change.target, who=change.user or "the node",
             duration=round(duration, 2), reason=f" ({reason})" if reason else "")

    @defer.inlineCallbacks
    def startService(self):
        """Roll back what a crash left running, then resume the queued changes in order."""
        for change_id in self._journal.ids_in_state(ChangeState.RUNNING):
            yield self._recover_interrupted(change_id)
        self._pending.extend(self._journal.ids_in_state(ChangeState.QUEUED))
        super().startService()
        self._pump()

    @defer.inlineCallbacks
    def _recover_interrupted(self, change_id: int):
        change = self._journal.get(change_id)
        context = ChangeContext(self, change)
        self._emit(change_id, "the node stopped while this change was running; rolling back")
        result, needs_attention = {"message": "interrupted by a node restart; rolled back"}, False
        if self._recover is not None:
            try:
                extra = yield defer.maybeDeferred(self._recover, context, self._journal.steps(change_id))
                result.update(extra or {})
            except ChangeFailed as e:
                result = {"message": f"interrupted; rollback failed: {e.message}", **e.details}
                needs_attention = True
            except Exception as e:
                self.log.failure("recovery of change {id} failed", id=change_id)
                result = {"message": f"interrupted; rollback failed: {e}"}
                needs_attention = True
        self._finish(change_id, ChangeState.INTERRUPTED, result, needs_attention)

    def stopService(self):
        """Stop taking changes; wait (bounded) for the running one to end."""
        super().stopService()
        if self._running_done is None:
            return defer.succeed(None)
        waiting = defer.Deferred()

        def release(result=None):
            if not waiting.called:
                waiting.callback(None)
            return result

        self._running_done.addBoth(release)
        timer = self._clock.callLater(self.STOP_GRACE, release)
        waiting.addCallback(lambda _: timer.cancel() if timer.active() else None)
        return waiting

    def _schedule_pump(self) -> None:
        """Run the next change in a later reactor turn, so a submitter answers before work starts."""
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._clock.callLater(0, self._pump)

    def _pump(self) -> None:
        self._pump_scheduled = False
        while self.running and self._running is None and self._pending:
            change_id = self._pending.popleft()
            change = self._journal.get(change_id)
            if change is None or change.state is not ChangeState.QUEUED:
                continue
            self._start(change)

    def _start(self, change: Change) -> None:
        self._running = change.id
        self._journal.set_running(change.id, self._now())
        self._emit(change.id, f"change {change.id} started")
        self.log.info("change {id} started: {what} by {who}", id=change.id, what=_what(change), type=change.type,
                      chute=change.target, who=change.user or "the node")
        context = ChangeContext(self, change)
        done = defer.maybeDeferred(self._handlers[change.type], context)
        done.addCallbacks(self._succeeded, self._failed, callbackArgs=(change,), errbackArgs=(change,))
        done.addErrback(self._log_lost, change)
        self._running_done = done
        done.addBoth(self._next, change)

    def _log_lost(self, failure: Failure, change: Change) -> None:
        """The end of the chain: whatever failed while finishing a change is logged, never dropped."""
        self.log.failure("finishing change {id} ({type}) failed", failure, id=change.id, type=change.type)

    def _succeeded(self, result, change: Change) -> None:
        self._finish(change.id, ChangeState.SUCCEEDED, result if isinstance(result, dict) else None)

    def _failed(self, failure: Failure, change: Change) -> None:
        if failure.check(ChangeFailed):
            error = failure.value
            self._finish(change.id, ChangeState.FAILED, {"message": error.message, **error.details},
                         error.needs_attention)
        else:
            self.log.failure("change {id} ({type}) failed unexpectedly", failure, id=change.id, type=change.type)
            self._finish(change.id, ChangeState.FAILED, {"message": f"internal error: {failure.getErrorMessage()}"})

    def _next(self, _, change: Change) -> None:
        self._running = None
        self._running_done = None
        self._schedule_pump()


def _what(change: Change) -> str:
    return f"{change.type} {change.target}" if change.target else change.type
