"""Route tables: each resource declares its routes with the permission they need.

One declaration drives three things: the Klein route (both slash forms, since
ParaDrop's clients post to ``/chutes/``), the auth check, and the OpenAPI
document, so the document cannot drift from what is served.
"""
import dataclasses
import json
import re
from typing import Any, Callable, Dict, List, Optional

from klein import Klein
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import IResource
from werkzeug.exceptions import MethodNotAllowed as WerkzeugMethodNotAllowed
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from pdserver import errors
from pdserver.api.body import read_json
from pdserver.auth.principal import Principal
from pdserver.auth.roles import CHUTE_CONTEXT, CHUTE_SELF, Permission, allowed

log = Logger()

JSON_HEADERS = {b"content-type": b"application/json", b"cache-control": b"no-store",
                b"x-content-type-options": b"nosniff"}


@dataclasses.dataclass(frozen=True)
class QueryParam:
    kind: type = str
    default: Any = None
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    choices: Optional[tuple] = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class RouteSpec:
    path: str
    method: str
    func: Callable
    summary: str
    permission: Optional[Permission]
    body: Optional[dict] = None
    status: int = 200
    websocket: bool = False
    query: Dict[str, QueryParam] = dataclasses.field(default_factory=dict)
    tag: str = ""
    chute_param: Optional[str] = None

    @property
    def public(self) -> bool:
        return self.permission is None


@dataclasses.dataclass
class Call:
    """Everything a handler needs from the request, already checked."""

    request: Any
    principal: Optional[Principal]
    address: Optional[str]
    body: Any
    query: Dict[str, Any]

    @property
    def username(self) -> Optional[str]:
        return self.principal.username if self.principal else None


@dataclasses.dataclass
class Response:
    body: Any
    status: int = 200
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)


PUBLIC = None


class RouteTable:
    def __init__(self, tag: str):
        self.tag = tag
        self.specs: List[RouteSpec] = []

    def route(self, path: str, method: str = "GET", *, permission: Optional[Permission], summary: str,
              body: Optional[dict] = None, status: int = 200, websocket: bool = False,
              query: Optional[Dict[str, QueryParam]] = None, chute_param: Optional[str] = None):
        """Declare a route; ``permission=PUBLIC`` (None) means no token is needed.

        ``chute_param`` names the URL part holding a chute name: a chute's own token may use the
        route for that chute only (and only with a permission in CHUTE_SELF).
        """
        def declare(func):
            self.specs.append(RouteSpec(path, method, func, summary, permission, body, status, websocket,
                                        query or {}, self.tag, chute_param))
            return func
        return declare


def _client_address(request) -> Optional[str]:
    peer = request.getClientAddress()
    return getattr(peer, "host", None)


def _parse_query(request, params: Dict[str, QueryParam]) -> Dict[str, Any]:
    out = {}
    for name, param in params.items():
        values = request.args.get(name.encode())
        if not values:
            out[name] = param.default
            continue
        raw = values[-1].decode("utf-8", "replace")
        if param.kind is int:
            try:
                value = int(raw)
            except ValueError:
                raise errors.InvalidInput(f"{name} must be an integer", field=name, code="invalid_field") from None
            if (param.minimum is not None and value < param.minimum) or \
                    (param.maximum is not None and value > param.maximum):
                raise errors.InvalidInput(f"{name} must be between {param.minimum} and {param.maximum}",
                                        field=name, code="invalid_field")
        else:
            value = raw
        if param.choices is not None and value not in param.choices:
            raise errors.InvalidInput(f"{name} must be one of {', '.join(map(str, param.choices))}",
                                    field=name, code="invalid_field")
        out[name] = value
    return out


def _check_chute_scope(spec: RouteSpec, principal: Principal, kwargs: dict) -> None:
    if spec.permission in CHUTE_CONTEXT:
        return
    if spec.permission in CHUTE_SELF and spec.chute_param and kwargs.get(spec.chute_param) == principal.chute:
        return
    raise errors.Forbidden(f"the token of chute {principal.chute} may not {spec.permission.value} here",
                           field="token")


