"""The OpenAPI document of the routes this node actually serves."""
from pdserver import __version__
from pdserver.api.routing import PUBLIC, Call, RouteTable, openapi_document


class OpenApiResource:
    routes = RouteTable("meta")

    def __init__(self, router):
        self._router = router
        self._document = None

    @routes.route("/api/v1/openapi.json", "GET", permission=PUBLIC, summary="This document")
    def openapi(self, call: Call):
        if self._document is None:
            self._document = openapi_document(self._router.specs, __version__)
        return self._document
