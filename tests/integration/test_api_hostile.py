"""Hostile input over real HTTP to an in-process node: JSON bodies (also on the public login route) and
chute uploads (tar and JSON). Every answer is a 4xx with the JSON error naming the field, the reactor keeps
answering meanwhile, and nothing stays on disk or grows the journal past a small bound."""
import json

import pytest_twisted
import treq
from twisted.internet import defer, endpoints, protocol, reactor

from pdserver.chutes.store import RUNNING, ChuteRecord
from pdserver.parsing import MAX_YAML_BYTES
from tests.integration.http import get_json, wait_for, wait_for_change
from tests.unit.test_chute_spec import gnu_long_name_bomb, tar_of as tar_stream
from tests.unit.test_parsing import BOMB

LOGIN = "/api/v1/auth/local"


def tar_of(files: dict) -> bytes:
    return tar_stream(files).getvalue()


def chute_yaml(name="hostile", version=1, **extra) -> bytes:
    description = {"name": name, "version": version,
                   "services": {"main": {"type": "image", "image": "paradrop/busybox:latest",
                                         "command": ["sleep", "3600"]}}, **extra}
    return json.dumps(description).encode()  # JSON is YAML


async def post_raw(url, data: bytes, token=None, content_type="application/json", method="POST"):
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    response = await treq.request(method, url, data=data, headers=headers)
    return response.code, await treq.json_content(response)


def uploads(node):
    sources = node.node.settings.chute_sources_dir
    return sorted(p.name for p in sources.iterdir()) if sources.is_dir() else []


async def quiet(node):
    """Wait for the reconcile change a node queues at start: it removes project dirs no change uses."""
    await wait_for(lambda: not node.queue.unfinished())


def assert_refused(code, body, status, field):
    assert code == status, body
    assert set(body["error"]) == {"code", "message", "field"}
    assert body["error"]["field"] == field, body
    assert len(body["error"]["message"]) < 2100


class TestHostileJson:
    @pytest_twisted.ensureDeferred
    async def test_the_public_login_route_refuses_hostile_json_with_a_400_naming_the_field(self, node):
        cases = [
            (b"[" * 100_000 + b"]" * 100_000, "body"),
            (b'{"u": ' * 40 + b"1" + b"}" * 40, ".".join(["u"] * 32)),
            (b'{"username": "\\ud800", "password": "x"}', "username"),
            (b'{"username": "paradrop", "password": "\\udfff"}', "password"),
            (b'{"username": "\xed\xa0\x80", "password": "x"}', "body"),
            (b'{"username": 1180591620717411303424, "password": "x"}', "username"),
            (b'{"username": "paradrop", "password": NaN}', "password"),
        ]
        for raw, field in cases:
            code, body = await post_raw(node.url + LOGIN, raw)
            assert_refused(code, body, 400, field)
        assert (await get_json(node.url + "/api/v1/health"))[0] == 200

    @pytest_twisted.ensureDeferred
    async def test_authenticated_routes_refuse_hostile_json_the_same_way(self, node):
        token = await node.login()
        for url, method in ((node.url + "/api/v1/config/hostconfig", "PUT"), (node.url + "/api/v1/chutes", "POST")):
            code, body = await post_raw(url, b"[" * 5000 + b"]" * 5000, token, method=method)
            assert_refused(code, body, 400, "body")
        code, body = await post_raw(node.url + "/api/v1/chutes",
                                    b'{"config": {"name": "x", "version": 1180591620717411303424}}', token)
        assert_refused(code, body, 400, "config.version")
        code, body = await post_raw(node.url + "/api/v1/chutes", b'{"config": {"name": "\\ud800"}}', token)
        assert_refused(code, body, 400, "config.name")


