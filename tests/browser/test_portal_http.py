"""The portal over a real node's HTTP: pages without a token, hostile paths 404 on the wire, API untouched, and a
websocket's subprotocol token checked like a header's."""
import http.client

import requests


def raw_get(node, path: bytes, headers=None):
    connection = http.client.HTTPConnection("127.0.0.1", node.port, timeout=10)
    try:
        connection.putrequest("GET", path.decode("latin-1"), skip_accept_encoding=True)
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


HOSTILE = (b"/web/../api/v1/health", b"/web/..%2F..%2Fsettings.py", b"/web/%2e%2e%2fapp.js", b"/web/app.js%00",
           b"/web/", b"/web//app.js", b"/web/sub%2Fapp.js", b"/web/%2Fetc%2Fpasswd")


def test_hostile_paths_are_404(node_process):
    for path in HOSTILE:
        status, headers, body = raw_get(node_process, path)
        assert (status, headers["Content-Type"]) == (404, "application/json"), (path, body)


def test_pages_api_and_websocket_tokens(node_process):
    url = node_process.url
    page = requests.get(url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    again = requests.get(url + "/", headers={"If-None-Match": page.headers["ETag"]}, timeout=10)
    assert again.status_code == 304 and again.content == b""
    assert requests.get(url + "/web/app.js", timeout=10).headers["Content-Type"].startswith("text/javascript")
    assert requests.get(url + "/api/v1/chutes", timeout=10).status_code == 401  # the API still wants a token
    assert requests.post(url + "/", timeout=10).status_code == 405

    token = node_process.token()
    change = node_process.session(token).get(url + "/api/v1/changes", timeout=10).json()[-1]["id"]
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    status, _, _ = raw_get(node_process, b"/ws/changes/%d/stream" % change,
                           {**upgrade, "Sec-WebSocket-Protocol": "paradrop.bearer, not-a-token"})
    assert status == 401
    status, headers, _ = raw_get(node_process, b"/ws/changes/%d/stream" % change,
                                 {**upgrade, "Sec-WebSocket-Protocol": f"paradrop.bearer, {token}"})
    assert status == 101 and headers["Sec-WebSocket-Protocol"] == "paradrop.bearer"
