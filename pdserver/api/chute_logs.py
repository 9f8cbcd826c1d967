"""Websockets that follow a chute's output: ``/ws/chute_logs/<chute>`` and pdtools' ``/sockjs/logs/<chute>``.

Each socket is a listener of the monitor's LogHub (one reader per container, whatever the number of
sockets); it leaves the hub when it closes, however it closes. Over the hub's caps the upgrade is refused
with a 429 naming the cap.
"""
import hashlib
import json

from pdserver import errors
from pdserver.api.routing import Call, RouteTable, credential_headers
from pdserver.api.websocket import bound_websocket
from pdserver.auth.roles import Permission
from pdserver.monitor.logs import TooManyFollowers

_POLICY_VIOLATION = 1008
_MAX_REASON_BYTES = 120  # a close frame's reason holds at most 123 bytes


class ChuteLogsProtocol:
    """Each frame is {"service", "timestamp", "message"}."""

    hub = None
    chute = None
    token = None
    containers = ()
    _listener = None

    def onOpen(self):
        try:
            self._listener = self.hub.join(self.chute, self.token, self.containers, self._send)
        except TooManyFollowers as e:
            reason = e.message.encode()[:_MAX_REASON_BYTES].decode(errors="ignore")
            self.sendClose(code=_POLICY_VIOLATION, reason=reason)

    def _send(self, service, timestamp, text):
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps({"service": service, "timestamp": timestamp, "message": text}).encode(),
                             isBinary=False)

    def onMessage(self, payload, isBinary):
        """Clients only listen."""

    def onClose(self, wasClean, code, reason):
        if self._listener is not None:
            self.hub.leave(self._listener)


def token_key(request) -> str:
    """Which credential opened a socket, without keeping the credential."""
    credential = (credential_headers(request.requestHeaders, True) or [b""])[0]
    return hashlib.sha256(credential).hexdigest()[:32]


class ChuteLogsResource:
    routes = RouteTable("chutes")

    def __init__(self, store, monitor):
        self._store = store
        self._monitor = monitor

    def _socket(self, call: Call, chute: str):
        record = self._store.get(chute)
        if record is None:
            raise errors.NotFound(f"no chute {chute} is installed", field="chute")
        token = token_key(call.request)
        self._monitor.logs.check(chute, token)
        return bound_websocket(ChuteLogsProtocol, hub=self._monitor.logs, chute=chute, token=token,
                               containers=tuple(self._monitor.containers(record)))

    @routes.route("/ws/chute_logs/<chute>", "GET", permission=Permission.READ_CHUTE_LOGS, chute_param="chute",
                  websocket=True, summary="Websocket: follow the output of all of a chute's services")
    def chute_logs_socket(self, call: Call, chute):
        return self._socket(call, chute)

    @routes.route("/sockjs/logs/<chute>", "GET", permission=Permission.READ_CHUTE_LOGS, chute_param="chute",
                  websocket=True, summary="Websocket: the same, at the path ParaDrop's pdtools uses")
    def sockjs_logs_socket(self, call: Call, chute):
        return self._socket(call, chute)
