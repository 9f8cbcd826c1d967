"""Users in SQLite; the small table is mirrored in memory so token checks stay off the disk."""
import dataclasses
import re
import secrets
import sqlite3
from typing import Callable, Dict, List, Optional

from pdserver.auth.roles import Role
from pdserver.storage import migrate

USERNAME = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")  # use with fullmatch: ``$`` would let a final newline in

_MIGRATIONS = [
    """CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL,
        generation INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        password_changed REAL NOT NULL)""",
    # Each row gets an identity of its own: a user re-created under an old name is another user, and the
    # tokens of the deleted one (which carry its uid) stay dead. Rows from before get theirs here.
    """ALTER TABLE users ADD COLUMN uid TEXT;
       UPDATE users SET uid = lower(hex(randomblob(16)));
       CREATE UNIQUE INDEX users_uid ON users (uid)""",
]


def new_uid() -> str:
    """128 random bits: never reused, also across restarts, deletions and restored backups."""
    return secrets.token_hex(16)


@dataclasses.dataclass(frozen=True)
class User:
    username: str
    password_hash: str = dataclasses.field(repr=False)
    role: Role
    generation: int
    created: float
    password_changed: float
    uid: str

    def public(self) -> dict:
        return {"username": self.username, "role": self.role.label, "created": self.created,
                "password_changed": self.password_changed}


class UserExists(Exception):
    pass


class UserStore:
    """CRUD on users. A token names the row it was issued for (``uid``) and the row's ``generation``, which
    grows on every password change: deleting the row or changing its password revokes older tokens."""

    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]):
        self._conn = conn
        self._clock = clock
        migrate(conn, "users", _MIGRATIONS)
        self._cache: Dict[str, User] = {
            row["username"]: self._from_row(row) for row in conn.execute("SELECT * FROM users")}

    @staticmethod
    def _from_row(row) -> User:
        return User(row["username"], row["password_hash"], Role.parse(row["role"]), row["generation"],
                    row["created"], row["password_changed"], row["uid"])

    def count(self) -> int:
        return len(self._cache)

    def get(self, username: str) -> Optional[User]:
        return self._cache.get(username)

    def list(self) -> List[User]:
        return sorted(self._cache.values(), key=lambda u: u.username)

    def create(self, username: str, password_hash: str, role: Role) -> User:
        if username in self._cache:
            raise UserExists(username)
        now = self._clock()
        user = User(username, password_hash, role, 0, now, now, new_uid())
        self._conn.execute(
            "INSERT INTO users (username, password_hash, role, generation, created, password_changed, uid) "
            "VALUES (?, ?, ?, 0, ?, ?, ?)", (username, password_hash, role.label, now, now, user.uid))
        self._cache[username] = user
        return user

    def set_password_hash(self, username: str, password_hash: str) -> User:
        user = self._cache[username]
        now = self._clock()
        updated = dataclasses.replace(user, password_hash=password_hash, generation=user.generation + 1,
                                      password_changed=now)
        self._conn.execute(
            "UPDATE users SET password_hash = ?, generation = ?, password_changed = ? WHERE username = ?",
            (password_hash, updated.generation, now, username))
        self._cache[username] = updated
        return updated

    def delete(self, username: str) -> bool:
        if username not in self._cache:
            return False
        self._conn.execute("DELETE FROM users WHERE username = ?", (username,))
        del self._cache[username]
        return True
