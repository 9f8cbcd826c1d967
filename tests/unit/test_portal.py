"""The portal's static files: what is served, with which headers, and that no hostile path reaches a file."""
import pytest
from twisted.web.test.requesthelper import DummyRequest

from pdserver.api import app, portal
from pdserver.api.accounts import AccountsResource
from pdserver.api.audit import AuditResource
from pdserver.api.changes import ChangesResource
from pdserver.api.chute_logs import ChuteLogsResource
from pdserver.api.chute_networks import ChuteNetworksResource
from pdserver.api.chutes import ChutesResource
from pdserver.api.provision import ProvisionResource
from pdserver.api.config import ConfigResource
from pdserver.api.info import InfoResource
from pdserver.api.network import NetworkResource
from pdserver.api.node_log import NodeLogResource
from pdserver.api.metrics import MetricsResource
from pdserver.api.openapi import OpenApiResource
from pdserver.api.host_power import HostPowerResource
from pdserver.api.snap import SnapResource
from pdserver.api.ssh_keys import SshKeysResource
from pdserver.api.status import StatusResource

FILES = portal.load()


def get(path: bytes, method=b"GET", headers=None):
    request = DummyRequest([])
    request.path = request.uri = path
    request.method = method
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    body = portal.PortalResource(FILES).render(request)
    return request, body


def header(request, name):
    return request.responseHeaders.getRawHeaders(name, [None])[0]


@pytest.mark.parametrize("path, kind", [(b"/", b"text/html; charset=utf-8"),
                                        (b"/web/index.html", b"text/html; charset=utf-8"),
                                        (b"/web/app.js", b"text/javascript; charset=utf-8"),
                                        (b"/web/style.css", b"text/css; charset=utf-8")])
def test_pages_are_served_with_their_type_and_a_strict_policy(path, kind):
    request, body = get(path)
    assert request.responseCode in (None, 200)
    assert header(request, b"content-type") == kind
    csp = header(request, b"content-security-policy").decode()
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert header(request, b"x-content-type-options") == b"nosniff"
    assert header(request, b"cache-control") == b"no-cache"
    assert body == (portal.WEB_DIR / (path[5:].decode() or "index.html")).read_bytes()


def test_a_known_etag_is_answered_304_without_a_body():
    first, _ = get(b"/web/app.js")
    etag = header(first, b"etag").decode()
    again, body = get(b"/web/app.js", headers={"If-None-Match": etag})
    assert again.responseCode == 304 and body == b""
    changed, body = get(b"/web/app.js", headers={"If-None-Match": '"other"'})
    assert changed.responseCode in (None, 200) and body


@pytest.mark.parametrize("path", [b"/web/", b"/web", b"/web/../pdserver/api/portal.py", b"/web/..%2Fapi%2Fportal.py",
                                  b"/web/%2e%2e/api/portal.py", b"/web/app.js%00.html", b"/web/app.js\x00",
                                  b"/web//app.js", b"/web/sub/app.js", b"/web/%61pp.js", b"/web/App.js",
                                  b"/web/app.js/", b"/web/.hidden.js", b"/index.html", b"/web/nothing.js"])
def test_hostile_and_unknown_paths_are_404(path):
    request, body = get(path)
    assert request.responseCode == 404
    assert b'"not_found"' in body or b"not_found" in body


def test_only_reads_are_allowed():
    request, _ = get(b"/", method=b"POST")
    assert request.responseCode == 405 and header(request, b"allow") == b"GET, HEAD"


def test_no_inline_script_or_style_in_the_pages():
    html = (portal.WEB_DIR / "index.html").read_text()
    assert "<style" not in html and " style=" not in html and "<script>" not in html
    assert "http://" not in html and "https://" not in html


def test_the_portal_and_the_api_never_claim_the_same_path():
    tables = [AccountsResource, AuditResource, ChangesResource, ChuteLogsResource, ChuteNetworksResource,
              ChutesResource, ConfigResource, InfoResource, NetworkResource, OpenApiResource, StatusResource,
              MetricsResource, ProvisionResource, NodeLogResource, SshKeysResource, HostPowerResource,
              SnapResource]
    assert {t.__name__ for t in tables} >= {type_name for type_name in _resources_of_the_app()}
    for table in tables:
        for spec in table.routes.specs:
            assert not portal.is_portal_path(spec.path.encode()), spec.path
            assert not portal.is_portal_path(spec.path.rstrip("/").encode() + b"/"), spec.path


def _resources_of_the_app():
    """The resource classes app.add_resources names (so a new one is not forgotten above)."""
    import inspect
    import re
    return set(re.findall(r"\b([A-Za-z]+Resource)\(", inspect.getsource(app.add_resources)))


def _headers(**values):
    from twisted.web.http_headers import Headers
    return Headers({name.replace("_", "-").encode(): [value.encode()] for name, value in values.items()})


@pytest.mark.parametrize("values, websocket, expected", [
    ({"authorization": "Bearer a.b.c"}, True, [b"Bearer a.b.c"]),
    ({"sec_websocket_protocol": "paradrop.bearer, a.b.c"}, True, [b"Bearer a.b.c"]),
    ({"sec_websocket_protocol": "paradrop.bearer, a.b.c"}, False, None),  # only websockets take it there
    ({"sec_websocket_protocol": "chat, a.b.c"}, True, None),
    ({"sec_websocket_protocol": "paradrop.bearer"}, True, None),
    ({"sec_websocket_protocol": "paradrop.bearer, a, b"}, True, None),
])
def test_a_websocket_token_may_come_as_a_subprotocol(values, websocket, expected):
    from pdserver.api.routing import credential_headers
    assert credential_headers(_headers(**values), websocket) == expected
