"""The controller's database: a twisted.enterprise.adbapi pool, its schema migrations, and the fleet's store.

SQLite in the state dir by default (WAL, one connection in one thread, so writes never contend). The SQL is
kept portable (no AUTOINCREMENT, no INSERT OR REPLACE, DOUBLE PRECISION for times, booleans as parameters):
the driver-specific parts are the few names in ``Dialect`` (and the qmark parameter style, which a
PostgreSQL dialect translates). Nothing about a request lives in this process
between requests (tokens are checked against the database), so several backends may share one database.
"""
import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

from twisted.application.service import Service
from twisted.enterprise import adbapi
from twisted.internet import defer
from zope.interface import implementer

from pdserver import errors
from pdserver.controller.interfaces import FINAL_DELIVERY_STATES, IFleetStore
from pdserver.storage import NewerSchema

DB_FILE = "controller.db"
_FINAL = tuple(sorted(FINAL_DELIVERY_STATES))


@dataclasses.dataclass(frozen=True)
class Dialect:
    name: str
    serial: str  # an integer key the database numbers itself


SQLITE = Dialect("sqlite", "INTEGER PRIMARY KEY")

# MIGRATIONS[i] takes the schema from version i to i + 1; statements are separated by ";".
MIGRATIONS: List[str] = [
    """CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE users (
        username TEXT PRIMARY KEY, uid TEXT NOT NULL UNIQUE, password_hash TEXT NOT NULL,
        admin BOOLEAN NOT NULL, generation INTEGER NOT NULL, created DOUBLE PRECISION NOT NULL);
    CREATE TABLE revoked_tokens (jti TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL);
    CREATE TABLE nodes (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, key TEXT NOT NULL, salt TEXT NOT NULL,
        iterations INTEGER NOT NULL, keylen INTEGER NOT NULL, claim_hash TEXT UNIQUE,
        created DOUBLE PRECISION NOT NULL, online BOOLEAN NOT NULL, last_seen DOUBLE PRECISION,
        version TEXT, chutes TEXT NOT NULL);
    CREATE TABLE node_members (
        node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        username TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        role TEXT NOT NULL, PRIMARY KEY (node_id, username));
    CREATE INDEX node_members_user ON node_members (username);
    CREATE TABLE node_groups (
        owner TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE, name TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL, PRIMARY KEY (owner, name));
    CREATE TABLE group_nodes (
        owner TEXT NOT NULL, group_name TEXT NOT NULL,
        node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
        PRIMARY KEY (owner, group_name, node_id),
        FOREIGN KEY (owner, group_name) REFERENCES node_groups (owner, name) ON DELETE CASCADE);
    CREATE TABLE provision_keys (
        key_hash TEXT PRIMARY KEY, name TEXT NOT NULL,
        owner TEXT NOT NULL REFERENCES users (username) ON DELETE CASCADE,
        max_nodes INTEGER NOT NULL, used INTEGER NOT NULL, expires DOUBLE PRECISION NOT NULL,
        created DOUBLE PRECISION NOT NULL);
    CREATE TABLE store_chutes (
        name TEXT PRIMARY KEY, owner TEXT NOT NULL, description TEXT NOT NULL,
        created DOUBLE PRECISION NOT NULL);
    CREATE TABLE store_versions (
        chute TEXT NOT NULL REFERENCES store_chutes (name) ON DELETE CASCADE, version TEXT NOT NULL,
        config TEXT NOT NULL, archive TEXT, sha256 TEXT, size INTEGER, created DOUBLE PRECISION NOT NULL,
        created_by TEXT NOT NULL, PRIMARY KEY (chute, version));
    CREATE TABLE deployments (
        id TEXT PRIMARY KEY, chute TEXT NOT NULL, version TEXT NOT NULL, username TEXT NOT NULL,
        target TEXT NOT NULL, created DOUBLE PRECISION NOT NULL);
    CREATE INDEX deployments_user ON deployments (username, created);
    CREATE TABLE deliveries (
        key TEXT PRIMARY KEY, deployment_id TEXT REFERENCES deployments (id) ON DELETE CASCADE,
        node_id TEXT NOT NULL, command TEXT NOT NULL, chute TEXT NOT NULL, version TEXT,
        config TEXT, source TEXT, username TEXT NOT NULL, role TEXT NOT NULL, state TEXT NOT NULL,
        change_id INTEGER, message TEXT, created DOUBLE PRECISION NOT NULL, updated DOUBLE PRECISION NOT NULL);
    CREATE INDEX deliveries_node ON deliveries (node_id, state);
    CREATE INDEX deliveries_deployment ON deliveries (deployment_id);
    CREATE TABLE audit (
        id {serial}, time DOUBLE PRECISION NOT NULL, actor TEXT, action TEXT NOT NULL, target TEXT,
        result TEXT NOT NULL, address TEXT, detail TEXT);
    CREATE INDEX audit_actor ON audit (actor, id)""",
]


