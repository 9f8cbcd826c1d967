"""/ws/nodes over real HTTP: your nodes once, then each of them again when the fleet says it changed (as stored),
never another user's, a node you lost announced as removed, and no listener left behind."""
import pytest_twisted

from pdserver.controller.api import node_stream

from tests.integration.http import wait_for
from tests.integration.ws import open_stream

STATE = {"node_id": None, "version": "0.9", "time": 1.0, "chutes": [{"name": "web", "version": "2",
                                                                     "state": "running"}], "commands": []}


async def _node(client, name):
    code, node = await client.post("/api/v1/nodes", {"name": name})
    assert code == 201, node
    return node


@pytest_twisted.ensureDeferred
async def test_your_nodes_then_their_changes_live(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    first, second = await _node(alice, "first"), await _node(alice, "second")
    theirs = await _node(bob, "theirs")
    url = controller.url.replace("http", "ws") + "/ws/nodes"
    stream = open_stream(url, alice.token)
    [listed] = await stream.wait_messages(1)
    assert listed["more"] is False
    assert sorted((n["id"], n["online"]) for n in listed["nodes"]) == sorted([(first["id"], False),
                                                                             (second["id"], False)])
    events = controller.fleet.node_events
    await wait_for(lambda: events.listeners(first["id"]) == 1 and events.listeners(second["id"]) == 1)
    assert events.listeners(theirs["id"]) == 0

    await controller.store.node_seen(theirs["id"], True, 5.0, None)
    events.emit(theirs["id"], {"node_id": theirs["id"], "online": True, "time": 5.0})
    await controller.store.node_seen(first["id"], True, 6.0, dict(STATE, node_id=first["id"]))
    events.emit(first["id"], {"node_id": first["id"], "online": True, "time": 6.0})
    messages = await stream.wait_messages(2)
    node = messages[1]["node"]
    assert (node["id"], node["online"], node["last_seen"], node["version"], node["role"]) == (
        first["id"], True, 6.0, "0.9", "owner")
    assert node["chutes"] == STATE["chutes"]

    assert (await alice.call("DELETE", f"/api/v1/nodes/{second['id']}"))[0] == 200
    events.emit(second["id"], {"node_id": second["id"], "online": False, "time": 7.0})
    messages = await stream.wait_messages(3)
    assert messages[2] == {"removed": second["id"]} and events.listeners(second["id"]) == 0

    await stream.drop()
    await wait_for(lambda: events.listeners(first["id"]) == 0)
    assert len(stream.messages) == 3  # bob's node was never sent


@pytest_twisted.ensureDeferred
async def test_no_token_no_stream(controller):
    code, body = await controller.client().get("/ws/nodes", headers={"Upgrade": "websocket"})
    assert code == 401
    unauthenticated = open_stream(controller.url.replace("http", "ws") + "/ws/nodes")
    await unauthenticated.done
    assert unauthenticated.protocol is None and unauthenticated.messages == []


@pytest_twisted.ensureDeferred
async def test_a_fleet_larger_than_a_page_arrives_in_pages_then_lives(controller, monkeypatch):
    monkeypatch.setattr(node_stream, "PAGE_MAX", 2)
    alice = await controller.user("alice")
    made = [await _node(alice, f"n{i}") for i in range(5)]
    stream = open_stream(controller.url.replace("http", "ws") + "/ws/nodes", alice.token)
    pages = await stream.wait_messages(3)
    assert [([n["name"] for n in p["nodes"]], p["more"]) for p in pages] == [
        (["n0", "n1"], True), (["n2", "n3"], True), (["n4"], False)]
    events = controller.fleet.node_events
    await wait_for(lambda: all(events.listeners(n["id"]) == 1 for n in made))
    await controller.store.node_seen(made[4]["id"], True, 6.0, None)
    events.emit(made[4]["id"], {"node_id": made[4]["id"], "online": True, "time": 6.0})
    messages = await stream.wait_messages(4)
    assert messages[3]["node"]["id"] == made[4]["id"] and messages[3]["node"]["online"] is True
    await stream.drop()
