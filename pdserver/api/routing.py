"""Route tables and the router: each resource declares its routes once, with the permission and body they take.

One declaration drives four things: matching (both slash forms, since ParaDrop's clients post to ``/chutes/``),
admission from a request's head before its body is read (route, caller, body kind and size), dispatch
(pdserver.api.dispatch) and the OpenAPI document, so the document cannot drift from what is served. Errors of
every layer (pdserver.errors) become the JSON answer here, in one place.
"""
import dataclasses
import functools
import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import unquote_to_bytes

from twisted.logger import Logger
from werkzeug.exceptions import MethodNotAllowed as NoSuchMethod
from werkzeug.exceptions import NotFound as NoSuchPath
from werkzeug.routing import BaseConverter, Map, RequestRedirect, Rule

from pdserver import errors
from pdserver.api.body import TAR_TYPES, is_json, media_type
from pdserver.api.params import INT64_MAX, QueryParam, parse_int  # resources import QueryParam from here
from pdserver.auth.principal import Principal
from pdserver.auth.roles import CHUTE_CONTEXT, CHUTE_SELF, Permission, allowed

log = Logger()

JSON_HEADERS = {b"content-type": b"application/json", b"cache-control": b"no-store",
                b"x-content-type-options": b"nosniff"}
PATH_ID_BOUNDS = (1, INT64_MAX)
MATCH_CACHE_SIZE = 1024  # request lines whose match is remembered (cleared when full: bounded memory)
_INT_PARAM = re.compile(r"<int:([a-zA-Z_]+)>")
# A browser cannot set Authorization on a websocket: it offers the subprotocols ("paradrop.bearer", <token>)
# instead, and the node accepts the first (pdserver.api.websocket).
BEARER_SUBPROTOCOL = "paradrop.bearer"


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
    body_required: bool = True
    upload: bool = False
    error_statuses: Tuple[int, ...] = ()

    @property
    def public(self) -> bool:
        return self.permission is None

    @property
    def int_params(self) -> List[str]:
        return _INT_PARAM.findall(self.path)


@dataclasses.dataclass
class Call:
    """Everything a handler needs from the request, already checked."""

    request: Any
    principal: Optional[Principal]
    body: Any
    query: Dict[str, Any]

    @property
    def username(self) -> Optional[str]:
        return self.principal.username if self.principal else None

    @functools.cached_property
    def address(self) -> Optional[str]:
        """The client's IP address (looked up only by the handlers that use it)."""
        return client_address(self.request)


def credential_headers(headers, websocket: bool) -> Optional[List[bytes]]:
    """The Authorization header, or for a websocket without one the Bearer token its subprotocols carry."""
    header = headers.getRawHeaders(b"authorization")
    if header or not websocket:
        return header
    offered = [p.strip() for p in b",".join(headers.getRawHeaders(b"sec-websocket-protocol", [])).split(b",")]
    if len(offered) == 2 and offered[0] == BEARER_SUBPROTOCOL.encode():
        return [b"Bearer " + offered[1]]
    return None


def client_address(request) -> Optional[str]:
    return getattr(request.getClientAddress(), "host", None)


