"""IFleetStore's contract, held by the real store on SQLite and on PostgreSQL and by the in-memory double the WAMP
side's unit tests use (tests/fleet_store.py), so those tests stand for the real thing."""
import pytest
import pytest_twisted
from twisted.internet import reactor
from zope.interface.verify import verifyObject

from pdserver.controller.interfaces import IFleetStore
from pdserver.controller.storage import ControllerStore, Database, database_location
from tests.fleet_store import MemoryFleetStore


class Real:
    """The real store, with the rows the contract's checks need put in by SQL."""

    def __init__(self, db):
        self.db = db
        self.store = ControllerStore(db)

    async def add_node(self, node_id):
        await self.db.execute("INSERT INTO nodes (id, name, key, salt, iterations, keylen, created, online, chutes) "
                              "VALUES (?, 'n', 'secret', 'salt', 1000, 32, 0, ?, '[]')", (node_id, False))

    async def add_delivery(self, node_id, key, created):
        await self.db.execute("INSERT INTO deliveries (key, node_id, command, chute, version, config, username, role, "
                              "state, created, updated) VALUES (?, ?, 'install', 'hello', '1', ?, 'alice', 'owner', "
                              "'pending', ?, ?)", (key, node_id, '{"name": "hello"}', created, created))


class Memory:
    def __init__(self):
        self.store = MemoryFleetStore()

    async def add_node(self, node_id):
        self.store.add_node(node_id)

    async def add_delivery(self, node_id, key, created):
        self.store.add_delivery(node_id, key=key, config={"name": "hello"})


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def fleet_store(request, tmp_path):
    if request.param == "memory":
        yield Memory()
        return
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_database")
    db = Database(database_location(url, tmp_path), reactor)
    pytest_twisted.blockon(db.startService())
    try:
        yield Real(db)
    finally:
        pytest_twisted.blockon(db.stopService())


@pytest_twisted.ensureDeferred
async def test_every_fleet_store_keeps_the_same_contract(fleet_store):
    store = fleet_store.store
    assert verifyObject(IFleetStore, store)
    assert await store.node_auth("0000000000000000") is None
    await fleet_store.add_node("0123456789abcdef")
    assert set(await store.node_auth("0123456789abcdef")) >= {"key", "salt", "iterations", "keylen"}
    await store.node_seen("0123456789abcdef", True, 10.0, {"version": "2", "chutes": [{"name": "hello"}]})
    await store.node_seen("0123456789abcdef", False, 11.0, None)

    for i, key in enumerate(("dep-a-0123456789abcdef", "dep-b-0123456789abcdef")):
        await fleet_store.add_delivery("0123456789abcdef", key, float(i))
    pending = await store.pending_deliveries("0123456789abcdef")
    assert [d["key"] for d in pending] == ["dep-a-0123456789abcdef", "dep-b-0123456789abcdef"]  # oldest first
    assert {"key", "deployment_id", "node_id", "state", "command", "chute", "version", "config", "source", "user",
            "role"} <= set(pending[0])
    assert (pending[0]["state"], pending[0]["command"], pending[0]["config"]) == ("pending", None, {"name": "hello"})

    assert await store.update_delivery("dep-a-0123456789abcdef", "running", 12.0, change_id=4) is True
    assert await store.update_delivery("dep-a-0123456789abcdef", "succeeded", 13.0) is True
    assert await store.update_delivery("dep-a-0123456789abcdef", "failed", 14.0, message="late") is False
    assert [d["key"] for d in await store.pending_deliveries("0123456789abcdef")] == ["dep-b-0123456789abcdef"]


@pytest_twisted.ensureDeferred
async def test_a_backend_taking_over_reads_many_nodes_at_once_and_who_is_online(fleet_store):
    store = fleet_store.store
    nodes = [f"{i:016x}" for i in range(1, 4)]
    for node_id in nodes:
        await fleet_store.add_node(node_id)
    assert await store.online_nodes() == []
    await store.node_seen(nodes[0], True, 10.0, None)
    await store.node_seen(nodes[1], True, 10.0, None)
    await store.node_seen(nodes[1], False, 11.0, None)
    assert await store.online_nodes() == [nodes[0]]

    for i, node_id in enumerate(nodes + nodes[:1]):
        await fleet_store.add_delivery(node_id, f"dep-{i}-{node_id}", float(i))
    await store.update_delivery(f"dep-1-{nodes[1]}", "failed", 12.0)
    found = await store.pending_deliveries_of([nodes[0], nodes[1], nodes[0]])
    assert [d["key"] for d in found] == [f"dep-0-{nodes[0]}", f"dep-3-{nodes[0]}"]  # not final, oldest first
    assert await store.pending_deliveries_of([]) == []
