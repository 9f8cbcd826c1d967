"""Your nodes, live, over a websocket: the list once, then a node each time its presence or reported state changed
(the dashboard's nodes pages; no polling)."""
import json

from twisted.logger import Logger

from pdserver import errors
from pdserver.api.routing import Call, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.controller.api.auth import CloudPermission
from pdserver.controller.nodes import PAGE_MAX

log = Logger()


class NodeStreamProtocol:
    """Sends the list (GET /api/v1/nodes) as pages ``{"nodes": [...], "more": bool}``, then ``{"node": {...}}`` as
    read after each change of one of those nodes, or ``{"removed": id}`` when it can no longer be read (deleted,
    or you are no member now).
    Nodes made after the socket opened appear on the next one. The store serialises its reads on one connection,
    so the list and the re-reads come in the order of the writes."""

    nodes = None
    node_events = None
    username = None

    def onOpen(self):
        self._unsubscribe = {}
        self._closed = False
        self._read_page(None)

    def _read_page(self, cursor):
        self.nodes.list(self.username, PAGE_MAX, cursor).addCallbacks(self._listed, self._failed)

    def _listed(self, found):
        if self._closed:
            return
        page, cursor = found
        self._send({"nodes": page, "more": cursor is not None})
        for node in page:
            node_id = node["id"]
            self._unsubscribe[node_id] = self.node_events.listen(node_id, lambda _, n=node_id: self._changed(n))
        if cursor is not None:
            self._read_page(cursor)

    def _changed(self, node_id):
        self.nodes.get(self.username, node_id).addCallbacks(lambda node: self._send({"node": node}),
                                                            self._unreadable, errbackArgs=(node_id,))

    def _unreadable(self, failure, node_id):
        if not failure.check(errors.NotFound, errors.Forbidden):
            log.failure("cannot read node {node} for {user}", failure, node=node_id, user=self.username)
            return
        stop = self._unsubscribe.pop(node_id, None)
        if stop is not None:
            stop()
            self._send({"removed": node_id})

    def _send(self, message):
        if not self._closed:
            self.sendMessage(json.dumps(message).encode(), isBinary=False)

    def _failed(self, failure):
        if not self._closed:
            self.sendClose(1011, "cannot read your nodes")

    def onMessage(self, payload, isBinary):
        """Clients only listen; whatever they send is ignored."""

    def onClose(self, wasClean, code, reason):
        self._closed = True
        for stop in getattr(self, "_unsubscribe", {}).values():
            stop()
        self._unsubscribe = {}


class NodeStreamResource:
    routes = RouteTable("nodes")

    def __init__(self, nodes, node_events):
        self._nodes = nodes
        self._node_events = node_events

    @routes.route("/ws/nodes", "GET", permission=CloudPermission.USER, websocket=True,
                  summary="Websocket: {nodes: [...]} (your nodes), then {node: {...}} each time one's presence or "
                          "reported state changed, {removed: id} when it is gone")
    def stream(self, call: Call):
        return bound_websocket(NodeStreamProtocol, nodes=self._nodes, node_events=self._node_events,
                               username=call.username)
