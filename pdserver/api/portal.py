"""The node portal: the static pages of pdserver/web at ``/`` and ``/web/<file>``, without a token.

The pages hold no secret; every API call they make carries the token of the person logged in. The files are read
once, at start, into a table keyed by name: a request is a lookup of its raw path in that table, so no path a
client sends (``..``, encoded slashes, NUL, sub-directories) ever reaches the filesystem; anything else is a 404.
Every answer carries a strict Content-Security-Policy (no inline script or style, nothing from elsewhere).
"""
import dataclasses
import hashlib
import re
from pathlib import Path
from typing import Dict

from twisted.web.resource import Resource

from pdserver import errors
from pdserver.api.routing import write_error

WEB_DIR = Path(__file__).resolve().parent.parent / "web"
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


def load(directory: Path = WEB_DIR) -> Dict[bytes, StaticFile]:
    """Every servable file of ``directory`` (flat; known types only) by the path it is served at."""
    files = {}
    for path in sorted(directory.iterdir()):
        content_type = CONTENT_TYPES.get(path.suffix)
        if content_type is None or not path.is_file() or not _NAME.fullmatch(path.name):
            continue
        body = path.read_bytes()
        etag = b'"%s"' % hashlib.sha256(body).hexdigest()[:32].encode()
        files[PREFIX + path.name.encode()] = StaticFile(body, content_type, etag)
    files[b"/"] = files[PREFIX + b"index.html"]
    return files


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
