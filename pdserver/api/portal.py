"""The node portal (pdserver/web) and the controller's dashboard (pdserver/web/dashboard, with the portal's shared
style and DOM helpers): static pages at ``/`` and ``/web/<file>``, without a token.

The pages hold no secret; every API call they make carries the token of the person logged in. The files are read
once, at start, into a table keyed by name: a request is a lookup of its raw path in that table, so no path a
client sends (``..``, encoded slashes, NUL, sub-directories) ever reaches the filesystem; anything else is a 404.
Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from elsewhere).
"""
import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Dict, Iterable

from twisted.web.resource import Resource

from pdserver import errors
from pdserver.api.routing import write_error

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
DASHBOARD_DIR = WEB_DIR / "dashboard"
# The portal's files the dashboard shares (generic code and look; the portal's api.js speaks the node's login).
DASHBOARD_SHARED = ("style.css", "dom.js", "http.js", "shell.js", "icon.svg")
PREFIX = b"/web/"
CONTENT_TYPES = {".html": b"text/html; charset=utf-8", ".css": b"text/css; charset=utf-8",
                 ".js": b"text/javascript; charset=utf-8", ".svg": b"image/svg+xml", ".png": b"image/png"}
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*\.[a-z]+")
CSP = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
HEADERS = {b"content-security-policy": CSP, b"x-content-type-options": b"nosniff", b"x-frame-options": b"DENY",
           b"referrer-policy": b"no-referrer",
           # Revalidate every time (a cheap 304): names carry no version, and an upgrade must show at once.
           b"cache-control": b"no-cache"}


@dataclasses.dataclass(frozen=True)
class StaticFile:
    body: bytes
    content_type: bytes
    etag: bytes


def load(directory: Path = WEB_DIR, shared: Iterable[str] = ()) -> Dict[bytes, StaticFile]:
    """Every servable file of ``directory`` (flat; known types only) by the path it is served at, with the files
    ``shared`` of the portal's directory beside them (one flat namespace: a name in both is an error)."""
    files = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and _servable(path.name):
            files[PREFIX + path.name.encode()] = _read(path)
    for name in shared:
        if not _servable(name) or PREFIX + name.encode() in files:
            raise ValueError(f"cannot share {name}: not servable, or {directory} has its own")
        files[PREFIX + name.encode()] = _read(WEB_DIR / name)
    files[b"/"] = files[PREFIX + b"index.html"]
    return files


def load_dashboard() -> Dict[bytes, StaticFile]:
    """The controller's dashboard: its own files and the portal's shared ones."""
    return load(DASHBOARD_DIR, DASHBOARD_SHARED)


def _servable(name: str) -> bool:
    return Path(name).suffix in CONTENT_TYPES and bool(_NAME.fullmatch(name))


def _read(path: Path) -> StaticFile:
    body = path.read_bytes()
    return StaticFile(body, CONTENT_TYPES[path.suffix], b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode())


def is_portal_path(path: bytes) -> bool:
    return path == b"/" or path.startswith(PREFIX)


class PortalResource(Resource):
    """GET and HEAD of the portal's files, with ETag revalidation."""

    isLeaf = True

    def __init__(self, files: Dict[bytes, StaticFile]):
        super().__init__()
        self._files = files

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            return write_error(request, errors.MethodNotAllowed(
                "the portal's pages are read-only", field="method", headers={"Allow": "GET, HEAD"}))
        found = self._files.get(request.path)
        if found is None:
            return write_error(request, errors.NotFound("no such page", field="path"))
        for name, value in HEADERS.items():
            request.setHeader(name, value)
        request.setHeader(b"etag", found.etag)
        if _matches(request.getHeader("if-none-match"), found.etag):
            request.setResponseCode(304)
            return b""
        request.setHeader(b"content-type", found.content_type)
        return found.body


def _matches(if_none_match, etag: bytes) -> bool:
    if not if_none_match:
        return False
    return any(tag.strip() in (etag.decode(), "*") for tag in if_none_match.split(","))


class SiteRoot(Resource):
    """The listener's root: the portal's paths to the portal, every other path to the API (which has no route at
    ``/`` or under ``/web/``: tests/unit/test_portal.py checks that the two never overlap)."""

    isLeaf = True

    def __init__(self, api: Resource, portal: Resource):
        super().__init__()
        self._api = api
        self._portal = portal

    def render(self, request):
        if is_portal_path(request.path):
            return self._portal.render(request)
        return self._api.render(request)
