"""Nodes over real HTTP: create, roles per node, members, claim once, provisioning keys, groups, commands."""
import json
import os
import subprocess
import sys
from urllib.parse import urljoin

import pytest_twisted
import treq
from twisted.internet import defer, threads
from zope.interface.verify import verifyObject

from pdserver.controller.interfaces import IFleetStore
from pdserver.controller.nodes import PAGE_DEFAULT
from pdtools import config


async def _node(client, name="edge-1"):
    code, node = await client.post("/api/v1/nodes", {"name": name})
    assert code == 201, node
    return node


@pytest_twisted.ensureDeferred
async def test_a_created_node_authenticates_with_its_secret_once_shown(controller):
    alice = await controller.user("alice")
    node = await _node(alice)
    assert len(node["id"]) == 16 and int(node["id"], 16) >= 0
    assert node["claimed"] is True and node["wamp_router"].startswith("ws://")
    assert node["controller"] == controller.url
    verifyObject(IFleetStore, controller.store)
    auth = await controller.store.node_auth(node["id"])
    assert auth == {"key": node["secret"], "salt": auth["salt"], "iterations": 1000, "keylen": 32}
    assert len(auth["salt"]) == 32 and len(node["secret"]) >= 43
    assert await controller.store.node_auth("0123456789abcdef") is None
    code, shown = await alice.get(f"/api/v1/nodes/{node['id']}")
    assert code == 200 and "secret" not in shown and shown["role"] == "owner"