class TestHostileUploads:
    @pytest_twisted.ensureDeferred
    async def test_hostile_projects_get_a_400_naming_the_field_and_leave_nothing(self, node):
        token = await node.login()
        await quiet(node)
        cases = [
            (tar_of({"paradrop.yaml": BOMB.encode()}), "paradrop.yaml"),
            (tar_of({"paradrop.yaml": b"a: " + b"[" * 50_000 + b"]" * 50_000}), "paradrop.yaml"),
            (tar_of({"paradrop.yaml": b"name: x\nversion: 99999999999999999999999\n"}), "version"),
            (tar_of({"paradrop.yaml": chute_yaml(services={"main": {"type": "image", "image": "i",
                                                                     "requests": {"memory": 2 ** 70}}})}),
             "services.main.requests.memory"),
            (tar_of({"paradrop.yaml": chute_yaml(description="d" * 5_000_000)}), "paradrop.yaml"),
            (tar_of({"paradrop.yaml": chute_yaml(description="d" * 20_000)}), "description"),
            (tar_of({"paradrop.yaml": b"\xff\xfe name"}), "paradrop.yaml"),
            (tar_of({"paradrop.yaml": chute_yaml(), "src/app.py": b"x" * 4000})[:2000], "archive"),
            (gnu_long_name_bomb(1 << 30), "archive"),
        ]
        for data, field in cases:
            code, body = await post_raw(node.url + "/api/v1/chutes", data, token, "application/x-tar")
            assert_refused(code, body, 400, field)
            assert uploads(node) == []
        assert node.queue.list() == [] or all(c.type == "reconcile" for c in node.queue.list())

    @pytest_twisted.ensureDeferred
    async def test_the_api_keeps_answering_while_a_hostile_upload_is_parsed(self, node):
        token = await node.login()
        await quiet(node)
        slow = "a: [" + "1," * 30_000 + "1]\n" + BOMB  # 30,000 nodes to compose, then the bomb
        assert len(slow) < MAX_YAML_BYTES
        upload = defer.ensureDeferred(post_raw(node.url + "/api/v1/chutes", tar_of({"paradrop.yaml": slow.encode()}),
                                               token, "application/x-tar"))
        answered = 0
        while not upload.called:
            assert (await get_json(node.url + "/api/v1/health"))[0] == 200
            answered += not upload.called
        code, body = await upload
        assert_refused(code, body, 400, "paradrop.yaml")
        # Client and node share this reactor: parsing on it would let no health check through (0 when tried).
        assert answered >= 3, answered
        assert uploads(node) == []


