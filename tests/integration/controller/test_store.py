"""The chute store and deployments over real HTTP: versions validated like a node's, archives for nodes,
deployments with per-node roles, and the progress websocket."""
import hashlib
import io
import tarfile

import pytest_twisted
import yaml

from pdserver.controller.interfaces import FINAL_DELIVERY_STATES
from tests.integration.ws import open_stream

TAR = {"Content-Type": "application/x-tar"}


def description(name="hello", version="1", **extra):
    return {"name": name, "version": version,
            "services": {"main": {"type": "image", "image": "paradrop/busybox"}}, **extra}


def project_tar(files: dict) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, text in files.items():
            data = text if isinstance(text, bytes) else text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


async def _chute(client, name="hello"):
    code, chute = await client.post("/api/v1/store/chutes", {"name": name, "description": "says hello"})
    assert code == 201, chute
    return chute


async def _node(client, name):
    code, node = await client.post("/api/v1/nodes", {"name": name})
    assert code == 201, node
    return node


@pytest_twisted.ensureDeferred
async def test_versions_come_from_json_or_a_project_tar_and_are_validated_like_a_nodes(controller, tmp_path):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    await _chute(alice)
    assert (await alice.post("/api/v1/store/chutes", {"name": "hello"}))[0] == 409
    code, body = await alice.post("/api/v1/store/chutes", {"name": "Bad_Name"})
    assert code == 400 and body["error"]["field"] == "name"
    code, v1 = await alice.post("/api/v1/store/chutes/hello/versions", {"config": description()})
    assert code == 201 and v1["version"] == "1" and v1["archive"] is False
    code, body = await alice.post("/api/v1/store/chutes/hello/versions", {"config": description()})
    assert code == 409 and body["error"]["field"] == "version"
    code, body = await alice.post("/api/v1/store/chutes/hello/versions", {"config": description("other")})
    assert code == 400 and body["error"]["field"] == "name"
    bad = description(version="3")
    bad["services"]["main"]["type"] = "teleport"
    code, body = await alice.post("/api/v1/store/chutes/hello/versions", {"config": bad})
    assert code == 400 and body["error"]["field"].startswith("config.services.main")
    code, body = await bob.post("/api/v1/store/chutes/hello/versions", {"config": description(version="9")})
    assert code == 403
    archive = project_tar({"paradrop.yaml": yaml.safe_dump(description(version="2"))})
    code, v2 = await alice.post("/api/v1/store/chutes/hello/versions", data=archive, headers=TAR)
    assert code == 201 and v2["archive"] is True and v2["sha256"] == hashlib.sha256(archive).hexdigest()
    code, got = await bob.get("/api/v1/store/chutes/hello/versions/2/archive")
    assert code == 200 and got == archive
    code, versions = await bob.get("/api/v1/store/chutes/hello/versions")
    assert [v["version"] for v in versions] == ["1", "2"]
    code, chute = await bob.get("/api/v1/store/chutes/hello")
    assert code == 200 and [v["version"] for v in chute["versions"]] == ["1", "2"]
    code, listed = await bob.get("/api/v1/store/chutes")
    assert [(c["name"], c["versions"]) for c in listed] == [("hello", 2)]
    code, body = await bob.get("/api/v1/store/chutes/hello/versions/1/archive")
    assert code == 404 and body["error"]["field"] == "version"
    assert (await bob.get("/api/v1/store/chutes/nope/versions"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_hostile_archives_are_refused_with_nothing_left_on_disk(controller):
    alice = await controller.user("alice")
    await _chute(alice)
    store_dir = controller.built.settings.state_dir / "store"
    outside = project_tar({"paradrop.yaml": yaml.safe_dump(description(version="5")), "../escape": "x"})
    normal = description(version="6")
    normal["services"]["main"] = {"type": "normal", "source": "."}
    for data in (b"not a tar at all", project_tar({"README": "no paradrop.yaml"}), outside,
                 project_tar({"paradrop.yaml": yaml.safe_dump(normal)}), project_tar({"paradrop.yaml": "a: [1"})[:700]):
        code, body = await alice.post("/api/v1/store/chutes/hello/versions", data=data, headers=TAR)
        assert code == 400, body
        assert body["error"]["field"]
    assert [p for p in store_dir.rglob("*") if p.is_file()] == []
    assert not (store_dir.parent / "escape").exists()
    code, versions = await alice.get("/api/v1/store/chutes/hello/versions")
    assert versions == []


@pytest_twisted.ensureDeferred
async def test_a_deployment_delivers_to_nodes_where_the_user_may_and_forbids_the_rest(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    await _chute(alice)
    await alice.post("/api/v1/store/chutes/hello/versions", {"config": description()})
    own, shared, foreign = await _node(alice, "own"), await _node(bob, "shared"), await _node(bob, "foreign")
    await bob.put(f"/api/v1/nodes/{shared['id']}/members/alice", {"role": "user"})
    code, body = await alice.post("/api/v1/deployments", {"chute": "hello", "version": "1",
                                                          "nodes": [own["id"], foreign["id"]]})
    assert code == 404 and body["error"]["field"] == "nodes"
    assert controller.fleet.woken == []
    code, deployment = await alice.post("/api/v1/deployments", {"chute": "hello", "version": "1",
                                                                "nodes": [own["id"], shared["id"], own["id"]]})
    assert code == 202
    states = {d["node_id"]: (d["state"], d["key"]) for d in deployment["deliveries"]}
    assert states == {own["id"]: ("pending", f"dep-{deployment['id']}-{own['id']}"),
                      shared["id"]: ("forbidden", f"dep-{deployment['id']}-{shared['id']}")}
    assert controller.fleet.woken == [[own["id"]]]
    pending = await controller.store.pending_deliveries(own["id"])
    assert [(d["command"], d["chute"], d["version"], d["config"], d["source"], d["role"]) for d in pending] == \
        [(None, "hello", "1", description(), None, "owner")]
    assert await controller.store.pending_deliveries(shared["id"]) == []
    code, shown = await alice.get(f"/api/v1/deployments/{deployment['id']}")
    assert code == 200 and shown["states"] == {"pending": 1, "forbidden": 1} and not shown["finished"]
    assert (await bob.get(f"/api/v1/deployments/{deployment['id']}"))[0] == 404
    code, listed = await alice.get("/api/v1/deployments")
    assert [d["id"] for d in listed] == [deployment["id"]]
    for body, field in (({"chute": "hello", "version": "1"}, "nodes"),
                        ({"chute": "hello", "version": "7", "nodes": [own["id"]]}, "version"),
                        ({"chute": "hello", "version": "1", "nodes": ["ZZ"]}, "nodes[0]"),
                        ({"chute": "hello", "version": "1", "group": "none"}, "group")):
        code, answer = await alice.post("/api/v1/deployments", body)
        assert code in (400, 404) and answer["error"]["field"] == field, (body, answer)


@pytest_twisted.ensureDeferred
async def test_a_group_deployment_of_an_archive_gives_each_node_a_token_for_that_archive_only(controller):
    alice = await controller.user("alice")
    await _chute(alice)
    archive = project_tar({"paradrop.yaml": yaml.safe_dump(description(version="2"))})
    await alice.post("/api/v1/store/chutes/hello/versions", data=archive, headers=TAR)
    await alice.post("/api/v1/store/chutes/hello/versions", {"config": description(version="3")})
    nodes = [await _node(alice, f"n{i}") for i in range(2)]
    await alice.post("/api/v1/groups", {"name": "all"})
    for node in nodes:
        await alice.put(f"/api/v1/groups/all/nodes/{node['id']}")
    code, deployment = await alice.post("/api/v1/deployments", {"chute": "hello", "version": "2", "group": "all"})
    assert code == 202 and {d["state"] for d in deployment["deliveries"]} == {"pending"}
    source = (await controller.store.pending_deliveries(nodes[0]["id"]))[0]["source"]
    assert source["path"] == "/api/v1/store/chutes/hello/versions/2/archive"  # on the backend that sends it
    assert source["sha256"] == hashlib.sha256(archive).hexdigest()
    node_client = controller.client(source["token"])
    code, got = await node_client.get(source["path"])
    assert code == 200 and got == archive
    for path in ("/api/v1/store/chutes/hello/versions/3/archive", "/api/v1/nodes", "/api/v1/auth/me",
                 "/api/v1/store/chutes/hello/versions/2"):
        code, body = await node_client.get(path)
        assert code == 403 and body["error"]["field"] == "token", path


def updates(messages):
    return [update for message in messages for update in message]


@pytest_twisted.ensureDeferred
async def test_the_deployment_websocket_streams_each_delivery_and_closes_when_all_are_final(controller):
    """Messages are arrays of updates: the deliveries' states in the first, then the updates of a turn each."""
    alice, bob = await controller.user("alice"), await controller.user("bob")
    await _chute(alice)
    await alice.post("/api/v1/store/chutes/hello/versions", {"config": description()})
    first, second = await _node(alice, "a"), await _node(alice, "b")
    _, deployment = await alice.post("/api/v1/deployments", {"chute": "hello", "version": "1",
                                                             "nodes": [first["id"], second["id"]]})
    ws_url = controller.url.replace("http", "ws") + f"/ws/deployments/{deployment['id']}"
    assert (await bob.get(f"/ws/deployments/{deployment['id']}", headers={"Upgrade": "websocket"}))[0] == 404
    stream = open_stream(ws_url, alice.token)
    [snapshot] = await stream.wait_messages(1)
    assert sorted((m["node_id"], m["state"]) for m in snapshot) == sorted([(first["id"], "pending"),
                                                                           (second["id"], "pending")])
    events = controller.fleet.events
    deliveries = {d["node_id"]: d for n in (first, second)
                  for d in await controller.store.pending_deliveries(n["id"])}
    await controller.fleet.report(controller.store, deliveries[first["id"]], "sent", 10.0, change_id=4)
    await controller.fleet.report(controller.store, deliveries[first["id"]], "succeeded", 11.0, message="done")
    await controller.fleet.report(controller.store, deliveries[second["id"]], "failed", 12.0, message="no image")
    close = await stream.done
    assert close[1] == 1000
    assert all(isinstance(m, list) for m in stream.messages)
    assert [(m["node_id"], m["state"], m["message"]) for m in updates(stream.messages[1:])] == [
        (first["id"], "sent", None), (first["id"], "succeeded", "done"), (second["id"], "failed", "no image")]
    assert events.listeners(deployment["id"]) == 0
    code, shown = await alice.get(f"/api/v1/deployments/{deployment['id']}")
    assert shown["finished"] and set(shown["states"]) <= FINAL_DELIVERY_STATES
    late = open_stream(ws_url, alice.token)
    await late.done
    assert sorted(m["state"] for m in updates(late.messages)) == ["failed", "succeeded"]
    assert late.close_info[1] == 1000



@pytest_twisted.ensureDeferred
async def test_a_watcher_that_vanishes_stops_listening(controller):
    from tests.integration.http import wait_for
    alice = await controller.user("alice")
    await _chute(alice)
    await alice.post("/api/v1/store/chutes/hello/versions", {"config": description()})
    node = await _node(alice, "a")
    _, deployment = await alice.post("/api/v1/deployments", {"chute": "hello", "version": "1", "nodes": [node["id"]]})
    stream = open_stream(controller.url.replace("http", "ws") + f"/ws/deployments/{deployment['id']}", alice.token)
    await stream.wait_messages(1)
    assert controller.fleet.events.listeners(deployment["id"]) == 1
    await stream.drop()
    await wait_for(lambda: controller.fleet.events.listeners(deployment["id"]) == 0)
    unauthenticated = open_stream(controller.url.replace("http", "ws") + f"/ws/deployments/{deployment['id']}")
    await unauthenticated.done
    assert unauthenticated.protocol is None and unauthenticated.messages == []


@pytest_twisted.ensureDeferred
async def test_a_version_an_earlier_release_kept_as_a_file_is_still_served(controller, tmp_path):
    alice = await controller.user("alice")
    await _chute(alice)
    archive = project_tar({"paradrop.yaml": yaml.safe_dump(description(version="7"))})
    kept = tmp_path / "kept.tar"
    kept.write_bytes(archive)
    await controller.built.db.execute(
        "INSERT INTO store_versions (chute, version, config, archive, sha256, size, created, created_by) "
        "VALUES ('hello', '7', ?, ?, ?, ?, 0, 'alice')",
        ('{"name": "hello", "version": "7"}', str(kept), hashlib.sha256(archive).hexdigest(), len(archive)))
    code, got = await alice.get("/api/v1/store/chutes/hello/versions/7/archive")
    assert code == 200 and got == archive
    kept.unlink()
    code, body = await alice.get("/api/v1/store/chutes/hello/versions/7/archive")
    assert code == 404 and body["error"]["field"] == "version"