def _sqlite_open(conn) -> None:
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


def fetch(txn, sql: str, args: Tuple[Any, ...] = ()) -> List[dict]:
    """The rows of one query, as dicts (any DB-API driver)."""
    txn.execute(sql, args)
    if txn.description is None:
        return []
    names = [d[0] for d in txn.description]
    return [dict(zip(names, row)) for row in txn.fetchall()]


def run(txn, sql: str, args: Tuple[Any, ...] = ()) -> int:
    """Run one statement; the number of rows it changed."""
    txn.execute(sql, args)
    return txn.rowcount


def _thd_schema_version(txn) -> int:
    txn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    found = fetch(txn, "SELECT version FROM schema_version")
    if not found:
        txn.execute("INSERT INTO schema_version (version) VALUES (0)")
    return found[0]["version"] if found else 0


def sqlite_path(url: Optional[str], state_dir: Path) -> Path:
    """The SQLite file of a ``--db`` URL (``sqlite:///abs/path`` or ``sqlite:relative``), by default the state
    dir's; any other database is refused until its driver is supported."""
    if not url:
        return state_dir / DB_FILE
    parsed = urlparse(url)
    if parsed.scheme != "sqlite":
        raise errors.InvalidInput(f"unsupported database {parsed.scheme or url!r}: only sqlite: URLs for now",
                                  field="db")
    path = Path(parsed.path or parsed.netloc)
    if not str(path) or str(path) == ".":
        raise errors.InvalidInput("the sqlite: URL names no file", field="db")
    return path if path.is_absolute() else state_dir / path


