"""Changes: list, inspect, cancel, and the progress stream websocket."""
import json

from pdserver import errors
from pdserver.api.routing import Call, QueryParam, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.auth.roles import Permission
from pdserver.changes.model import ChangeState


class ChangeStreamProtocol:
    """Sends a change's history, then its live messages, then the result, and closes."""

    queue = None
    change_id = None

    def onOpen(self):
        self._unsubscribe = None
        change = self.queue.get(self.change_id)
        history = self.queue.messages(self.change_id)
        if change.state.final:
            last = history.pop() if history else {"time": change.finished, "message": change.state.value}
            for message in history:
                self._send(message)
            self._send({**last, "state": change.state.value, "result": change.result})
            self.sendClose(1000)
            return
        for message in history:
            self._send(message)
        self._unsubscribe = self.queue.observe(self.change_id, self._on_event)

    def _on_event(self, event):
        self._send(event)
        if "state" in event:
            self._unsubscribe = None
            self.sendClose(1000)

    def _send(self, event):
        self.sendMessage(json.dumps(event).encode(), isBinary=False)

    def onMessage(self, payload, isBinary):
        """Clients only listen; whatever they send is ignored."""

    def onClose(self, wasClean, code, reason):
        if getattr(self, "_unsubscribe", None) is not None:
            self._unsubscribe()
            self._unsubscribe = None


class ChangesResource:
    routes = RouteTable("changes")

    def __init__(self, queue):
        self._queue = queue

    def _get(self, change_id: int):
        change = self._queue.get(change_id)
        if change is None:
            raise errors.NotFound(f"no change {change_id}", field="change_id")
        return change

    @routes.route("/api/v1/changes", "GET", permission=Permission.READ_CHANGES, summary="List changes, newest first",
                  query={"state": QueryParam(str, None, choices=tuple(s.value for s in ChangeState),
                                             description="only changes in this state"),
                         "limit": QueryParam(int, 100, 1, 1000, description="changes per page"),
                         "before": QueryParam(int, None, 1, None, description="only changes with a smaller id")})
    def list_changes(self, call: Call):
        q = call.query
        state = ChangeState(q["state"]) if q["state"] else None
        return [c.summary() for c in self._queue.list(state, q["limit"], q["before"])]

    @routes.route("/api/v1/changes/<int:change_id>", "GET", permission=Permission.READ_CHANGES,
                  summary="One change with its progress messages")
    def get_change(self, call: Call, change_id):
        change = self._get(change_id)
        return {**change.summary(), "messages": self._queue.messages(change_id)}

    @routes.route("/api/v1/changes/<int:change_id>/cancel", "POST", permission=Permission.CANCEL_CHANGE,
                  summary="Cancel a queued change")
    def cancel_change(self, call: Call, change_id):
        self._get(change_id)
        return self._queue.cancel(change_id, call.username).summary()

    @routes.route("/ws/changes/<int:change_id>/stream", "GET", permission=Permission.READ_CHANGES,
                  summary="Websocket: a change's progress messages, then its result", websocket=True)
    def stream_change(self, call: Call, change_id):
        self._get(change_id)
        return bound_websocket(ChangeStreamProtocol, queue=self._queue, change_id=change_id)