def write_json(request, status: int, body, headers: Optional[dict] = None) -> bytes:
    request.setResponseCode(status)
    for name, value in JSON_HEADERS.items():
        request.setHeader(name, value)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return json.dumps(body).encode() + b"\n"


def write_error(request, error: errors.Error) -> bytes:
    return write_json(request, error.status, error.body(), error.headers)


class Router:
    """Builds one Klein app from route tables and applies auth, bodies and the error model."""

    def __init__(self, auth, max_body_bytes: int):
        self.app = Klein()
        self.specs: List[RouteSpec] = []
        self._auth = auth
        self._max_body = max_body_bytes
        self.app.handle_errors(WerkzeugNotFound)(self._not_found)
        self.app.handle_errors(WerkzeugMethodNotAllowed)(self._method_not_allowed)

    def _not_found(self, request, failure):
        return write_error(request, errors.NotFound("no such resource", field="path"))

    def _method_not_allowed(self, request, failure):
        return write_error(request, errors.MethodNotAllowed(
            f"{request.method.decode()} is not allowed here", field="method"))

    def add(self, resource: Any, table: RouteTable) -> None:
        for spec in table.specs:
            bound = spec.func.__get__(resource)
            handler = self._wrap(spec, bound)
            base = spec.path.rstrip("/")
            endpoint = f"{spec.method} {base}"
            self.app.route(base, methods=[spec.method], endpoint=endpoint)(handler)
            self.app.route(base + "/", methods=[spec.method], endpoint=endpoint + "/")(handler)
            self.specs.append(spec)

    def _wrap(self, spec: RouteSpec, func: Callable):
        auth, max_body = self._auth, self._max_body

        @defer.inlineCallbacks
        def handle(request, **kwargs):
            address = _client_address(request)
            try:
                principal = None
                if spec.permission is not None:
                    principal = yield auth.authenticate(request.getHeader("authorization"), address)
                    if principal.chute is not None:
                        _check_chute_scope(spec, principal, kwargs)
                    elif not allowed(principal.role, spec.permission):
                        raise errors.Forbidden(
                            f"role {principal.role.label} may not {spec.permission.value}", field="role")
                query = _parse_query(request, spec.query)
                body = read_json(request, spec.body, max_body) if spec.body is not None else None
                result = yield defer.maybeDeferred(func, Call(request, principal, address, body, query), **kwargs)
            except errors.Error as e:
                return write_error(request, e)
            except defer.CancelledError:
                raise
            except Exception:
                log.failure("unhandled error in {method} {path}", method=spec.method, path=spec.path)
                return write_error(request, errors.InternalError("internal error; see the node log"))
            if spec.websocket and IResource.providedBy(result):
                return result
            if isinstance(result, Response):
                return write_json(request, result.status, result.body, result.headers)
            return write_json(request, spec.status, result)

        handle.__name__ = func.__name__
        return handle


_PARAM = re.compile(r"<(?:[a-z]+:)?([a-zA-Z_]+)>")


def openapi_document(specs: List[RouteSpec], version: str) -> dict:
    """OpenAPI 3.1 from the route tables; public routes carry ``security: []``."""
    paths: Dict[str, dict] = {}
    for spec in specs:
        path = _PARAM.sub(r"{\1}", spec.path)
        op: Dict[str, Any] = {"summary": spec.summary, "operationId": f"{spec.method.lower()}{path}",
                              "tags": [spec.tag],
                              "responses": {str(spec.status): {"description": "success"},
                                            "4XX": {"description": "error",
                                                    "content": {"application/json": {
                                                        "schema": {"$ref": "#/components/schemas/Error"}}}}}}
        params = [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                  for name in _PARAM.findall(spec.path)]
        params += [{"name": name, "in": "query", "required": False, "description": q.description,
                    "schema": {"type": "integer" if q.kind is int else "string"}}
                   for name, q in spec.query.items()]
        if params:
            op["parameters"] = params
        if spec.body is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": spec.body}}}
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
            "schemas": {"Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
                "code": {"type": "string"}, "message": {"type": "string"},
                "field": {"type": ["string", "null"]}}}}}},
        },
        "security": [{"bearer": []}, {"basic": []}],
    }
