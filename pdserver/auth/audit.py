"""The audit log: who did what, when, from where, and how it ended."""
import json
import sqlite3
from typing import Callable, List, Optional

from pdserver.storage import migrate

_MIGRATIONS = [
    """CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time REAL NOT NULL,
        actor TEXT,
        action TEXT NOT NULL,
        target TEXT,
        result TEXT NOT NULL,
        address TEXT,
        detail TEXT)""",
]


class AuditLog:
    def __init__(self, conn: sqlite3.Connection, clock: Callable[[], float]):
        self._conn = conn
        self._clock = clock
        migrate(conn, "audit", _MIGRATIONS)

    def record(self, actor: Optional[str], action: str, result: str, target: Optional[str] = None,
               address: Optional[str] = None, detail: Optional[dict] = None) -> int:
        cursor = self._conn.execute(
            "INSERT INTO audit (time, actor, action, target, result, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self._clock(), actor, action, target, result, address,
             json.dumps(detail, sort_keys=True) if detail else None))
        return cursor.lastrowid

    def list(self, limit: int = 100, before: Optional[int] = None, actor: Optional[str] = None,
             action: Optional[str] = None) -> List[dict]:
        """Newest first; page with ``before`` = the smallest id of the previous page."""
        query, args = "SELECT * FROM audit WHERE 1=1", []
        if before is not None:
            query += " AND id < ?"
            args.append(before)
        if actor is not None:
            query += " AND actor = ?"
            args.append(actor)
        if action is not None:
            query += " AND action = ?"
            args.append(action)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [{"id": r["id"], "time": r["time"], "actor": r["actor"], "action": r["action"],
                 "target": r["target"], "result": r["result"], "address": r["address"],
                 "detail": json.loads(r["detail"]) if r["detail"] else None}
                for r in self._conn.execute(query, args)]
