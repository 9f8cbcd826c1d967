"""Health, the OpenAPI document, where the WAMP router is, and the audit log."""
from typing import Callable, Optional

from pdserver import __version__
from pdserver.api.openapi import openapi_document
from pdserver.api.routing import PUBLIC, Call, QueryParam, RouteTable
from pdserver.controller.api.auth import CloudPermission


class MetaResource:
    routes = RouteTable("meta")

    def __init__(self, router, links: Callable[[], dict], audit, max_body: int, max_upload: int,
                 router_joined: Callable[[], Optional[bool]] = lambda: None):
        self._router = router
        self._router_joined = router_joined
        self._links = links
        self._audit = audit
        self._limits = (max_body, max_upload)
        self._document = None

    @routes.route("/api/v1/health", "GET", permission=PUBLIC,
                  summary="The controller answers; router: whether its backend is joined to the WAMP router (what a "
                          "load balancer in front of several backends checks before sending them deployments)")
    def health(self, call: Call):
        return {"status": "ok", "version": __version__, "router": self._router_joined()}

    @routes.route("/api/v1/openapi.json", "GET", permission=PUBLIC, summary="This document")
    def openapi(self, call: Call):
        if self._document is None:
            document = openapi_document(self._router.specs, __version__, *self._limits)
            document["info"]["title"] = "ParaDrop Controller API"
            document["security"] = [{"bearer": []}]
            del document["components"]["securitySchemes"]["basic"]
            self._document = document
        return self._document

    @routes.route("/api/v1/router", "GET", permission=PUBLIC, summary="The WAMP router nodes connect to")
    def router(self, call: Call):
        return {"wamp_router": self._links()["wamp_router"]}

    @routes.route("/api/v1/audit", "GET", permission=CloudPermission.USER,
                  summary="Audit records, newest first: everyone's for admins, your own for others",
                  query={"limit": QueryParam(int, 100, 1, 1000, description="records per page"),
                         "before": QueryParam(int, None, 1, None, description="only records with a smaller id")})
    def audit(self, call: Call):
        actor = None if call.principal.admin else call.username
        return self._audit.list(actor, call.query["limit"], call.query["before"])
