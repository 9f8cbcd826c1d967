"""Downgrades refuse: a database holding a component at a schema version newer than this release knows is
left exactly as it was, with an error naming the component, both versions and what to do; never a partial
migration (the node checks every component before any store migrates)."""
import sqlite3

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.internet.task import Clock

from pdserver import __version__
from pdserver.controller.storage import MIGRATIONS, Database
from pdserver.node import build_node
from pdserver.ops.state_dir import known_schema
from pdserver.storage import NewerSchema, check_versions, migrate, open_database


def versions(conn) -> dict:
    return dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())


def tables(conn) -> set:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_migrate_refuses_a_component_newer_than_its_migrations_and_changes_nothing(tmp_path):
    conn = open_database(tmp_path / "node.db")
    migrate(conn, "things", ["CREATE TABLE things (a TEXT)"])
    conn.execute("UPDATE schema_versions SET version = 3 WHERE component = 'things'")
    with pytest.raises(NewerSchema) as raised:
        migrate(conn, "things", ["CREATE TABLE things (a TEXT)", "ALTER TABLE things ADD COLUMN b TEXT"])
    message = str(raised.value)
    assert "'things'" in message and "version 3" in message and "version 2 at most" in message
    assert __version__ in message and "newer release" in message and "restore a backup" in message
    assert str(tmp_path / "node.db") in message and "\n" not in message
    assert versions(conn) == {"things": 3}
    assert [r[1] for r in conn.execute("PRAGMA table_info(things)")] == ["a"]


def test_the_same_or_an_older_version_migrates_as_before(tmp_path):
    conn = open_database(tmp_path / "node.db")
    migrate(conn, "things", ["CREATE TABLE things (a TEXT)"])
    migrate(conn, "things", ["CREATE TABLE things (a TEXT)"])
    migrate(conn, "things", ["CREATE TABLE things (a TEXT)", "ALTER TABLE things ADD COLUMN b TEXT"])
    assert versions(conn) == {"things": 2}


def test_check_versions_leaves_components_this_release_has_no_store_for():
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_versions VALUES ('future_thing', 7), ('users', 1)")
    check_versions(conn, {"users": 1})
    with pytest.raises(NewerSchema, match="'users' at schema version 1.*version 0 at most"):
        check_versions(conn, {"users": 0})


def test_known_schema_names_every_component_a_node_keeps(make_settings):
    """A store added without its line in node.known_schema would escape the check made before migrations."""
    node = build_node(make_settings(), Clock())
    try:
        assert versions(node.conn) == known_schema()
    finally:
        node.conn.close()


def test_a_node_database_from_a_newer_release_is_refused_before_any_component_migrates(make_settings):
    settings = make_settings()
    known = known_schema()
    assert set(known) == {"users", "audit", "changes", "chutes", "cloud_commands"} and all(known.values())
    conn = open_database(settings.database_path)
    conn.execute("INSERT INTO schema_versions VALUES ('chutes', ?)", (known["chutes"] + 1,))
    conn.close()
    with pytest.raises(NewerSchema, match=f"'chutes' at schema version {known['chutes'] + 1}"):
        build_node(settings, Clock())
    conn = open_database(settings.database_path)
    assert versions(conn) == {"chutes": known["chutes"] + 1}
    assert tables(conn) == {"schema_versions"}  # users, audit, changes: not one migrated


@pytest_twisted.ensureDeferred
async def test_a_controller_database_from_a_newer_release_is_refused_unchanged(tmp_path):
    db = Database(tmp_path / "c.db", reactor, MIGRATIONS)
    await db.startService()
    await db.execute("UPDATE schema_version SET version = ?", (len(MIGRATIONS) + 2,))
    await db.stopService()
    again = Database(tmp_path / "c.db", reactor, MIGRATIONS)
    with pytest.raises(NewerSchema) as raised:
        await again.startService()
    assert raised.value.component == "controller"
    assert (raised.value.found, raised.value.known) == (len(MIGRATIONS) + 2, len(MIGRATIONS))
    assert again.pool is None and not again.running
    conn = sqlite3.connect(tmp_path / "c.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS) + 2,)]
