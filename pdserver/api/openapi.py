"""The OpenAPI 3.1 document of the routes this node actually serves, made from the route tables.

Each operation names its parameters with their types and bounds, its body (the JSON Schema; for chute
installs also the tar upload types) and the error answers it can give, all with the one Error schema.
"""
import re
from typing import Any, Dict, List

from pdserver import __version__
from pdserver.api.body import TAR_TYPES
from pdserver.api.routing import PATH_ID_BOUNDS, PUBLIC, Call, RouteSpec, RouteTable

_PARAM = re.compile(r"<(?:([a-z]+):)?([a-zA-Z_]+)>")
_ERROR_RESPONSES = {
    400: "Invalid input; `field` names the parameter or body field",
    401: "No valid token or credentials",
    403: "The caller's role (or chute token) may not do this",
    404: "No such resource",
    405: "Method not allowed here; the Allow header lists the methods that are",
    413: "The body is larger than this route takes",
    415: "The body's content type is not one this route takes",
    426: "This route is a websocket: the request must ask for the upgrade",
    429: "Too many attempts or connections; retry after Retry-After seconds",
}
_HEADERS = {
    405: {"Allow": {"description": "The methods this path takes", "schema": {"type": "string"}}},
    426: {"Upgrade": {"description": "websocket", "schema": {"type": "string"}}},
    429: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer", "minimum": 1}}},
}
ERROR_SCHEMA = {
    "type": "object", "required": ["error"], "additionalProperties": False,
    "properties": {"error": {
        "type": "object", "required": ["code", "message", "field"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                       "field": {"type": ["string", "null"]}}}},
}


def _error_statuses(spec: RouteSpec) -> List[int]:
    statuses = {405, 429}
    if spec.body is not None or spec.upload:
        statuses |= {400, 413, 415}
    if spec.query or _PARAM.search(spec.path):
        statuses |= {400, 404}
    if not spec.public:
        statuses |= {401, 403}
    if spec.websocket:
        statuses.add(426)
    return sorted(statuses | set(spec.error_statuses))


def _parameters(spec: RouteSpec) -> List[dict]:
    out = []
    for kind, name in _PARAM.findall(spec.path):
        schema: Dict[str, Any] = {"type": "string", "minLength": 1}
        if kind == "int":
            schema = {"type": "integer", "minimum": PATH_ID_BOUNDS[0], "maximum": PATH_ID_BOUNDS[1]}
        out.append({"name": name, "in": "path", "required": True, "schema": schema})
    for name, param in spec.query.items():
        out.append({"name": name, "in": "query", "required": False, "description": param.description,
                    "schema": param.schema()})
    return out


def _request_body(spec: RouteSpec, max_body: int, max_upload: int) -> dict:
    content = {}
    if spec.body is not None:
        content["application/json"] = {"schema": spec.body}
    description = f"JSON, at most {max_body} bytes"
    if spec.upload:
        for media in sorted(TAR_TYPES):
            content[media] = {"schema": {"type": "string", "contentMediaType": media}}
        description = (f"A tar (optionally gzipped) of the chute project with its paradrop.yaml, at most "
                       f"{max_upload} bytes; or JSON {{config}} with the description, at most {max_body} bytes")
    return {"required": spec.body_required, "description": description, "content": content}


def _responses(spec: RouteSpec) -> dict:
    error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    responses: Dict[str, Any] = {str(spec.status): {"description": "Success"}}
    for status in _error_statuses(spec):
        responses[str(status)] = {"description": _ERROR_RESPONSES.get(status, "Error"), "content": error_content,
                                  **({"headers": _HEADERS[status]} if status in _HEADERS else {})}
    responses["4XX"] = {"description": "Another client error", "content": error_content}
    return responses


def openapi_document(specs: List[RouteSpec], version: str, max_body: int, max_upload: int) -> dict:
    """OpenAPI 3.1 from the route tables; public routes carry ``security: []``."""
    paths: Dict[str, dict] = {}
    for spec in specs:
        path = _PARAM.sub(r"{\2}", spec.path)
        op: Dict[str, Any] = {"summary": spec.summary, "operationId": f"{spec.method.lower()}{path}",
                              "tags": [spec.tag], "responses": _responses(spec)}
        params = _parameters(spec)
        if params:
            op["parameters"] = params
        if spec.body is not None or spec.upload:
            op["requestBody"] = _request_body(spec, max_body, max_upload)
        if spec.public:
            op["security"] = []
        else:
            op["x-permission"] = spec.permission.value
        if spec.websocket:
            op["x-websocket"] = True
        paths.setdefault(path, {})[spec.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "ParaDrop Edge API", "version": version},
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                                "basic": {"type": "http", "scheme": "basic"}},
            "schemas": {"Error": ERROR_SCHEMA},
        },
        "security": [{"bearer": []}, {"basic": []}],
    }


class OpenApiResource:
    routes = RouteTable("meta")

    def __init__(self, router, max_body: int, max_upload: int):
        self._router = router
        self._limits = (max_body, max_upload)
        self._document = None

    @routes.route("/api/v1/openapi.json", "GET", permission=PUBLIC, summary="This document")
    def openapi(self, call: Call):
        if self._document is None:
            self._document = openapi_document(self._router.specs, __version__, *self._limits)
        return self._document
