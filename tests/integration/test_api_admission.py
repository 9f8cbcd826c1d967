"""Requests are judged by their head before a byte of their body is read (issue 6 item 5).

Each test sends a head announcing a large body over a raw socket and sends no body at all: an answer that
arrives anyway proves the node decided without reading (or spooling) the body. Refused requests with a body
close their connection; the answer is the usual JSON error.
"""
import socket
import time

import pytest
import pytest_twisted
from twisted.internet import threads

from pdserver.auth.tokens import TokenIssuer
from pdserver.secretfiles import load_or_create_secret
from tests.integration import rawhttp
from tests.integration.http import get_json

BIG = 200 * 1024 * 1024
TAR = {"Content-Type": "application/x-tar", "Content-Length": BIG}


def answer_to_head(port, method, path, headers):
    """Send only a head, read the answer, and tell whether the node then closed the connection."""
    with rawhttp.connect(port) as sock:
        sock.sendall(rawhttp.head(method, path, headers))
        answer = rawhttp.read_answer(sock, method)
        answer.closed = rawhttp.closed_by_server(sock)
        return answer


async def refused_at_once(node, method, path, headers, status, code, field):
    answer = await threads.deferToThread(answer_to_head, node.node.http.port, method, path, headers)
    assert answer.status == status, answer.raw
    assert answer.error["code"] == code and answer.error["field"] == field, answer.body
    assert answer.headers["connection"] == "close" and answer.closed
    return answer


@pytest_twisted.ensureDeferred
async def test_an_upload_without_valid_credentials_is_refused_before_its_body(node):
    for headers in ({}, {"Authorization": "Bearer garbage"}, {"Authorization": "Negotiate abc"}):
        await refused_at_once(node, "POST", "/api/v1/chutes/", {**TAR, **headers}, 401, "unauthorized", None)
    await refused_at_once(node, "PUT", "/api/v1/chutes/hello", TAR, 401, "unauthorized", None)
    user = node.node.auth.users.get("paradrop")
    an_hour_ago = TokenIssuer(load_or_create_secret(node.node.settings.secret_path), 60, lambda: time.time() - 3600)
    expired, _ = an_hour_ago.issue(user.username, user.uid, user.generation)  # signed by the node, expired
    answer = await refused_at_once(node, "POST", "/api/v1/chutes", {**TAR, "Authorization": f"Bearer {expired}"},
                                   401, "unauthorized", None)
    assert "expired" in answer.error["message"]
    assert not any(node.node.settings.chute_sources_dir.iterdir())


@pytest_twisted.ensureDeferred
async def test_expect_100_continue_gets_the_error_instead_of_continue(node):
    answer = await refused_at_once(node, "POST", "/api/v1/chutes", {**TAR, "Expect": "100-continue"},
                                   401, "unauthorized", None)
    assert answer.status != 100


@pytest_twisted.ensureDeferred
async def test_expect_100_continue_of_an_admitted_request_continues(node):
    body = b'{"username": "paradrop", "password": "wrong-password"}'

    def exchange(port):
        with rawhttp.connect(port) as sock:
            sock.sendall(rawhttp.head("POST", "/api/v1/auth/local", {
                "Content-Type": "application/json", "Content-Length": len(body), "Expect": "100-continue"}))
            interim = b""
            while not interim.endswith(b"\r\n\r\n"):
                interim += sock.recv(1)
            sock.sendall(body)
            return interim, rawhttp.read_answer(sock, "POST")
    interim, answer = await threads.deferToThread(exchange, node.node.http.port)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    assert answer.status == 401 and answer.error["code"] == "unauthorized"


@pytest_twisted.ensureDeferred
async def test_unknown_paths_and_methods_are_refused_before_the_body(node):
    token = await node.login()
    auth = {"Authorization": f"Bearer {token}"}
    await refused_at_once(node, "POST", "/api/v1/nothing-here", {**TAR, **auth}, 404, "not_found", "path")
    answer = await refused_at_once(node, "DELETE", "/api/v1/chutes", {**TAR, **auth}, 405, "method_not_allowed",
                                   "method")
    assert answer.headers["allow"] == "GET, HEAD, POST"


@pytest_twisted.ensureDeferred
async def test_bodies_over_the_route_limit_are_refused_before_they_are_read(start_node):
    node = await start_node(max_body_bytes=4096, max_upload_bytes=65536)
    token = await node.login()
    auth = {"Authorization": f"Bearer {token}"}
    json_head = {"Content-Type": "application/json", "Content-Length": 4097}
    for method, path, headers in [
        ("POST", "/api/v1/auth/local", json_head),  # public: the size alone decides
        ("PUT", "/api/v1/config/hostconfig", {**json_head, **auth}),
        ("POST", "/api/v1/chutes", {**json_head, **auth}),  # an upload route takes only small JSON
        ("POST", "/api/v1/chutes", {"Content-Type": "application/x-tar", "Content-Length": 65537, **auth}),
        ("PUT", "/api/v1/chutes/hello", {"Content-Type": "application/gzip", "Content-Length": 65537, **auth}),
        ("POST", "/api/v1/chutes/hello/restart", {**json_head, **auth}),
    ]:
        await refused_at_once(node, method, path, headers, 413, "payload_too_large", "body")


