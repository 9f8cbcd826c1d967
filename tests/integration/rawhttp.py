"""Blocking raw-socket HTTP for tests that need what an HTTP library hides: an answer that comes before the body
is sent, a connection the server closes, a head sent one line at a time, a chosen source address on loopback.

The functions block: with a node on the test's reactor, call them through ``threads.deferToThread``.
"""
import http.client
import json
import socket
from typing import Optional

TIMEOUT = 15.0  # a bound on each socket operation, so a server that never answers fails the test


def connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT, source_address=(source, 0))
    sock.settimeout(TIMEOUT)
    return sock


def head(method: str, path: str, headers: Optional[dict] = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Answer:
    def __init__(self, response: http.client.HTTPResponse):
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.raw = response.read()
        self.body = json.loads(self.raw) if self.headers.get("content-type") == "application/json" else None

    @property
    def error(self) -> dict:
        return self.body["error"]


def read_answer(sock: socket.socket, method: str = "GET") -> Answer:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    return Answer(response)


def request(port: int, method: str, path: str, headers: Optional[dict] = None, body: bytes = b"",
            source: str = "127.0.0.1") -> Answer:
    with connect(port, source) as sock:
        sock.sendall(head(method, path, {**(headers or {}), "Content-Length": len(body)}) + body)
        return read_answer(sock, method)


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server closes this connection within TIMEOUT (what it still sends is read and dropped)."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False
