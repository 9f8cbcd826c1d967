"""The controller's audit log: who did what to which target, when, from where, and how it ended."""
import json
from typing import Callable, Optional

from twisted.internet import defer

from pdserver.controller.storage import Database, fetch, run


def thd_record(txn, at: float, actor: Optional[str], action: str, result: str, target: Optional[str] = None,
               address: Optional[str] = None, detail: Optional[dict] = None) -> None:
    """Write one record inside a caller's transaction (the record commits with what it describes)."""
    run(txn, "INSERT INTO audit (time, actor, action, target, result, address, detail) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (at, actor, action, target, result, address, json.dumps(detail, sort_keys=True) if detail else None))


class Audit:
    def __init__(self, db: Database, clock: Callable[[], float]):
        self._db = db
        self.clock = clock

    def record(self, actor: Optional[str], action: str, result: str, target: Optional[str] = None,
               address: Optional[str] = None, detail: Optional[dict] = None) -> defer.Deferred:
        return self._db.interaction(thd_record, self.clock(), actor, action, result, target, address, detail)

    def list(self, actor: Optional[str], limit: int, before: Optional[int]) -> defer.Deferred:
        """Newest first; ``actor`` None lists everyone's. Page with ``before`` = the smallest id seen."""
        query, args = "SELECT * FROM audit WHERE 1 = 1", []
        if actor is not None:
            query += " AND actor = ?"
            args.append(actor)
        if before is not None:
            query += " AND id < ?"
            args.append(before)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        d = self._db.interaction(fetch, query, tuple(args))
        return d.addCallback(lambda found: [_public(r) for r in found])


def _public(row: dict) -> dict:
    return {**row, "detail": json.loads(row["detail"]) if row["detail"] else None}
