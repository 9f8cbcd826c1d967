"""Updating a web chute while a client uses it: the client never sees a failed request.

The client follows the contract the node offers: it keeps using the address it knows until the API shows the
new version (the update's commit), then moves to the new version's address; it looks at the API now and then,
not before every request. The node starts the new version beside the old one, waits until it answers, records
it, and stops the old one only after the drain time (1 s by default): with none, this client's requests to the
old version fail for up to its 0.3 s between looks.
"""
import threading
import time

import pytest
import requests

from tests.conftest import free_port
from tests.integration.chute_helpers import unique, wait_change

pytestmark = pytest.mark.docker

SERVE = ["sh", "-c", "mkdir -p /tmp/www && echo \"$VERSION\" > /tmp/www/index.html "
                     "&& exec httpd -f -p 8000 -h /tmp/www"]


def web_chute(name: str, version: int, port: int) -> dict:
    """An image chute whose page names its version, published on ``port``."""
    return {"config": {"name": name, "version": version, "web": {"service": "main", "port": 8000},
                       "environment": {"VERSION": str(version)},
                       "services": {"main": {"type": "image", "image": "paradrop/busybox:latest", "command": SERVE,
                                             "requests": {"port-bindings": [{"external": port,
                                                                             "internal": 8000}]}}}}}


class Client(threading.Thread):
    """GETs the chute every 20 ms on the port of the version the API showed at its last look (every 0.3 s, as
    a client that does not ask before each request); ``seen`` holds (port, status or error, body) of every
    request."""

    LOOK_EVERY = 0.3

    def __init__(self, session, url: str, name: str, ports: dict):
        super().__init__(daemon=True)
        self.api = (session, f"{url}/api/v1/chutes/{name}")
        self.ports = ports  # version -> published port
        self.seen = []
        self.done = threading.Event()

    def run(self):
        session, chute_url = self.api
        with requests.Session() as http:
            port, looked = None, 0.0
            while not self.done.wait(0.02):
                try:
                    if time.monotonic() - looked >= self.LOOK_EVERY:
                        version = session.get(chute_url, timeout=10).json()["version"]
                        port, looked = self.ports[version], time.monotonic()
                    answer = http.get(f"http://127.0.0.1:{port}/", timeout=2)
                    self.seen.append((port, answer.status_code, answer.text.strip()))
                except Exception as exc:  # any failure is the client's to report, not a reason to stop
                    self.seen.append((port, repr(exc), ""))


def test_a_client_using_a_web_chute_during_an_update_sees_no_failed_request(node_process):
    session, url = node_process.session(), node_process.url
    name, old_port, new_port = unique("nodown"), free_port(), free_port()
    answer = session.post(f"{url}/api/v1/chutes", json=web_chute(name, 1, old_port), timeout=10)
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"

    client = Client(node_process.session(), url, name, {"1": old_port, "2": new_port})
    client.start()
    try:
        answer = session.put(f"{url}/api/v1/chutes/{name}", json=web_chute(name, 2, new_port), timeout=10)
        assert answer.status_code == 202, answer.text
        change = wait_change(session, url, answer.json()["change_id"])
        during = len(client.seen)
        assert change["state"] == "succeeded", change
        seen_after = during + 5
        while len(client.seen) < seen_after and client.is_alive():
            client.done.wait(0.02)
    finally:
        client.done.set()
        client.join(timeout=30)

    failed = [s for s in client.seen if s[1] != 200]
    assert failed == [], f"{len(failed)} of {len(client.seen)} requests failed: {failed[:5]}"
    bodies = [body for _, _, body in client.seen]
    assert bodies[0] == "1" and bodies[-1] == "2"
    assert bodies == sorted(bodies), "the old version answered after the new one"
    assert bodies.count("1") >= 5 and during > bodies.count("1"), "the client did not use the chute during the update"
    assert [(p, b) for p, _, b in client.seen if p == new_port and b != "2"] == []