class TestUploadsLeaveNothing:
    @pytest_twisted.ensureDeferred
    async def test_conflicts_and_wrong_names_remove_the_upload(self, node):
        token = await node.login()
        await quiet(node)
        node.node.chutes.save(ChuteRecord("taken", "2", RUNNING, json.loads(chute_yaml("taken", 2)), 1, None,
                                          0.0, 0.0, "v-taken"))
        url = node.url + "/api/v1/chutes"
        for method, target, data, status, field in [
            ("POST", url, chute_yaml("taken", 3), 409, "name"),
            ("PUT", url + "/taken", chute_yaml("taken", 2), 409, "version"),
            ("PUT", url + "/taken", chute_yaml("other", 3), 400, "name"),
            ("POST", url, chute_yaml("wifi", services={"main": {"type": "image", "image": "i", "interfaces": {
                "wlan0": {"type": "wifi-ap"}}}}), 409, "services.main.interfaces.wlan0"),
        ]:
            code, body = await post_raw(target, tar_of({"paradrop.yaml": data}), token, "application/x-tar", method)
            assert_refused(code, body, status, field)
            assert uploads(node) == []

    @pytest_twisted.ensureDeferred
    async def test_an_upload_that_ends_in_a_500_is_removed(self, node):
        token = await node.login()
        await quiet(node)
        node.node.conn.execute("CREATE TRIGGER journal_full BEFORE INSERT ON changes "
                               "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
        try:
            code, body = await post_raw(node.url + "/api/v1/chutes", tar_of({"paradrop.yaml": chute_yaml()}), token,
                                        "application/x-tar")
        finally:
            node.node.conn.execute("DROP TRIGGER journal_full")
        assert code == 500 and body["error"]["code"] == "internal_error"
        assert uploads(node) == []

    @pytest_twisted.ensureDeferred
    async def test_a_client_that_drops_during_unpacking_leaves_nothing_and_queues_nothing(self, node):
        """Twisted closes the body file when the client goes: the unpacking thread fails and cleans up (the
        window after unpacking is covered in tests/unit/test_api_uploads.py)."""
        token = await node.login()
        await quiet(node)
        files = {f"f/{i}": b"x" for i in range(9000)}
        files["paradrop.yaml"] = chute_yaml("dropped")
        data = tar_of(files)
        head = (f"POST /api/v1/chutes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/x-tar\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        port = int(node.url.rsplit(":", 1)[1])
        client = await endpoints.connectProtocol(endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port),
                                                 protocol.Protocol())
        client.transport.write(head + data)
        await wait_for(lambda: uploads(node) != [])
        client.transport.abortConnection()
        await wait_for(lambda: uploads(node) == [], timeout=30)
        assert all(c.type == "reconcile" for c in node.queue.list())

    @pytest_twisted.ensureDeferred
    async def test_changes_that_fail_their_run_time_checks_remove_their_upload(self, start_node):
        gate = defer.Deferred()
        node = await start_node(handlers={"hold": lambda context: gate})
        token = await node.login()
        await quiet(node)
        node.node.chutes.save(ChuteRecord("old", "1", RUNNING, json.loads(chute_yaml("old", 1)), 1, None, 0.0, 0.0,
                                          "v-old"))
        node.queue.submit("hold", None, "tester")
        url = node.url + "/api/v1/chutes"
        code, install = await post_raw(url, tar_of({"paradrop.yaml": chute_yaml("new")}), token, "application/x-tar")
        assert code == 202
        code, update = await post_raw(url + "/old", tar_of({"paradrop.yaml": chute_yaml("old", 2)}), token,
                                      "application/x-tar", "PUT")
        assert code == 202
        assert len(uploads(node)) == 2
        # Meanwhile another change installs "new" and raises "old" past the queued update.
        node.node.chutes.save(ChuteRecord("new", "1", RUNNING, json.loads(chute_yaml("new")), 1, None, 0.0, 0.0,
                                          "v-new"))
        node.node.chutes.save(ChuteRecord("old", "3", RUNNING, json.loads(chute_yaml("old", 3)), 1, None, 0.0, 0.0,
                                          "v-old"))
        gate.callback({"message": "released"})
        install = await wait_for_change(node.url, install["change_id"], token)
        update = await wait_for_change(node.url, update["change_id"], token)
        assert install["state"] == "failed" and install["result"]["field"] == "name"
        assert update["state"] == "failed" and update["result"]["code"] == "version_not_newer"
        assert uploads(node) == []

    @pytest_twisted.ensureDeferred
    async def test_a_queued_upload_that_is_cancelled_is_removed(self, start_node):
        gate = defer.Deferred()
        node = await start_node(handlers={"hold": lambda context: gate})
        token = await node.login()
        await quiet(node)
        node.queue.submit("hold", None, "tester")
        code, install = await post_raw(node.url + "/api/v1/chutes", tar_of({"paradrop.yaml": chute_yaml()}), token,
                                       "application/x-tar")
        assert code == 202 and len(uploads(node)) == 1
        response = await treq.post(f"{node.url}/api/v1/changes/{install['change_id']}/cancel",
                                   headers={"Authorization": f"Bearer {token}"})
        assert response.code == 200
        await wait_for(lambda: uploads(node) == [])
        gate.callback(None)


class TestJournalStaysSmall:
    @pytest_twisted.ensureDeferred
    async def test_failed_installs_with_huge_fields_barely_grow_the_database(self, node):
        token = await node.login()
        await quiet(node)
        db = node.node.settings.database_path

        def size():
            return sum(p.stat().st_size for p in db.parent.glob(db.name + "*"))

        before = size()
        huge = chute_yaml("huge", services={"main": {"type": "image", "image": "i", "command": "c" * 20_000_000}})
        code, body = await post_raw(node.url + "/api/v1/chutes", tar_of({"paradrop.yaml": huge}), token,
                                    "application/x-tar")
        assert_refused(code, body, 400, "paradrop.yaml")
        code, body = await post_raw(node.url + "/api/v1/chutes",
                                    b'{"config": {"name": "huge", "version": 1, "services": {"main": {"type": "image", '
                                    b'"image": "i", "command": "' + b"c" * 900_000 + b'"}}}}', token)
        assert_refused(code, body, 400, "config.services.main.command")
        largest = {"name": "largest", "version": 1, "description": "d" * 4000, "services": {
            f"s{i}": {"type": "image", "image": "registry.invalid/none:1", "command": "c" * 4000,
                      "environment": {"V": "v" * 2000}} for i in range(5)}}
        code, body = await post_raw(node.url + "/api/v1/chutes", json.dumps({"config": largest}).encode(), token)
        assert code == 202, body
        change = await wait_for_change(node.url, body["change_id"], token, timeout=60)
        assert change["state"] == "failed"
        assert size() - before < 1_000_000, size() - before