class Database(Service):
    """The connection pool (one connection, one thread) and the schema; runs the migrations at start."""

    name = "database"

    def __init__(self, path: Path, reactor, migrations: Sequence[str] = MIGRATIONS, dialect: Dialect = SQLITE):
        self.path = path
        self.dialect = dialect
        self.reactor = reactor
        self._migrations = migrations
        self.pool = None
        self._writes: List[Tuple[str, Tuple[Any, ...], defer.Deferred]] = []
        self._flush_call = None

    @defer.inlineCallbacks
    def startService(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        sqlite3.connect(str(self.path)).close()
        self.path.chmod(0o600)
        self.pool = adbapi.ConnectionPool("sqlite3", str(self.path), check_same_thread=False, cp_min=1, cp_max=1,
                                          cp_openfun=_sqlite_open, cp_reactor=self.reactor, cp_noisy=False)
        self.pool.start()
        try:
            current = yield self.interaction(_thd_schema_version)
            if current > len(self._migrations):
                raise NewerSchema(str(self.path), "controller", current, len(self._migrations))
            for version in range(current, len(self._migrations)):
                yield self.interaction(self._thd_migrate, version)
        except BaseException:
            self.pool.close()
            self.pool = None
            raise
        super().startService()

    def stopService(self):
        super().stopService()
        self._flush()
        if self.pool is not None:
            self.pool.close()
            self.pool = None
        return defer.succeed(None)

    def _thd_migrate(self, txn, version: int) -> None:
        """Migration ``version`` -> ``version + 1`` in one transaction: the UPDATE opens it and the DDL joins
        it, so a migration applies whole or not at all."""
        txn.execute("UPDATE schema_version SET version = ?", (version + 1,))
        for statement in self._migrations[version].format(serial=self.dialect.serial).split(";"):
            if statement.strip():
                txn.execute(statement)

    def write(self, sql: str, args: Tuple[Any, ...]) -> defer.Deferred:
        """One statement, batched with the others of this reactor turn into one transaction: fires with the
        number of rows it changed once its batch is committed. Every interaction sends the batch first, and the
        pool's one connection runs them in order: a read sees the writes made before it."""
        d = defer.Deferred()
        self._writes.append((sql, args, d))
        if self._flush_call is None:
            self._flush_call = self.reactor.callLater(0, self._flush)
        return d

    def _flush(self) -> None:
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        self._flush_call = None
        batch, self._writes = self._writes, []
        if not batch:
            return

        def thd_batch(txn):
            return [run(txn, sql, args) for sql, args, _ in batch]

        def committed(counts):
            for (_, _, d), count in zip(batch, counts):
                d.callback(count)

        def one_by_one(failure):
            """A statement failed and took its batch with it: each on its own, so only its own write fails."""
            for sql, args, d in batch:
                self.execute(sql, args).chainDeferred(d)
        self._interaction(thd_batch).addCallbacks(committed, one_by_one)

    def interaction(self, f: Callable, *args, **kwargs) -> defer.Deferred:
        """``f(txn, *args)`` in the database thread, in one transaction (committed when it returns)."""
        self._flush()
        return self._interaction(f, *args, **kwargs)

    def _interaction(self, f: Callable, *args, **kwargs) -> defer.Deferred:
        if self.pool is None:
            return defer.fail(errors.Unavailable("the controller is not running", headers={"Retry-After": "5"}))
        return self.pool.runInteraction(f, *args, **kwargs)

    def query(self, sql: str, args: Tuple[Any, ...] = ()) -> defer.Deferred:
        """Rows of one SELECT, as dicts."""
        return self.interaction(fetch, sql, args)

    def execute(self, sql: str, args: Tuple[Any, ...] = ()) -> defer.Deferred:
        """Run one statement; fires with the number of rows it changed."""
        return self.interaction(run, sql, args)


def _delivery(row: dict) -> dict:
    return {"key": row["key"], "deployment_id": row["deployment_id"], "node_id": row["node_id"],
            "state": row["state"], "command": None if row["command"] == "install" else row["command"],
            "chute": row["chute"], "version": row["version"],
            "config": json.loads(row["config"]) if row["config"] else None,
            "source": json.loads(row["source"]) if row["source"] else None,
            "user": row["username"], "role": row["role"]}


@implementer(IFleetStore)
class ControllerStore:
    """IFleetStore over the database; its writes (one per node event, a thousand at once in a deployment) are
    batched (Database.write)."""

    def __init__(self, db: Database):
        self._db = db


    def node_auth(self, node_id: str) -> defer.Deferred:
        d = self._db.query("SELECT key, salt, iterations, keylen FROM nodes WHERE id = ?", (node_id,))
        return d.addCallback(lambda found: found[0] if found else None)

    def node_seen(self, node_id: str, online: bool, at: float, state: Optional[dict]) -> defer.Deferred:
        if state is None:
            return self._db.write("UPDATE nodes SET online = ?, last_seen = ? WHERE id = ?",
                                  (bool(online), at, node_id))
        chutes = [{"name": str(c.get("name")), "version": str(c.get("version")), "state": str(c.get("state"))}
                  for c in state.get("chutes") or () if isinstance(c, dict)]
        version = state.get("version")
        return self._db.write("UPDATE nodes SET online = ?, last_seen = ?, version = ?, chutes = ? WHERE id = ?",
                           (bool(online), at, str(version) if version is not None else None, json.dumps(chutes),
                            node_id))

    def pending_deliveries(self, node_id: str) -> defer.Deferred:
        marks = ", ".join("?" * len(_FINAL))
        d = self._db.query(f"SELECT * FROM deliveries WHERE node_id = ? AND state NOT IN ({marks}) "
                           "ORDER BY created, key", (node_id, *_FINAL))
        return d.addCallback(lambda found: [_delivery(r) for r in found])

    def update_delivery(self, key: str, state: str, at: float, change_id: Optional[int] = None,
                        message: Optional[str] = None) -> defer.Deferred:
        marks = ", ".join("?" * len(_FINAL))
        d = self._db.write(
            "UPDATE deliveries SET state = ?, updated = ?, change_id = COALESCE(?, change_id), "
            f"message = COALESCE(?, message) WHERE key = ? AND state NOT IN ({marks})",
            (state, at, change_id, errors.shorten(message) if message else None, key, *_FINAL))
        return d.addCallback(lambda count: count > 0)
