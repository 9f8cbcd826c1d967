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


class DeploymentStreamProtocol:
    """Sends each delivery's state, then every update, and closes once every delivery is final."""

    events = None
    deployments = None
    principal = None
    deployment_id = None

    def onOpen(self):
        self._states = {}
        self._unfinished = 0  # deliveries not final: counted, so each event costs the same at 10,000 nodes
        self._buffer = []  # updates that arrive while the snapshot is read
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
        self._close_when_done()

    def _failed(self, failure):
        self._stop()
        if not self._closed:
            self.sendClose(1011, "cannot read the deployment")

    def _on_event(self, event):
        if self._buffer is not None:
            self._buffer.append(event)
            return
        self._apply(event)
        self._close_when_done()

    def _apply(self, event, snapshot=False):
        node_id = event.get("node_id")
        if not snapshot and (node_id not in self._states or self._states[node_id] in FINAL_DELIVERY_STATES):
            return
        state = event.get("state")
        if node_id in self._states:
            self._unfinished -= 1  # only an unfinished delivery gets here again
        self._unfinished += state not in FINAL_DELIVERY_STATES
        self._states[node_id] = state
        self.sendMessage(json.dumps({"node_id": node_id, "state": event.get("state"),
                                     "message": event.get("message"), "time": event.get("time")}).encode(),
                         isBinary=False)

    def _close_when_done(self):
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
        if getattr(self, "_unsubscribe", None) is not None:
            self._stop()


class DeploymentsResource:
    routes = RouteTable("deployments")

    def __init__(self, deployments, events):
        self._deployments = deployments
        self._events = events

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
                  summary="Websocket: {node_id, state, message, time} per delivery and update; closes when all "
                          "are final")
    def stream(self, call: Call, deployment_id):
        d = self._deployments.get(call.principal, deployment_id)
        return d.addCallback(lambda _: bound_websocket(
            DeploymentStreamProtocol, events=self._events, deployments=self._deployments,
            principal=call.principal, deployment_id=deployment_id))
