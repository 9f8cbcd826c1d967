"""The node's snap interfaces: pdtools 0.13.2's list-snap-interfaces asks ParaDrop's snapd proxy,
``GET /snapd/v2/interfaces``, and reads snapd's answer shape (``result.plugs``, each with its connections).

The node does not proxy snapd: it answers that shape itself, for its own snap only (pdserver.sysconfig.snapd),
and off snapd with empty lists and a note.
"""
from pdserver.api.routing import Call, RouteTable
from pdserver.auth.roles import Permission

_SUMMARY = ("The node's snap plugs and slots with their connections, in snapd's answer shape "
            "({type, status-code, status, result: {plugs, slots}}); empty with a note when not running as a snap")


class SnapResource:
    routes = RouteTable("info")

    def __init__(self, snapd):
        """``snapd``: an ISnapd."""
        self._snapd = snapd

    @routes.route("/snapd/v2/interfaces", "GET", permission=Permission.READ_CONFIG, summary=_SUMMARY,
                  error_statuses=(503,))
    @routes.route("/api/v1/snap/interfaces", "GET", permission=Permission.READ_CONFIG, summary=_SUMMARY,
                  error_statuses=(503,))
    def interfaces(self, call: Call):
        def shaped(found):
            answer = {"type": "sync", "status-code": 200, "status": "OK", "snap": found["snap"],
                      "result": {"plugs": found["plugs"], "slots": found["slots"]}}
            if found["note"]:
                answer["note"] = found["note"]
            return answer
        return self._snapd.connections().addCallback(shaped)
