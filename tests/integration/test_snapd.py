"""The node's snap interfaces. snapd cannot run here: the snapd path is tested against an HTTP server on a unix
socket the test runs, answering in snapd's response shape; the path off snapd (this machine's) is the real one."""
import json
import os

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface.verify import verifyObject

from pdserver.errors import Unavailable
from pdserver.sysconfig.snapd import ISnapd, SnapdClient
from tests.integration.http import get_json
from tests import nm_lab

short_tmp = nm_lab.short_tmp  # a fixture

CONNECTIONS = {
    "type": "sync", "status-code": 200, "status": "OK",
    "result": {
        "established": [{"slot": {"snap": "snapd", "slot": "network-control"},
                         "plug": {"snap": "paradrop", "plug": "network-control"}, "interface": "network-control"}],
        "plugs": [{"snap": "paradrop", "plug": "network-control", "interface": "network-control",
                   "connections": [{"snap": "snapd", "slot": "network-control"}]},
                  {"snap": "paradrop", "plug": "docker", "interface": "docker"}],
        "slots": [],
    },
}


class FakeSnapd(Resource):
    """Answers GET /v2/connections as snapd does; ``answer`` is (status, bytes) and ``seen`` the request URIs."""

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.answer = (200, json.dumps(CONNECTIONS).encode())
        self.seen = []

    def render_GET(self, request):
        self.seen.append(request.uri.decode())
        request.setResponseCode(self.answer[0])
        request.setHeader(b"content-type", b"application/json")
        return self.answer[1]


@pytest.fixture
def snapd(short_tmp):
    fake = FakeSnapd()
    fake.socket = short_tmp / "snapd.socket"
    port = reactor.listenUNIX(str(fake.socket), Site(fake))
    yield fake
    pytest_twisted.blockon(port.stopListening())


@pytest_twisted.ensureDeferred
async def test_under_snapd_the_node_asks_for_its_own_snaps_connections(snapd):
    client = SnapdClient(reactor, snapd.socket, {"SNAP_NAME": "paradrop", "SNAP_INSTANCE_NAME": "paradrop_test"})
    verifyObject(ISnapd, client)
    found = await client.connections()
    assert snapd.seen == ["/v2/connections?snap=paradrop_test"]
    assert found == {"snap": "paradrop_test", "plugs": CONNECTIONS["result"]["plugs"], "slots": [], "note": None}


@pytest_twisted.ensureDeferred
async def test_snapd_errors_become_unavailable_with_snapds_message(snapd):
    client = SnapdClient(reactor, snapd.socket, {"SNAP_NAME": "paradrop"})
    snapd.answer = (403, json.dumps({"type": "error", "status-code": 403, "status": "Forbidden",
                                     "result": {"message": "access denied", "kind": "login-required"}}).encode())
    with pytest.raises(Unavailable) as denied:
        await client.connections()
    assert "HTTP 403: access denied" in denied.value.message and denied.value.field == "snapd"
    for body, words in ((b"<html>", "other than JSON"), (b'{"result": {"plugs": 7}}', "without plugs"),
                        (b" " * (5 * 1024 * 1024), "exceeds")):
        snapd.answer = (200, body)
        with pytest.raises(Unavailable) as bad:
            await client.connections()
        assert words in bad.value.message


@pytest_twisted.ensureDeferred
async def test_a_socket_nobody_listens_on_is_unavailable(short_tmp):
    import socket
    stale = short_tmp / "stale.socket"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(stale))
    with pytest.raises(Unavailable) as refused:
        await SnapdClient(reactor, stale, {"SNAP_NAME": "paradrop"}).connections()
    assert "snapd does not answer" in refused.value.message


@pytest_twisted.ensureDeferred
async def test_off_snapd_there_are_no_interfaces_and_a_note_says_why(short_tmp):
    assert "SNAP_NAME" not in os.environ and "SNAP" not in os.environ  # this machine runs no snap
    found = await SnapdClient(reactor, short_tmp / "absent.socket").connections()
    assert (found["plugs"], found["slots"]) == ([], [])
    assert "does not run under snapd" in found["note"] and "SNAP_NAME" in found["note"]
    found = await SnapdClient(reactor, short_tmp / "absent.socket", {"SNAP_NAME": "paradrop"}).connections()
    assert "no snapd socket" in found["note"]


@pytest_twisted.ensureDeferred
async def test_the_api_answers_in_snapds_shape_for_pdtools(node):
    token = await node.login()
    for path in ("/snapd/v2/interfaces", "/api/v1/snap/interfaces"):
        code, body = await get_json(node.url + path, token)
        assert code == 200, body
        assert (body["type"], body["status-code"], body["result"]) == ("sync", 200, {"plugs": [], "slots": []})
        assert "does not run under snapd" in body["note"]
    assert (await get_json(node.url + "/snapd/v2/interfaces"))[0] == 401
