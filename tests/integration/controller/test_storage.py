"""The controller's database on SQLite and PostgreSQL: migrations from an empty database, re-open, upgrade,
atomic failure, batched writes; the --db URL."""
import stat
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, task, threads

from pdserver import errors
from pdserver.controller.storage import MIGRATIONS, ControllerStore, Database, database_location, fetch
from tests.conftest import free_port


@pytest.fixture
def location(db_backend, request, tmp_path):
    """A new empty database of each kind (test ids end in [sqlite] / [postgresql])."""
    if db_backend == "sqlite":
        yield database_location(None, tmp_path)
        return
    cluster = request.getfixturevalue("postgres_cluster")
    name = cluster.create_database()
    try:
        yield database_location(cluster.url(name), tmp_path)
    finally:
        cluster.drop_database(name)


async def _open(location, migrations=MIGRATIONS):
    db = Database(location, reactor, migrations)
    await db.startService()
    return db


async def _version(db):
    return (await db.query("SELECT version FROM schema_version"))[0]["version"]


async def _tables(db):
    if db.dialect.name == "sqlite":
        found = await db.query("SELECT name FROM sqlite_master WHERE type = 'table'")
    else:
        found = await db.query("SELECT table_name AS name FROM information_schema.tables "
                               "WHERE table_schema = current_schema()")
    return {r["name"] for r in found}


async def _add_node(db, node_id="0123456789abcdef"):
    await db.execute("INSERT INTO nodes (id, name, key, salt, iterations, keylen, created, online, chutes) "
                     "VALUES (?, 'n', 'k', 's', 1000, 32, 0, ?, '[]')", (node_id, False))


