"""The node's SQLite database: one file, WAL journal, schema versions per component.

The node keeps one connection on the reactor thread. Its writes are a few rows
each and WAL with synchronous=NORMAL makes them cheap while still surviving a
kill -9 (only a power loss can drop the last commits).

A database written by a newer release is refused whole, before any migration runs: an older release
cannot know what the newer schema means, and migrating some components but not others would leave a
database neither release can use.
"""
import sqlite3
from pathlib import Path
from typing import Mapping, Sequence

from pdserver import __version__


class NewerSchema(Exception):
    """The database holds a component at a schema version newer than this release knows."""

    def __init__(self, database: str, component: str, found: int, known: int):
        self.component, self.found, self.known = component, found, known
        super().__init__(
            f"the database {database} holds component '{component}' at schema version {found}, but this release "
            f"({__version__}) knows version {known} at most: a newer release wrote it; run that release again, or "
            f"restore a backup made by this one")


def check_versions(conn: sqlite3.Connection, known: Mapping[str, int]) -> None:
    """Refuse (NewerSchema) a database with a component of ``known`` newer than its known version. Components
    this release has no store for are left alone."""
    for component, found in conn.execute("SELECT component, version FROM schema_versions ORDER BY component"):
        if component in known and found > known[component]:
            raise NewerSchema(_file_of(conn), component, found, known[component])


def _file_of(conn: sqlite3.Connection) -> str:
    return conn.execute("PRAGMA database_list").fetchone()[2] or ":memory:"


def open_database(path: Path) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    path.chmod(0o600)
    return conn


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[str]) -> None:
    """Apply the migrations of one component that this database has not seen yet.

    ``migrations[i]`` takes the component from version i to i+1; a migration is
    a script of one or more statements, applied in one transaction. A version newer than ``migrations``
    knows raises NewerSchema.
    """
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    current = row[0] if row else 0
    if current > len(migrations):
        raise NewerSchema(_file_of(conn), component, current, len(migrations))
    for version in range(current, len(migrations)):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[version].split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?) "
                "ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, version + 1))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