@pytest_twisted.ensureDeferred
async def test_only_upload_routes_take_a_tar_and_no_route_takes_other_types(node):
    token = await node.login()
    auth = {"Authorization": f"Bearer {token}"}
    for method, path, content_type in [("PUT", "/api/v1/config/hostconfig", "application/x-tar"),
                                       ("POST", "/api/v1/auth/local", "application/gzip"),
                                       ("POST", "/api/v1/chutes", "text/html"),
                                       ("POST", "/api/v1/chutes/hello/stop", "application/xml")]:
        await refused_at_once(node, method, path, {"Content-Type": content_type, "Content-Length": 10, **auth},
                              415, "unsupported_media_type", "Content-Type")


@pytest_twisted.ensureDeferred
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(start_node):
    node = await start_node(max_body_bytes=4096)
    token = await node.login()

    def send_chunks(port):
        """Chunks of 1 KiB until the node answers; never the final chunk."""
        with rawhttp.connect(port) as sock:
            sock.sendall(rawhttp.head("PUT", "/api/v1/config/hostconfig", {
                "Authorization": f"Bearer {token}", "Content-Type": "application/json",
                "Transfer-Encoding": "chunked"}))
            sent = 0
            sock.settimeout(0.05)
            while sent < 1024 * 1024:
                sock.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
                sent += 1024
                try:
                    first = sock.recv(1, socket.MSG_PEEK)  # has the answer come?
                except TimeoutError:
                    continue
                if first:
                    break
            sock.settimeout(rawhttp.TIMEOUT)
            return sent, rawhttp.read_answer(sock, "PUT")
    sent, answer = await threads.deferToThread(send_chunks, node.node.http.port)
    assert answer.status == 413 and answer.error["code"] == "payload_too_large", answer.raw
    assert sent < 1024 * 1024


@pytest_twisted.ensureDeferred
async def test_basic_credentials_are_checked_after_a_body_within_the_limit(start_node):
    node = await start_node(max_body_bytes=4096)
    basic = {"Authorization": "Basic cGFyYWRyb3A6d3JvbmctcGFzc3dvcmQ="}  # paradrop:wrong-password
    port = node.node.http.port
    answer = await threads.deferToThread(rawhttp.request, port, "PUT", "/api/v1/config/hostconfig",
                                         {**basic, "Content-Type": "application/json"}, b"{}")
    assert answer.status == 401 and answer.error["code"] == "unauthorized"
    await refused_at_once(node, "PUT", "/api/v1/config/hostconfig",
                          {**basic, "Content-Type": "application/json", "Content-Length": 4097},
                          413, "payload_too_large", "body")


@pytest_twisted.ensureDeferred
async def test_a_refused_request_without_a_body_keeps_its_connection(node):
    def two_requests(port):
        with rawhttp.connect(port) as sock:
            sock.sendall(rawhttp.head("GET", "/api/v1/chutes"))
            first = rawhttp.read_answer(sock)
            sock.sendall(rawhttp.head("GET", "/api/v1/health"))
            return first, rawhttp.read_answer(sock)
    first, second = await threads.deferToThread(two_requests, node.node.http.port)
    assert first.status == 401 and first.error["code"] == "unauthorized"
    assert "connection" not in first.headers
    assert second.status == 200 and second.body["status"] == "ok"


@pytest_twisted.ensureDeferred
async def test_a_websocket_route_asked_without_the_upgrade_is_426(node):
    token = await node.login()
    code, body = await get_json(node.url + "/ws/changes/1/stream", token)
    assert code == 426 and body["error"]["code"] == "upgrade_required" and body["error"]["field"] == "Upgrade"
    assert (await get_json(node.url + "/ws/changes/1/stream"))[0] == 401


def answer_to_bytes(port, data: bytes):
    with rawhttp.connect(port) as sock:
        sock.sendall(data)
        return rawhttp.read_answer(sock, "GET")


@pytest.mark.parametrize("data", [b"NONSENSE\r\n\r\n", b"GET /api/v1/health HTTP/1.1\r\nno colon here\r\n\r\n",
                                  b"GET /api/v1/health HTTP/1.1\r\nContent-Length: many\r\n\r\n"])
@pytest_twisted.ensureDeferred
async def test_what_is_not_http_gets_the_json_error_too(node, data):
    answer = await threads.deferToThread(answer_to_bytes, node.node.http.port, data)
    assert answer.status == 400, answer.raw
    assert answer.error == {"code": "malformed_request", "message": "malformed HTTP request", "field": "request"}
