"""``/ws/status``: the node's telemetry every few seconds and its chutes' container events as they happen."""
import json

from pdserver.api.routing import Call, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.auth.roles import Permission


class StatusProtocol:
    """Each frame is one StatusHub message (JSON with a ``type``); it leaves the hub however it closes."""

    hub = None
    _stop = None

    def onOpen(self):
        self._stop = self.hub.listen(self._send)

    def _send(self, message):
        if self.state == self.STATE_OPEN:
            self.sendMessage(json.dumps(message).encode(), isBinary=False)

    def onMessage(self, payload, isBinary):
        """Clients only listen."""

    def onClose(self, wasClean, code, reason):
        if self._stop is not None:
            self._stop()
            self._stop = None


class StatusResource:
    routes = RouteTable("info")

    def __init__(self, hub):
        self._hub = hub

    @routes.route("/ws/status", "GET", permission=Permission.READ_CHUTES, websocket=True,
                  summary="Websocket: node telemetry every few seconds and chute container events as they happen")
    def status(self, call: Call):
        return bound_websocket(StatusProtocol, hub=self._hub)
