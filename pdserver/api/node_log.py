"""``/ws/paradrop_logs``: the node's own log lines, the recent ones first, then live (administrators only)."""
import json

from pdserver.api.routing import Call, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.auth.roles import Permission
from pdserver.monitor.logs import TooManyFollowers

_POLICY_VIOLATION = 1008


class NodeLogProtocol:
    """Each frame is one line: {"time", "level", "namespace", "text"}."""

    node_log = None
    call_from_thread = None
    _stop = None

    def onOpen(self):
        try:
            self._stop = self.node_log.follow(self._send, self.call_from_thread)
        except TooManyFollowers as e:
            self.sendClose(code=_POLICY_VIOLATION, reason=e.message[:120])

    def _send(self, line):
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(line).encode(), isBinary=False)

    def onMessage(self, payload, isBinary):
        """Clients only listen."""

    def onClose(self, wasClean, code, reason):
        if self._stop is not None:
            self._stop()
            self._stop = None


class NodeLogResource:
    routes = RouteTable("info")

    def __init__(self, node_log, reactor):
        self._node_log = node_log
        self._reactor = reactor

    @routes.route("/ws/paradrop_logs", "GET", permission=Permission.READ_AUDIT, websocket=True,
                  summary="Websocket: the node's own log lines, the last ones kept first, then live")
    def paradrop_logs(self, call: Call):
        self._node_log.check()
        return bound_websocket(NodeLogProtocol, node_log=self._node_log,
                               call_from_thread=self._reactor.callFromThread)