@dataclasses.dataclass
class Response:
    body: Any
    status: int = 200
    headers: Dict[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class RawResponse:
    """An answer that is not JSON (the Prometheus text format, say): ``body`` bytes of ``content_type``."""
    body: bytes
    content_type: str


PUBLIC = None


class RouteTable:
    def __init__(self, tag: str):
        self.tag = tag
        self.specs: List[RouteSpec] = []

    def route(self, path: str, method: str = "GET", *, permission: Optional[Permission], summary: str,
              body: Optional[dict] = None, status: int = 200, websocket: bool = False,
              query: Optional[Dict[str, QueryParam]] = None, chute_param: Optional[str] = None,
              body_required: bool = True, upload: bool = False, error_statuses: Tuple[int, ...] = ()):
        """Declare a route; ``permission=PUBLIC`` (None) means no token is needed.

        ``body`` is the JSON Schema of the body, which the router parses and validates into ``call.body``
        (``body_required=False``: only when one was sent). ``upload=True``: the route also takes a tar of a
        chute project, up to the upload limit, and reads its body itself (``body`` then documents its JSON form).
        ``chute_param`` names the URL part holding a chute name: a chute's own token may use the route for that
        chute only (and only with a permission in CHUTE_SELF). ``error_statuses``: error statuses the handler
        itself answers beyond those the declaration implies (for the OpenAPI document).
        """
        def declare(func):
            self.specs.append(RouteSpec(path, method, func, summary, permission, body, status, websocket,
                                        query or {}, self.tag, chute_param, body_required, upload,
                                        tuple(error_statuses)))
            return func
        return declare


def encode(body) -> bytes:
    return json.dumps(body).encode() + b"\n"


def write_json(request, status: int, body, headers: Optional[dict] = None) -> bytes:
    request.setResponseCode(status)
    for name, value in JSON_HEADERS.items():
        request.setHeader(name, value)
    for name, value in (headers or {}).items():
        request.setHeader(name, value)
    return encode(body)


def write_error(request, error: errors.Error) -> bytes:
    return write_json(request, error.status, error.body(), error.headers)


def authorize(spec: RouteSpec, principal: Principal, args: dict) -> None:
    """Raise Forbidden unless ``principal`` may use this route (with these arguments)."""
    if principal.chute is None:
        if not allowed(principal.role, spec.permission):
            raise errors.Forbidden(f"role {principal.role.label} may not {spec.permission.value}", field="role")
        return
    if spec.permission in CHUTE_CONTEXT:
        return
    if spec.permission in CHUTE_SELF and spec.chute_param and args.get(spec.chute_param) == principal.chute:
        return
    raise errors.Forbidden(f"the token of chute {principal.chute} may not {spec.permission.value} here",
                           field="token")


@dataclasses.dataclass(frozen=True)
class Route:
    spec: RouteSpec
    handler: Callable
    int_params: Tuple[str, ...]


class Admission:
    """What the router made of a request's head: its route, arguments and caller, or the error to answer.

    ``basic`` holds an HTTP Basic Authorization header still to check (argon2 cannot run before the body);
    ``limit`` is the largest body the route takes with this content type.
    """

    __slots__ = ("route", "args", "principal", "basic", "limit", "error")

    def __init__(self, route=None, args=None, principal=None, basic=None, limit=0, error=None):
        self.route = route
        self.args = args
        self.principal = principal
        self.basic = basic
        self.limit = limit
        self.error = error


class _Segment(BaseConverter):
    """``<int:...>`` matches any one segment: the router makes it a bounded integer or a 400 naming the
    parameter (werkzeug's own converter would answer 404 to ``abc`` and pass on ids of any size)."""

    weight = 50


class Router:
    """Matches requests against the route tables and admits them: route, auth, body kind and size."""

    def __init__(self, auth, max_body_bytes: int, max_upload_bytes: int,
                 authorize: Callable[[RouteSpec, Any, dict], None] = authorize):
        """``authorize(spec, principal, args)`` raises Forbidden unless the caller may use the route: the
        node's role table by default; the controller brings its own (its permissions are per node)."""
        self.specs: List[RouteSpec] = []
        self._auth = auth
        self.authorize = authorize
        self._max_body = max_body_bytes
        self._max_upload = max_upload_bytes
        self._routes: Dict[str, Route] = {}
        self._map = Map(converters={"int": _Segment}, merge_slashes=False, redirect_defaults=False)
        self._adapter = self._map.bind("node")
        self._matches: Dict[Tuple[bytes, bytes], Tuple[Route, dict]] = {}

    def add(self, resource: Any, table: RouteTable) -> None:
        for spec in table.specs:
            endpoint = f"{spec.method} {spec.path}"
            base = spec.path.rstrip("/")
            for path in (base, base + "/"):
                self._map.add(Rule(path, methods=[spec.method], endpoint=endpoint))
            self._routes[endpoint] = Route(spec, spec.func.__get__(resource), tuple(spec.int_params))
            self.specs.append(spec)

    def admit(self, method: bytes, path: bytes, headers, body_length: Optional[int]) -> Admission:
        """Decide from the head of a request; ``body_length`` is None for a chunked body, 0 for none."""
        try:
            route, args = self._matches.get((method, path)) or self._match(method, path)
            spec = route.spec
            principal = basic = None
            if spec.permission is not None:
                principal, basic = self._authenticate(spec, args, credential_headers(headers, spec.websocket))
            if spec.websocket and b"websocket" not in b",".join(headers.getRawHeaders(b"upgrade", [])).lower():
                raise errors.UpgradeRequired("this route is a websocket: upgrade the connection", field="Upgrade",
                                             headers={"Upgrade": "websocket"})
            limit = 0 if body_length == 0 else self._body_limit(spec, headers, body_length)
            return Admission(route, args, principal, basic, limit)
        except errors.Error as e:
            return Admission(error=e)
        except Exception:
            log.failure("unhandled error admitting {method} {path}", method=method, path=path[:200])
            return Admission(error=errors.InternalError("internal error; see the node log"))

    def admit_request(self, request) -> Admission:
        """The same for a request that arrived whole (not through our channel)."""
        content = request.content
        length = 0
        if content is not None:
            length = content.seek(0, 2)
            content.seek(0)
        return self.admit(request.method, request.path, request.requestHeaders, length)

    def _match(self, method: bytes, path: bytes):
        """(route, arguments) of a request line, remembered (the arguments are shared: never change them)."""
        verb = method.decode("latin-1")
        try:
            text = unquote_to_bytes(path).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.NotFound("no such resource (the path is not UTF-8)", field="path") from None
        try:
            endpoint, args = self._adapter.match(text, verb)
        except (NoSuchPath, RequestRedirect):
            raise errors.NotFound("no such resource", field="path") from None
        except NoSuchMethod as e:
            allow = ", ".join(sorted(e.valid_methods))
            raise errors.MethodNotAllowed(f"{verb} is not allowed here; allowed: {allow}", field="method",
                                          headers={"Allow": allow}) from None
        route = self._routes[endpoint]
        for name in route.int_params:
            args[name] = parse_int(name, args[name], *PATH_ID_BOUNDS)
        if len(self._matches) >= MATCH_CACHE_SIZE:
            self._matches.clear()
        self._matches[(method, path)] = route, args
        return route, args

    def _authenticate(self, spec: RouteSpec, args: dict, header: Optional[List[bytes]]):
        """(principal, None) for a valid Bearer token the route admits, (None, header) for HTTP Basic."""
        if not header:
            raise errors.Unauthenticated("authentication required")
        text = header[0].decode("latin-1")
        scheme, _, credentials = text.partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return None, text
        if scheme != "bearer":
            raise errors.Unauthenticated("unsupported authorization scheme")
        # Bearer tokens verify synchronously (a cached HMAC check and a user lookup): Auth's own check.
        principal = self._auth.from_token(credentials.strip())
        self.authorize(spec, principal, args)
        return principal, None

    def _body_limit(self, spec: RouteSpec, headers, body_length: Optional[int]) -> int:
        media = media_type((headers.getRawHeaders(b"content-type") or [None])[0]) or "application/json"
        if spec.upload and media in TAR_TYPES:
            limit = self._max_upload
        elif is_json(media):
            limit = self._max_body
        else:
            accepted = "a chute project tar or application/json" if spec.upload else "application/json"
            raise errors.UnsupportedMediaType(f"expected {accepted}, got {media[:100]}", field="Content-Type")
        if body_length is not None and body_length > limit:
            raise errors.TooLarge(f"request body exceeds {limit} bytes", field="body")
        return limit