@pytest_twisted.ensureDeferred
async def test_an_empty_database_gets_the_whole_schema(location):
    db = await _open(location)
    try:
        assert await _version(db) == len(MIGRATIONS)
        assert {"users", "nodes", "node_members", "deliveries", "deployments", "store_versions", "audit"} <= \
            await _tables(db)
        await db.execute("INSERT INTO audit (time, action, result) VALUES (?, ?, ?)", (1.0, "a", "ok"))
        await db.execute("INSERT INTO audit (time, action, result) VALUES (?, ?, ?)", (2.0, "b", "ok"))
        assert [r["id"] for r in await db.query("SELECT id FROM audit ORDER BY time")] == [1, 2]  # numbered by it
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_sqlite_database_is_a_private_wal_file(tmp_path):
    db = await _open(tmp_path / "c.db")
    try:
        assert (await db.query("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
        assert (await db.query("PRAGMA foreign_keys"))[0]["foreign_keys"] == 1
        assert stat.S_IMODE((tmp_path / "c.db").stat().st_mode) == 0o600
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_reopening_keeps_the_data_and_applies_only_new_migrations(location):
    db = await _open(location)
    await _add_node(db)
    await db.stopService()
    db = await _open(location)
    assert (await ControllerStore(db).node_auth("0123456789abcdef"))["key"] == "k"
    await db.stopService()
    db = await _open(location, MIGRATIONS + ["ALTER TABLE nodes ADD COLUMN site TEXT; "
                                                      "UPDATE nodes SET site = 'lab'"])
    try:
        assert await _version(db) == len(MIGRATIONS) + 1
        assert await db.query("SELECT id, site FROM nodes") == [{"id": "0123456789abcdef", "site": "lab"}]
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_failing_migration_applies_nothing_and_the_start_fails(location):
    db = await _open(location)
    await db.stopService()
    broken = Database(location, reactor, MIGRATIONS + ["CREATE TABLE half (a TEXT); CREATE TABLE nodes (x TEXT)"])
    with pytest.raises(Exception, match="already exists"):
        await broken.startService()
    assert broken.pool is None and not broken.running
    db = await _open(location)
    try:
        assert await _version(db) == len(MIGRATIONS)
        assert "half" not in await _tables(db)
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_transaction_rolls_back_whole_and_a_stopped_database_answers_unavailable(location):
    db = await _open(location)
    try:
        await _add_node(db)

        def thd_half(txn):
            txn.execute("INSERT INTO settings (name, value) VALUES ('a', 'b')")
            fetch(txn, "SELECT * FROM no_such_table")
        with pytest.raises(Exception, match="no such table|does not exist"):
            await db.interaction(thd_half)
        assert await db.query("SELECT * FROM settings WHERE name = 'a'") == []
    finally:
        await db.stopService()
    with pytest.raises(errors.Unavailable):
        await db.query("SELECT 1")


def test_the_db_url_names_a_sqlite_file_or_a_postgresql_database_or_is_refused(tmp_path):
    assert database_location(None, tmp_path).target == str(tmp_path / "controller.db")
    assert database_location("sqlite:///var/x.db", tmp_path).target == "/var/x.db"
    assert database_location("sqlite:other.db", tmp_path).target == str(tmp_path / "other.db")
    shown = database_location("postgresql://ctl:s3cret@db.example:5433/fleet", tmp_path, pool_size=7)
    assert (shown.dialect.name, shown.pool_size) == ("postgresql", 7)
    assert shown.shown == "postgresql://ctl:***@db.example:5433/fleet"
    assert database_location("postgresql://ctl@/fleet?host=/run/pg&password=s3cret", tmp_path).shown == \
        "postgresql://ctl@/fleet?host=/run/pg&password=***"
    for url in ("mysql://x", "sqlite://", "nonsense", "postgresql://ctl:s3cret@db/", "postgresql://ctl:s3cret@db:x/f",
                "postgresql://ctl:s3cret@db/f?sslmode=maybe&bogus=1"):
        with pytest.raises(errors.InvalidInput) as e:
            database_location(url, tmp_path)
        assert e.value.field == "db" and "s3cret" not in e.value.message


async def _add_delivery(db, key, node_id="0123456789abcdef"):
    await db.execute("INSERT INTO deliveries (key, node_id, command, chute, username, role, state, created, updated) "
                     "VALUES (?, ?, 'install', 'web', 'alice', 'admin', 'pending', 0, 0)", (key, node_id))


@pytest_twisted.ensureDeferred
async def test_the_stores_writes_of_one_reactor_turn_are_one_transaction_and_a_read_sees_them(location):
    db = await _open(location)
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
        # In one batch too, interleaved with another table's writes: each statement's own count, in order.
        batch = [store.update_delivery(keys[1], "succeeded", 9.0),
                 store.node_seen("0123456789abcdef", False, 9.0, None),
                 store.update_delivery(keys[1], "failed", 9.5), store.update_delivery("dep-x-none", "sent", 9.5),
                 store.node_seen("0123456789abcdef", True, 9.6, {"version": "2", "chutes": []}),
                 store.update_delivery(keys[2], "running", 9.7)]
        assert await defer.gatherResults(batch) == [True, 1, False, False, 1, True]
        node = (await db.query("SELECT online, version FROM nodes"))[0]
        assert bool(node["online"]) is True and node["version"] == "2"
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_failing_write_fails_alone_and_its_batch_is_written(location):
    db = await _open(location)
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


async def _wait_for(predicate):
    for _ in range(600):
        if await predicate():
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("timed out waiting for a condition")


@pytest_twisted.ensureDeferred
async def test_two_backends_on_one_database_never_both_win_and_the_loser_gets_a_conflict(location):
    inserted, release = threading.Event(), threading.Event()
    first, second = await _open(location), await _open(location)
    try:
        await _add_node(first)

        def thd_slow_insert(txn):
            txn.execute("INSERT INTO settings (name, value) VALUES ('shared', 'first')")
            inserted.set()
            release.wait(30)  # holds its transaction (and the key) open until the other is waiting for it
        slow = first.interaction(thd_slow_insert)
        assert await threads.deferToThread(inserted.wait, 30)
        racing = second.execute("INSERT INTO settings (name, value) VALUES ('shared', 'second')")
        if first.dialect.name == "postgresql":
            async def blocked():
                found = await first.query("SELECT COUNT(*) AS n FROM pg_stat_activity WHERE wait_event_type = ? "
                                          "AND datname = current_database()", ("Lock",))
                return found[0]["n"] >= 1
            await _wait_for(blocked)
        release.set()
        await slow
        with pytest.raises(errors.Conflict) as e:
            await racing
        assert e.value.field == "name"
        assert await second.query("SELECT value FROM settings WHERE name = 'shared'") == [{"value": "first"}]

        await _add_delivery(first, "dep-z-1")
        stores = [ControllerStore(first), ControllerStore(second)]
        won = await defer.gatherResults([s.update_delivery("dep-z-1", state, 9.0)
                                         for s, state in zip(stores, ("succeeded", "failed"))])
        assert sorted(won) == [False, True]  # one final state, recorded once
        state = (await second.query("SELECT state FROM deliveries WHERE key = 'dep-z-1'"))[0]["state"]
        assert state == ("succeeded" if won[0] else "failed")
    finally:
        release.set()
        await first.stopService()
        await second.stopService()


@pytest_twisted.ensureDeferred
async def test_an_unreachable_server_or_a_missing_database_fails_the_start_in_one_line_without_the_password(
        postgres_cluster, tmp_path):
    for url, says in ((f"postgresql://ctl:s3cret@127.0.0.1:{free_port()}/fleet", "refused"),
                      (postgres_cluster.url("no_such_db", password="s3cret"), '"no_such_db" does not exist')):
        db = Database(database_location(url, tmp_path), reactor)
        with pytest.raises(errors.Unavailable) as e:
            await db.startService()
        message = e.value.message
        assert e.value.field == "db" and says in message and ":***@" in message, message
        assert "s3cret" not in message and "\n" not in message
        assert db.pool is None and not db.running


@pytest_twisted.ensureDeferred
async def test_a_nodes_message_with_a_nul_in_it_is_stored_and_a_nul_key_is_simply_not_found(location):
    db = await _open(location)
    try:
        await _add_node(db)
        await _add_delivery(db, "dep-n-1")
        store = ControllerStore(db)
        assert await store.update_delivery("dep-n-1", "failed", 3.0, message="exit\x00code 1") is True
        message = (await db.query("SELECT message FROM deliveries"))[0]["message"]
        assert message.startswith("exit") and message.endswith("code 1")
        assert await store.node_auth("0123456789abcdef\x00") is None
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_a_restarted_postgresql_server_costs_one_503_and_then_the_pool_reconnects(postgres_cluster,
                                                                                       postgres_database, tmp_path):
    db = await _open(database_location(postgres_database, tmp_path, pool_size=1))
    try:
        await _add_node(db)
        postgres_cluster.restart()
        with pytest.raises(errors.Unavailable) as e:
            await db.query("SELECT id FROM nodes")
        assert e.value.status == 503 and e.value.message == "the database is unreachable"  # details: the log
        assert await db.query("SELECT id FROM nodes") == [{"id": "0123456789abcdef"}]
    finally:
        await db.stopService()


@pytest_twisted.ensureDeferred
async def test_backends_starting_together_on_one_database_apply_each_migration_once(location):
    db = await _open(location, MIGRATIONS[:1])
    await db.stopService()
    upgrade = MIGRATIONS + ["CREATE TABLE sites (name TEXT PRIMARY KEY)"]
    backends = [Database(location, reactor, upgrade) for _ in range(3)]
    try:
        await defer.gatherResults([defer.maybeDeferred(b.startService) for b in backends])
        assert await _version(backends[0]) == len(upgrade) and "sites" in await _tables(backends[2])
        assert await backends[1].query("SELECT COUNT(*) AS n FROM schema_version") == [{"n": 1}]
    finally:
        for b in backends:
            await b.stopService()


@pytest_twisted.ensureDeferred
async def test_a_unix_socket_url_reaches_the_same_database(postgres_cluster, postgres_database, tmp_path):
    name = postgres_database.rsplit("/", 1)[1]
    by_socket = await _open(database_location(postgres_cluster.socket_url(name), tmp_path))
    by_tcp = await _open(database_location(postgres_database, tmp_path))
    try:
        await _add_node(by_socket)
        assert (await ControllerStore(by_tcp).node_auth("0123456789abcdef"))["key"] == "k"
        found = await by_socket.query("SELECT inet_server_addr() IS NULL AS local")
        assert found == [{"local": True}]  # no TCP address: the connection came through the socket
    finally:
        await by_socket.stopService()
        await by_tcp.stopService()


@pytest_twisted.ensureDeferred
async def test_backends_starting_together_on_an_empty_postgresql_database_make_one_schema(postgres_database,
                                                                                            tmp_path):
    location = database_location(postgres_database, tmp_path)
    backends = [Database(location, reactor) for _ in range(4)]
    try:
        await defer.gatherResults([defer.maybeDeferred(b.startService) for b in backends])
        assert await backends[3].query("SELECT version FROM schema_version") == [{"version": len(MIGRATIONS)}]
    finally:
        for b in backends:
            await b.stopService()