@pytest_twisted.ensureDeferred
async def test_a_user_cannot_see_or_change_another_users_node(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    node = await _node(alice)
    code, nodes = await bob.get("/api/v1/nodes")
    assert code == 200 and nodes == []
    for method, path, body in (("GET", "", None), ("PATCH", "", {"name": "mine"}), ("DELETE", "", None),
                               ("GET", "/members", None), ("PUT", "/members/bob", {"role": "owner"}),
                               ("POST", "/commands", {"type": "stop", "chute": "hello"})):
        code, answer = await bob.call(method, f"/api/v1/nodes/{node['id']}{path}", body)
        assert code == 404 and answer["error"]["field"] == "node_id", (method, path, answer)
    code, group = await bob.post("/api/v1/groups", {"name": "g"})
    code, answer = await bob.put(f"/api/v1/groups/g/nodes/{node['id']}")
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_node_list_shows_state_the_fleet_reported(controller):
    alice = await controller.user("alice")
    node = await _node(alice)
    state = {"node_id": node["id"], "version": "1.2.3", "time": 5.0,
             "chutes": [{"name": "hello", "version": "1", "state": "running"}], "commands": []}
    await controller.store.node_seen(node["id"], True, 1000.0, state)
    code, nodes = await alice.get("/api/v1/nodes/")
    assert code == 200
    assert [(n["id"], n["online"], n["last_seen"], n["version"], n["chutes"]) for n in nodes] == \
        [(node["id"], True, 1000.0, "1.2.3", state["chutes"])]
    await controller.store.node_seen(node["id"], False, 1010.0, None)
    code, shown = await alice.get(f"/api/v1/nodes/{node['id']}")
    assert shown["online"] is False and shown["last_seen"] == 1010.0 and shown["chutes"] == state["chutes"]


@pytest_twisted.ensureDeferred
async def test_roles_per_node_decide_rename_delete_and_members(controller):
    alice, bob, carol = await controller.user("alice"), await controller.user("bob"), await controller.user("carol")
    node = await _node(alice)
    base = f"/api/v1/nodes/{node['id']}"
    assert (await alice.put(f"{base}/members/bob", {"role": "user"}))[0] == 200
    code, body = await bob.patch(base, {"name": "renamed"})
    assert code == 403 and body["error"]["field"] == "role"
    assert (await alice.put(f"{base}/members/bob", {"role": "admin"}))[0] == 200
    code, renamed = await bob.patch(base, {"name": "renamed"})
    assert code == 200 and renamed["name"] == "renamed" and renamed["role"] == "admin"
    code, body = await bob.put(f"{base}/members/carol", {"role": "owner"})
    assert code == 403
    assert (await bob.put(f"{base}/members/carol", {"role": "user"}))[0] == 200
    code, body = await bob.delete(f"{base}/members/alice")
    assert code == 403
    code, body = await bob.delete(base)
    assert code == 403
    code, members = await carol.get(f"{base}/members")
    assert members == [{"username": "alice", "role": "owner"}, {"username": "bob", "role": "admin"},
                       {"username": "carol", "role": "user"}]
    code, body = await alice.put(f"{base}/members/alice", {"role": "user"})
    assert code == 409
    code, body = await alice.put(f"{base}/members/nobody", {"role": "user"})
    assert code == 404 and body["error"]["field"] == "username"
    code, body = await alice.put(f"{base}/members/carol", {"role": "root"})
    assert code == 400 and body["error"]["field"] == "role"
    assert (await carol.delete(f"{base}/members/carol"))[0] == 200
    assert (await carol.get(base))[0] == 404
    code, body = await alice.delete(base)
    assert code == 200
    assert await controller.store.node_auth(node["id"]) is None
    assert (await bob.get(base))[0] == 404


@pytest_twisted.ensureDeferred
async def test_a_provisioned_node_is_claimed_once(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    code, key = await alice.post("/api/v1/provision-keys", {"name": "batch", "max_nodes": 5, "ttl": 3600})
    assert code == 201 and key["key"].startswith("pdk_")
    code, node = await controller.client().post("/api/v1/provision", {"provision_key": key["key"], "name": "n1"})
    assert code == 201 and node["claimed"] is False and node["secret"] and node["claim_token"]
    assert (await alice.get(f"/api/v1/nodes/{node['id']}"))[0] == 404  # the key's maker does not own it
    code, claimed = await bob.post("/api/v1/nodes/claim", {"claim_token": node["claim_token"]})
    assert code == 200 and claimed["id"] == node["id"] and claimed["role"] == "owner" and claimed["claimed"]
    code, body = await alice.post("/api/v1/nodes/claim", {"claim_token": node["claim_token"]})
    assert code == 404 and body["error"]["field"] == "claim_token"
    code, body = await bob.post("/api/v1/nodes/claim", {"claim_token": node["claim_token"]})
    assert code == 404


@pytest_twisted.ensureDeferred
async def test_a_provision_key_serves_max_nodes_until_it_expires(controller):
    alice = await controller.user("alice")
    anonymous = controller.client()
    _, two = await alice.post("/api/v1/provision-keys", {"name": "two", "max_nodes": 2, "ttl": 3600})
    _, short = await alice.post("/api/v1/provision-keys", {"name": "short", "max_nodes": 9, "ttl": 60})
    for name in ("a", "b"):
        assert (await anonymous.post("/api/v1/provision", {"provision_key": two["key"], "name": name}))[0] == 201
    code, body = await anonymous.post("/api/v1/provision", {"provision_key": two["key"], "name": "c"})
    assert code == 401 and body["error"]["field"] == "provision_key"
    assert (await anonymous.post("/api/v1/provision", {"provision_key": short["key"], "name": "d"}))[0] == 201
    controller.clock.offset = 61
    code, body = await anonymous.post("/api/v1/provision", {"provision_key": short["key"], "name": "e"})
    assert code == 401
    code, body = await alice.post("/api/v1/provision-keys", {"name": "x", "max_nodes": 0, "ttl": 3600})
    assert code == 400 and body["error"]["field"] == "max_nodes"
    code, body = await alice.post("/api/v1/provision-keys", {"name": "x", "max_nodes": 1, "ttl": 2 ** 70})
    assert code == 400 and body["error"]["field"] == "ttl"


@pytest_twisted.ensureDeferred
async def test_guessing_provision_keys_is_throttled(start_controller, tmp_path):
    running = await start_controller(tmp_path / "throttled", provision_failures_per_minute=4)
    anonymous = running.client()
    codes = [(await anonymous.post("/api/v1/provision", {"provision_key": f"pdk_guess{i}", "name": "n"}))[0]
             for i in range(5)]
    assert codes == [401] * 4 + [429]


@pytest_twisted.ensureDeferred
async def test_groups_hold_your_own_nodes(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    first, second = await _node(alice, "one"), await _node(alice, "two")
    code, group = await alice.post("/api/v1/groups", {"name": "lab"})
    assert code == 201 and group["nodes"] == []
    assert (await alice.post("/api/v1/groups", {"name": "lab"}))[0] == 409
    for node in (first, second, first):
        code, group = await alice.put(f"/api/v1/groups/lab/nodes/{node['id']}")
        assert code == 200
    assert group["nodes"] == sorted([first["id"], second["id"]])
    code, nodes = await alice.get("/api/v1/nodes")
    assert {n["id"]: n["groups"] for n in nodes} == {first["id"]: ["lab"], second["id"]: ["lab"]}
    assert (await bob.get("/api/v1/groups/lab"))[0] == 404
    code, group = await alice.delete(f"/api/v1/groups/lab/nodes/{second['id']}")
    assert code == 200 and group["nodes"] == [first["id"]]
    assert (await alice.delete(f"/api/v1/groups/lab/nodes/{second['id']}"))[0] == 404
    code, groups = await alice.get("/api/v1/groups")
    assert groups == [{"name": "lab", "created": groups[0]["created"], "nodes": [first["id"]]}]
    assert (await alice.delete("/api/v1/groups/lab"))[0] == 200
    assert (await alice.get("/api/v1/groups/lab"))[0] == 404


@pytest_twisted.ensureDeferred
async def test_a_command_is_a_pending_delivery_the_fleet_is_woken_for(controller):
    alice, bob = await controller.user("alice"), await controller.user("bob")
    node = await _node(alice)
    await alice.put(f"/api/v1/nodes/{node['id']}/members/bob", {"role": "user"})
    code, body = await bob.post(f"/api/v1/nodes/{node['id']}/commands", {"type": "stop", "chute": "hello"})
    assert code == 403
    code, sent = await alice.post(f"/api/v1/nodes/{node['id']}/commands", {"type": "stop", "chute": "hello"})
    assert code == 202 and sent["key"].startswith("cmd-") and sent["state"] == "pending"
    assert controller.fleet.woken == [[node["id"]]]
    pending = await controller.store.pending_deliveries(node["id"])
    assert [(d["key"], d["command"], d["chute"], d["user"], d["role"], d["deployment_id"]) for d in pending] == \
        [(sent["key"], "stop", "hello", "alice", "owner", None)]
    assert await controller.store.update_delivery(sent["key"], "succeeded", 5.0, change_id=7)
    assert not await controller.store.update_delivery(sent["key"], "running", 6.0)  # final stays final
    code, delivery = await alice.get(f"/api/v1/deliveries/{sent['key']}")
    assert code == 200 and (delivery["state"], delivery["change_id"]) == ("succeeded", 7)
    assert await controller.store.pending_deliveries(node["id"]) == []
    code, body = await alice.post(f"/api/v1/nodes/{node['id']}/commands", {"type": "format", "chute": "hello"})
    assert code == 400 and body["error"]["field"] == "type"


@pytest_twisted.ensureDeferred
async def test_concurrent_claims_and_provisions_respect_once_and_max_nodes(controller):
    from twisted.internet import defer
    users = [await controller.user(f"u{i}") for i in range(3)]
    _, key = await users[0].post("/api/v1/provision-keys", {"name": "three", "max_nodes": 3, "ttl": 3600})
    anonymous = controller.client()
    answers = await defer.gatherResults([defer.ensureDeferred(
        anonymous.post("/api/v1/provision", {"provision_key": key["key"], "name": f"n{i}"})) for i in range(8)])
    created = [body for code, body in answers if code == 201]
    assert len(created) == 3 and sorted(code for code, _ in answers) == [201] * 3 + [401] * 5
    token = created[0]["claim_token"]
    claims = await defer.gatherResults([defer.ensureDeferred(u.post("/api/v1/nodes/claim", {"claim_token": token}))
                                        for u in users])
    assert sorted(code for code, _ in claims) == [200, 404, 404]
    owners = [u for u, (code, _) in zip(users, claims) if code == 200]
    code, members = await owners[0].get(f"/api/v1/nodes/{created[0]['id']}/members")
    assert len(members) == 1 and members[0]["role"] == "owner"


@pytest_twisted.ensureDeferred
async def test_a_restarted_controller_with_its_own_router_shows_every_node_offline_until_it_joins(start_controller,
                                                                                                   tmp_path):
    state = tmp_path / "restarted"
    running = await start_controller(state)
    admin = await running.login()
    node = await _node(admin)
    await running.store.node_seen(node["id"], True, 1000.0, None)
    assert (await admin.get(f"/api/v1/nodes/{node['id']}"))[1]["online"] is True
    await running.built.service.stopService()
    running = await start_controller(state)
    admin = running.client(admin.token)  # its token outlives the restart: the signing secret is in the database
    code, shown = await admin.get(f"/api/v1/nodes/{node['id']}")
    assert code == 200 and shown["online"] is False and shown["last_seen"] == 1000.0


async def _pages(client, path):
    """Every page of a node list, following Link rel=next: (nodes of each page, the links followed)."""
    pages, links = [], []
    while path:
        response = await treq.get(client.url + path, headers=client.headers())
        assert response.code == 200, await response.text()
        pages.append(json.loads(await response.content()))
        link = response.headers.getRawHeaders(b"link", [b""])[0].decode()
        path = urljoin(path, link[1:link.index(">")]) if link else None
        links.append(link)
    return pages, links


@pytest_twisted.ensureDeferred
async def test_the_node_list_comes_in_pages_by_name_without_repeats_or_gaps(controller):
    alice = await controller.user("alice")
    made = [await _node(alice, name) for name in ("delta", "alpha", "same", "charlie", "same", "bravo", "echo")]
    pages, links = await _pages(alice, "/api/v1/nodes?limit=3")
    assert [len(p) for p in pages] == [3, 3, 1] and links[-1] == ""
    listed = [(n["name"], n["id"]) for page in pages for n in page]
    assert listed == sorted((n["name"], n["id"]) for n in made)
    assert all(link.endswith('>; rel="next"') and "limit=3" in link for link in links[:-1])

    # A node made after the first page was read shows on a later page when its name comes later, and never twice.
    first = await alice.get("/api/v1/nodes?limit=3")
    response = await treq.get(alice.url + "/api/v1/nodes?limit=3", headers=alice.headers())
    link = response.headers.getRawHeaders(b"link")[0].decode()
    late, early = await _node(alice, "zulu"), await _node(alice, "aardvark")
    rest, _ = await _pages(alice, urljoin("/api/v1/nodes", link[1:link.index(">")]))
    names = [n["name"] for n in first[1]] + [n["name"] for page in rest for n in page]
    assert names == ["alpha", "bravo", "charlie", "delta", "echo", "same", "same", "zulu"]
    assert early["id"] not in {n["id"] for page in rest for n in page} and late["name"] in names


@pytest_twisted.ensureDeferred
async def test_the_node_list_filters_on_presence_and_refuses_bad_paging(controller):
    alice = await controller.user("alice")
    up, down = await _node(alice, "up"), await _node(alice, "down")
    await controller.store.node_seen(up["id"], True, 1000.0, None)
    for query, names in (("online=true", ["up"]), ("online=false", ["down"]), ("", ["down", "up"])):
        code, nodes = await alice.get(f"/api/v1/nodes?{query}")
        assert code == 200 and [n["name"] for n in nodes] == names, query
    await controller.store.node_seen(down["id"], True, 1001.0, None)
    pages, links = await _pages(alice, "/api/v1/nodes?online=true&limit=1")
    assert [[n["name"] for n in p] for p in pages] == [["down"], ["up"]] and "online=true" in links[0]
    for query, field in (("after=bm90IGEgY3Vyc29y", "after"), ("after=%00", "after"), ("after=WzEsMl0", "after"),
                         ("limit=0", "limit"), ("limit=1001", "limit"), ("online=maybe", "online")):
        code, body = await alice.get(f"/api/v1/nodes?{query}")
        assert code == 400 and body["error"]["field"] == field, (query, body)


@pytest_twisted.ensureDeferred
async def test_pdtools_lists_every_page_of_a_large_fleet(controller, tmp_path, monkeypatch):
    alice = await controller.user("alice")
    count = PAGE_DEFAULT + 3
    for start in range(0, count, 50):
        await defer.gatherResults([defer.ensureDeferred(_node(alice, f"n{i:04d}"))
                                   for i in range(start, min(count, start + 50))])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_"))}
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "config"))
    monkeypatch.setenv("XDG_CONFIG_HOME", env["XDG_CONFIG_HOME"])
    config.save_token(controller.url, alice.token)
    result = await threads.deferToThread(
        subprocess.run, [sys.executable, "-m", "pdtools.main", "cloud", "--controller", controller.url, "--json",
                         "list-nodes"], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert [n["name"] for n in json.loads(result.stdout)] == [f"n{i:04d}" for i in range(count)]
