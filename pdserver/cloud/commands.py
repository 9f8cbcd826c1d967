"""Remote commands: what the controller asks over WAMP, checked and queued exactly like the Edge API's requests.

The same checks and queue submissions as the routes (pdserver.chutes.requests), the permission of the cloud user's
role on this node checked against the node's own table (owner -> OWNER, admin -> ADMIN, user -> USER), the change
made by ``cloud:<user>`` (so its audit record names that user), and idempotency: a command's key is stored with the
change it made; the same key again answers that change id with ``duplicate: true`` and runs nothing. No autobahn
here: the link turns our errors into WAMP errors.
"""
import sqlite3
import tempfile
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet import defer

from pdserver import errors
from pdserver.auth.roles import Permission, Role, allowed
from pdserver.chutes.networks import check_host_aps
from pdserver.chutes.requests import ChuteRequests, spec_from_config
from pdserver.cloud import download, protocol
from pdserver.storage import migrate
from pdserver.sysconfig import hostconfig

CLOUD_ROLES = {"owner": Role.OWNER, "admin": Role.ADMIN, "user": Role.USER}
PERMISSIONS = {
    protocol.INSTALL_CHUTE: Permission.INSTALL_CHUTE,
    protocol.UPDATE_CHUTE: Permission.MANAGE_CHUTES,
    protocol.REMOVE_CHUTE: Permission.MANAGE_CHUTES,
    protocol.START_CHUTE: Permission.MANAGE_CHUTES,
    protocol.STOP_CHUTE: Permission.MANAGE_CHUTES,
    protocol.RESTART_CHUTE: Permission.MANAGE_CHUTES,
    protocol.SET_HOSTCONFIG: Permission.WRITE_CONFIG,
}
SIMPLE = {protocol.REMOVE_CHUTE: "delete", protocol.START_CHUTE: "start", protocol.STOP_CHUTE: "stop",
          protocol.RESTART_CHUTE: "restart"}
ARGUMENTS = {protocol.INSTALL_CHUTE: {"config", "source"}, protocol.UPDATE_CHUTE: {"config", "source"},
             protocol.SET_HOSTCONFIG: {"config"}, **{name: {"chute"} for name in SIMPLE}}
MAX_KEY = 200
MAX_USER = 100

_MIGRATIONS = [
    """CREATE TABLE cloud_commands (
        key TEXT PRIMARY KEY,
        change_id INTEGER NOT NULL,
        command TEXT NOT NULL,
        time REAL NOT NULL);
    CREATE INDEX cloud_commands_change ON cloud_commands (change_id)""",
]


