"""The audit log, for admins."""
from pdserver.api.routing import Call, QueryParam, RouteTable
from pdserver.auth.roles import Permission


class AuditResource:
    routes = RouteTable("audit")

    def __init__(self, audit):
        self._audit = audit

    @routes.route("/api/v1/audit", "GET", permission=Permission.READ_AUDIT, summary="Audit records, newest first",
                  query={"limit": QueryParam(int, 100, 1, 1000, description="records per page"),
                         "before": QueryParam(int, None, 1, None, description="only records with a smaller id"),
                         "actor": QueryParam(str, None, description="only this user's records"),
                         "action": QueryParam(str, None, description="only this action")})
    def list_audit(self, call: Call):
        q = call.query
        return self._audit.list(limit=q["limit"], before=q["before"], actor=q["actor"], action=q["action"])
