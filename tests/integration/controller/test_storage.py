"""The controller's database: migrations from an empty file, re-open, upgrade, atomic failure; the --db URL."""
import stat

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from pdserver import errors
from pdserver.controller.storage import MIGRATIONS, ControllerStore, Database, fetch, sqlite_path


async def _open(path, migrations=MIGRATIONS):
    db = Database(path, reactor, migrations)
    await db.startService()
    return db


async def _version(db):
    return (await db.query("SELECT version FROM schema_version"))[0]["version"]


async def _tables(db):
    found = await db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {r["name"] for r in found}


async def _add_node(db, node_id="0123456789abcdef"):
    await db.execute("INSERT INTO nodes (id, name, key, salt, iterations, keylen, created, online, chutes) "
                     "VALUES (?, 'n', 'k', 's', 1000, 32, 0, ?, '[]')", (node_id, False))


@pytest_twisted.ensureDeferred
async def test_an_empty_database_gets_the_whole_schema_in_a_private_wal_file(tmp_path):
    db = await _open(tmp_path / "c.db")
    try:
        assert await _version(db) == len(MIGRATIONS)
        assert {"users", "nodes", "node_members", "deliveries", "deployments", "store_versions", "audit"} <= \
            await _tables(db)
        assert (await db.query("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
        assert (await db.query("PRAGMA foreign_keys"))[0]["foreign_keys"] == 1
        assert stat.S_IMODE((tmp_path / "c.db").stat().st_mode) == 0o600
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_reopening_keeps_the_data_and_applies_only_new_migrations(tmp_path):
    db = await _open(tmp_path / "c.db")
    await _add_node(db)
    await db.stopService()
    db = await _open(tmp_path / "c.db")
    assert (await ControllerStore(db).node_auth("0123456789abcdef"))["key"] == "k"
    await db.stopService()
    db = await _open(tmp_path / "c.db", MIGRATIONS + ["ALTER TABLE nodes ADD COLUMN site TEXT; "
                                                      "UPDATE nodes SET site = 'lab'"])
    try:
        assert await _version(db) == len(MIGRATIONS) + 1
        assert await db.query("SELECT id, site FROM nodes") == [{"id": "0123456789abcdef", "site": "lab"}]
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_failing_migration_applies_nothing_and_the_start_fails(tmp_path):
    db = await _open(tmp_path / "c.db")
    await db.stopService()
    broken = Database(tmp_path / "c.db", reactor, MIGRATIONS + ["CREATE TABLE half (a TEXT); CREATE TABLE nodes (x)"])
    with pytest.raises(Exception, match="already exists"):
        await broken.startService()
    assert broken.pool is None and not broken.running
    db = await _open(tmp_path / "c.db")
    try:
        assert await _version(db) == len(MIGRATIONS)
        assert "half" not in await _tables(db)
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_transaction_rolls_back_whole_and_a_stopped_database_answers_unavailable(tmp_path):
    db = await _open(tmp_path / "c.db")
    try:
        await _add_node(db)

        def thd_half(txn):
            txn.execute("INSERT INTO settings (name, value) VALUES ('a', 'b')")
            fetch(txn, "SELECT * FROM no_such_table")
        with pytest.raises(Exception, match="no such table"):
            await db.interaction(thd_half)
        assert await db.query("SELECT * FROM settings WHERE name = 'a'") == []
    finally:
        await db.stopService()
    with pytest.raises(errors.Unavailable):
        await db.query("SELECT 1")


def test_the_db_url_names_a_sqlite_file_or_is_refused(tmp_path):
    assert sqlite_path(None, tmp_path) == tmp_path / "controller.db"
    assert sqlite_path("sqlite:///var/x.db", tmp_path).as_posix() == "/var/x.db"
    assert sqlite_path("sqlite:other.db", tmp_path) == tmp_path / "other.db"
    for url in ("postgresql://db/x", "mysql://x", "sqlite://", "nonsense"):
        with pytest.raises(errors.InvalidInput) as e:
            sqlite_path(url, tmp_path)
        assert e.value.field == "db"


async def _add_delivery(db, key, node_id="0123456789abcdef"):
    await db.execute("INSERT INTO deliveries (key, node_id, command, chute, username, role, state, created, updated) "
                     "VALUES (?, ?, 'install', 'web', 'alice', 'admin', 'pending', 0, 0)", (key, node_id))


@pytest_twisted.ensureDeferred
async def test_the_stores_writes_of_one_reactor_turn_are_one_transaction_and_a_read_sees_them(tmp_path):
    db = await _open(tmp_path / "c.db")
    try:
        await _add_node(db)
        keys = [f"dep-x-{i}" for i in range(50)]
        for key in keys:
            await _add_delivery(db, key)
        store = ControllerStore(db)
        transactions = []
        run_interaction = db.pool.runInteraction
        db.pool.runInteraction = lambda f, *a, **kw: transactions.append(f) or run_interaction(f, *a, **kw)
        writes = [store.update_delivery(key, "sent", 5.0, change_id=i) for i, key in enumerate(keys)]
        writes.append(store.node_seen("0123456789abcdef", True, 6.0, {"version": "1", "chutes": []}))
        pending = await store.pending_deliveries("0123456789abcdef")  # asked in the same turn
        assert {d["state"] for d in pending} == {"sent"} and len(pending) == 50
        assert len(transactions) == 2  # the writes, then the read
        assert await defer.gatherResults(writes) == [True] * 50 + [1]
        assert await store.update_delivery(keys[0], "succeeded", 7.0) is True
        assert await store.update_delivery(keys[0], "failed", 8.0) is False  # final stays final
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_failing_write_fails_alone_and_its_batch_is_written(tmp_path):
    db = await _open(tmp_path / "c.db")
    try:
        await _add_node(db)
        await _add_delivery(db, "dep-y-1")
        good = ControllerStore(db).update_delivery("dep-y-1", "sent", 5.0)
        bad = db.write("UPDATE nodes SET no_such_column = 1", ())
        seen = ControllerStore(db).node_seen("0123456789abcdef", True, 6.0, None)
        assert await good is True and await seen == 1
        with pytest.raises(Exception, match="no_such_column"):
            await bad
        assert (await db.query("SELECT state FROM deliveries"))[0]["state"] == "sent"
    finally:
        await db.stopService()