class CommandLog:
    """Idempotency keys of remote commands and the changes they made, in the node's database."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        migrate(conn, "cloud_commands", _MIGRATIONS)

    def change_of(self, key: str) -> Optional[int]:
        row = self._conn.execute("SELECT change_id FROM cloud_commands WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def key_of(self, change_id: int) -> Optional[str]:
        row = self._conn.execute("SELECT key FROM cloud_commands WHERE change_id = ?", (change_id,)).fetchone()
        return row[0] if row else None

    def add(self, key: str, change_id: int, command: str, time: float) -> None:
        self._conn.execute("INSERT INTO cloud_commands (key, change_id, command, time) VALUES (?, ?, ?, ?)",
                           (key, change_id, command, time))

    def recent(self, limit: int) -> List[Tuple[str, int]]:
        """(key, change id) of the newest ``limit`` commands, newest first."""
        return [(r[0], r[1]) for r in self._conn.execute(
            "SELECT key, change_id FROM cloud_commands ORDER BY time DESC, rowid DESC LIMIT ?", (limit,))]


def _text(value, field: str, limit: int) -> str:
    if not isinstance(value, str) or not value or len(value) > limit or not value.isprintable():
        raise errors.InvalidInput(f"{field} must be 1 to {limit} printable characters", field=field)
    return value


class RemoteCommands:
    def __init__(self, requests: ChuteRequests, queue, chutes, log: CommandLog, audit, reactor,
                 on_submitted: Callable = lambda change, key: None):
        """``on_submitted(change, key)`` is told of every change a command queued (the link follows it)."""
        self._requests = requests
        self._queue = queue
        self._chutes = chutes
        self._log = log
        self._audit = audit
        self._reactor = reactor
        self.on_submitted = on_submitted
        self._running: Dict[str, List[defer.Deferred]] = {}

    def key_of(self, change_id: int) -> Optional[str]:
        """The key of the command that made a change, or None (a local change)."""
        return self._log.key_of(change_id)

    def recent(self) -> List[dict]:
        """The most recent commands and the states of their changes, for the state message."""
        out = []
        for key, change_id in self._log.recent(protocol.COMMANDS_REPORTED):
            change = self._queue.get(change_id)
            out.append({"key": key, "change_id": change_id, "state": change.state.value if change else "unknown"})
        return out

    def run(self, command: str, **kwargs) -> defer.Deferred:
        """Check and queue ``command``: a Deferred of ``{"change_id", "duplicate"}``, or of a pdserver error."""
        try:
            key, user, role, arguments = self._common(command, kwargs)
        except errors.Error:
            return defer.fail()
        done = self._log.change_of(key)
        if done is not None:
            return defer.succeed({"change_id": done, "duplicate": True})
        if key in self._running:
            waiter = defer.Deferred()
            self._running[key].append(waiter)
            return waiter
        self._running[key] = []
        d = defer.maybeDeferred(self._start, command, key, user, role, arguments)
        d.addBoth(self._answer_waiters, key)
        return d

    def _answer_waiters(self, answer, key: str):
        """Deliveries of the same key that came while it ran get its answer, as duplicates (or its error)."""
        for waiter in self._running.pop(key, []):
            if isinstance(answer, dict):
                waiter.callback({**answer, "duplicate": True})
            else:
                waiter.errback(answer)
        return answer

    def _common(self, command: str, kwargs: dict):
        if command not in PERMISSIONS:
            raise errors.NotFound(f"no command {command}", field="command")
        key = _text(kwargs.pop("key", None), "key", MAX_KEY)
        user = _text(kwargs.pop("user", None), "user", MAX_USER)
        role = kwargs.pop("role", None)
        if role not in CLOUD_ROLES:
            raise errors.InvalidInput(f"role must be one of {', '.join(CLOUD_ROLES)}", field="role")
        unknown = set(kwargs) - ARGUMENTS[command]
        if unknown:
            name = sorted(unknown)[0]
            raise errors.InvalidInput(f"{command} takes no argument {name[:100]!r}", field=name[:100])
        return key, user, CLOUD_ROLES[role], kwargs

    @defer.inlineCallbacks
    def _start(self, command, key, user, role, arguments):
        actor = f"cloud:{user}"
        permission = PERMISSIONS[command]
        if not allowed(role, permission):
            self._audit.record(actor, f"cloud:{command}", "forbidden", target=arguments.get("chute"),
                               detail={"key": key, "role": role.label})
            raise errors.Forbidden(f"role {role.label} may not {permission.value}", field="role")
        change = yield self._submit(command, actor, arguments)
        if self._log.change_of(key) is not None:
            return {"change_id": self._log.change_of(key), "duplicate": True}
        self._log.add(key, change.id, command, self._reactor.seconds())
        self._audit.record(actor, f"cloud:{command}", "queued", target=change.target,
                           detail={"key": key, "change_id": change.id})
        self.on_submitted(change, key)
        return {"change_id": change.id, "duplicate": False}

    @defer.inlineCallbacks
    def _submit(self, command, actor, arguments):
        if command in SIMPLE:
            return self._requests.simple(SIMPLE[command], _text(arguments.get("chute"), "chute", 200), actor)
        if command == protocol.SET_HOSTCONFIG:
            config = arguments.get("config")
            if not isinstance(config, dict):
                raise errors.InvalidInput("config must be the whole host configuration", field="config")
            config = hostconfig.validate(config)
            check_host_aps(config, [(r.name, r.networks) for r in self._chutes.list()])
            return self._requests.submit("hostconfig", "hostconfig", actor, {"config": config})
        description, spec, source = yield self._chute(arguments)
        if command == protocol.INSTALL_CHUTE:
            change = yield self._requests.install(actor, description, spec, source)
        else:
            chute = description["name"]
            try:
                self._requests.installed(chute)
            except errors.Error:
                yield self._requests.discard(source)
                raise
            change = yield self._requests.update(actor, chute, description, spec, source)
        return change

    @defer.inlineCallbacks
    def _chute(self, arguments):
        """(description, chute, source dir or None) from ``config`` (like a JSON install) or ``source`` (an archive
        fetched, then like a tar upload)."""
        if ("config" in arguments) == ("source" in arguments):
            raise errors.InvalidInput("give either config or source", field="config")
        if "config" in arguments:
            config = arguments["config"]
            if not isinstance(config, dict):
                raise errors.InvalidInput("config must be a paradrop.yaml as an object", field="config")
            return config, spec_from_config(config), None
        source = download.check_source(arguments["source"])
        self._requests.sources_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=self._requests.sources_dir) as archive:
            yield download.fetch(self._reactor, source, archive, self._requests.max_upload)
            result = yield self._requests.unpack(archive)
        return result
