"""Deployments of store versions to nodes or a group, and their live progress over a websocket."""
import json

from pdserver import errors
from pdserver.api.routing import Call, QueryParam, Response, RouteTable
from pdserver.api.websocket import bound_websocket
from pdserver.controller.api.auth import CloudPermission
from pdserver.controller.deployments import MAX_NODES
from pdserver.controller.interfaces import FINAL_DELIVERY_STATES
from pdserver.controller.store import CHUTE_NAME

USER = CloudPermission.USER
_NODE_ID = {"type": "string", "pattern": "^[0-9a-f]{8,64}$"}


UPDATES_PER_MESSAGE = 1000


class DeploymentStreamProtocol:
    """Sends the deliveries' states, then their updates, as JSON arrays of {node_id, state, message, time}: the
    updates of one turn of the reactor go in one message (a deployment to 10,000 nodes makes 10,000 of them,
    and a message each cost the controller and the browser more than the updates themselves). Closes once
    every delivery is final."""

    events = None
    deployments = None
    principal = None
    deployment_id = None
    reactor = None

    def onOpen(self):
        self._states = {}
        self._unfinished = 0  # deliveries not final: counted, so each update costs the same at 10,000 nodes
        self._buffer = []  # updates that arrive while the snapshot is read
        self._out = []  # updates for the message at the end of this turn of the reactor
        self._flush_call = None
        self._closed = False
        self._unsubscribe = self.events.listen(self.deployment_id, self._on_event)
        self.deployments.get(self.principal, self.deployment_id).addCallbacks(self._snapshot, self._failed)

    def _snapshot(self, deployment):
        if self._closed:
            return
        for d in deployment["deliveries"]:
            self._apply({"node_id": d["node_id"], "state": d["state"], "message": d["message"],
                         "time": d["updated"]}, snapshot=True)
        buffered, self._buffer = self._buffer, None
        for event in buffered:
            self._apply(event)
        self._send()

    def _failed(self, failure):
        self._stop()
        if not self._closed:
            self.sendClose(1011, "cannot read the deployment")

    def _on_event(self, event):
        if self._buffer is not None:
            self._buffer.append(event)
            return
        self._apply(event)
        if self._out and self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._send)

    def _apply(self, event, snapshot=False):
        node_id = event.get("node_id")
        if not snapshot and (node_id not in self._states or self._states[node_id] in FINAL_DELIVERY_STATES):
            return
        state = event.get("state")
        if node_id in self._states:
            self._unfinished -= 1  # only an unfinished delivery gets here again
        self._unfinished += state not in FINAL_DELIVERY_STATES
        self._states[node_id] = state
        self._out.append({"node_id": node_id, "state": state, "message": event.get("message"),
                          "time": event.get("time")})

    def _send(self):
        """The updates gathered (in messages of at most UPDATES_PER_MESSAGE), then the close if all are final."""
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        if self._closed:
            return
        out, self._out = self._out, []
        for start in range(0, len(out), UPDATES_PER_MESSAGE):
            self.sendMessage(json.dumps(out[start:start + UPDATES_PER_MESSAGE]).encode(), isBinary=False)
        if not self._unfinished:
            self._stop()
            self.sendClose(1000)

    def _stop(self):
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def onMessage(self, payload, isBinary):
        """Clients only listen; whatever they send is ignored."""

    def onClose(self, wasClean, code, reason):
        self._closed = True
        if getattr(self, "_flush_call", None) is not None and self._flush_call.active():
            self._flush_call.cancel()
        if getattr(self, "_unsubscribe", None) is not None:
            self._stop()


class DeploymentsResource:
    routes = RouteTable("deployments")

    def __init__(self, deployments, events, reactor):
        self._deployments = deployments
        self._events = events
        self._reactor = reactor

    @routes.route("/api/v1/deployments", "POST", permission=USER, status=202,
                  summary="Deploy a store version to nodes or to a group: one delivery per node",
                  body={"type": "object", "additionalProperties": False, "required": ["chute", "version"],
                        "properties": {"chute": CHUTE_NAME, "version": {"type": "string", "minLength": 1,
                                                                          "maxLength": 128},
                                       "nodes": {"type": "array", "minItems": 1, "maxItems": MAX_NODES,
                                                 "items": _NODE_ID},
                                       "group": {"type": "string", "minLength": 1, "maxLength": 64}}})
    def create(self, call: Call):
        body = call.body
        if ("nodes" in body) == ("group" in body):
            raise errors.InvalidInput("give either nodes (a list of node ids) or group", field="nodes")
        d = self._deployments.create(call.principal, body["chute"], body["version"], body.get("nodes"),
                                     body.get("group"), call.address)
        return d.addCallback(lambda result: Response(result, 202))

    @routes.route("/api/v1/deployments", "GET", permission=USER, summary="Your deployments, newest first",
                  query={"limit": QueryParam(int, 100, 1, 1000, description="deployments per page")})
    def list(self, call: Call):
        return self._deployments.list(call.principal, call.query["limit"])

    @routes.route("/api/v1/deployments/<deployment_id>", "GET", permission=USER,
                  summary="A deployment with the state of each delivery")
    def get(self, call: Call, deployment_id):
        return self._deployments.get(call.principal, deployment_id)

    @routes.route("/ws/deployments/<deployment_id>", "GET", permission=USER, websocket=True,
                  summary="Websocket: JSON arrays of {node_id, state, message, time}, the deliveries' states "
                          "then their updates; closes when all are final")
    def stream(self, call: Call, deployment_id):
        d = self._deployments.get(call.principal, deployment_id)
        return d.addCallback(lambda _: bound_websocket(
            DeploymentStreamProtocol, events=self._events, deployments=self._deployments,
            principal=call.principal, deployment_id=deployment_id, reactor=self._reactor))
