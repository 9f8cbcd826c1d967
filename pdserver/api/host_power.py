"""Rebooting and powering off the host: owner only, as a change in the queue, audited.

pdtools 0.13.2 posts ParaDrop's change form ``{"name": "__PARADROP__", "updateClass": "ROUTER", "updateType":
"reboot"|"shutdown"}`` to /api/v1/changes and follows the change: it reads ``change_id`` without looking at the
status, so that route always queues the change, and a refusal comes as the change's failure naming why. Ours,
/api/v1/host/reboot and /api/v1/host/shutdown, answer a refusal at once (409 not allowed here, 503 no logind)
and queue nothing.
"""
from twisted.internet import defer

from pdserver import errors
from pdserver.api.routing import Call, Response, RouteTable
from pdserver.auth.roles import Permission

PARADROP_CHANGE = {
    "type": "object", "additionalProperties": False, "required": ["updateClass", "updateType"],
    "description": "ParaDrop's change form; this node takes its host power changes",
    "properties": {"name": {"type": "string", "maxLength": 64}, "updateClass": {"enum": ["ROUTER"]},
                   "updateType": {"enum": ["reboot", "shutdown"]}},
}
CHANGE_TYPES = {"reboot": ("host-reboot", "reboot"), "shutdown": ("host-shutdown", "poweroff")}


class HostPowerResource:
    routes = RouteTable("host")

    def __init__(self, power, queue, audit):
        """``power``: the node's IHostPower (pdserver.sysconfig.host_power)."""
        self._power = power
        self._queue = queue
        self._audit = audit

    def _submit(self, call: Call, kind: str) -> Response:
        change = self._queue.submit(CHANGE_TYPES[kind][0], None, call.username)
        return Response({"change_id": change.id}, 202)

    @routes.route("/api/v1/changes", "POST", permission=Permission.POWER_HOST, body=PARADROP_CHANGE, status=202,
                  summary="Queue a change in ParaDrop's form (pdtools 0.13.2's reboot and shutdown); follow it at "
                          "/ws/changes/<id>/stream: a refusal is the change's failure")
    def paradrop_change(self, call: Call):
        return self._submit(call, call.body["updateType"])

    @routes.route("/api/v1/host/reboot", "POST", permission=Permission.POWER_HOST, status=202,
                  error_statuses=(409, 503),
                  summary="Reboot the host (a change); 409 where the node may not, 503 without systemd-logind")
    def reboot(self, call: Call):
        return self._checked(call, "reboot")

    @routes.route("/api/v1/host/shutdown", "POST", permission=Permission.POWER_HOST, status=202,
                  error_statuses=(409, 503),
                  summary="Power off the host (a change); 409 where the node may not, 503 without systemd-logind")
    def shutdown(self, call: Call):
        return self._checked(call, "shutdown")

    @defer.inlineCallbacks
    def _checked(self, call: Call, kind: str):
        try:
            yield self._power.check(CHANGE_TYPES[kind][1])
        except errors.Error as e:
            self._audit.record(call.username, f"host-{kind}", "refused", address=call.address,
                               detail={"code": e.code, "message": e.message})
            raise
        return self._submit(call, kind)
