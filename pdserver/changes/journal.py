"""The change journal in SQLite: changes, their progress messages and their executed steps.

Ids come from AUTOINCREMENT, so they keep growing across restarts and are never reused. What one
change stores is bounded: its parameters (refused past MAX_PARAMS_BYTES), each message and step error
(shortened), its number of messages (past MAX_MESSAGES the last row holds the newest one) and its result.
"""
import json
import sqlite3
from typing import List, Optional

from pdserver.changes.model import Change, ChangeState
from pdserver.errors import MAX_MESSAGE, TooLarge, shorten
from pdserver.storage import migrate

MAX_PARAMS_BYTES = 256 * 1024
MAX_MESSAGES = 1000
MAX_RESULT_BYTES = 16 * 1024

_MIGRATIONS = [
    """CREATE TABLE changes (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        type TEXT NOT NULL,
        target TEXT,
        user TEXT,
        state TEXT NOT NULL,
        params TEXT NOT NULL,
        created REAL NOT NULL,
        started REAL,
        finished REAL,
        result TEXT,
        needs_attention INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX changes_state ON changes (state);
    CREATE TABLE change_messages (
        change_id INTEGER NOT NULL REFERENCES changes (id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        time REAL NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (change_id, seq));
    CREATE TABLE change_steps (
        change_id INTEGER NOT NULL REFERENCES changes (id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        step TEXT NOT NULL,
        state TEXT NOT NULL,
        started REAL,
        finished REAL,
        error TEXT,
        PRIMARY KEY (change_id, idx))""",
]


def _bounded(value, text_limit: int = 1000, items: int = 20):
    """A JSON value with long strings shortened and long lists cut."""
    if isinstance(value, str):
        return shorten(value, text_limit)
    if isinstance(value, list):
        return [_bounded(v, text_limit, items) for v in value[:items]]
    if isinstance(value, dict):
        return {k: _bounded(v, text_limit, items) for k, v in list(value.items())[:items]}
    return value


def _result_text(result: Optional[dict]) -> Optional[str]:
    if result is None:
        return None
    text = json.dumps(result, sort_keys=True)
    if len(text) > MAX_RESULT_BYTES:
        text = json.dumps(_bounded(result), sort_keys=True)
    if len(text) > MAX_RESULT_BYTES:
        text = json.dumps({"message": shorten(str(result.get("message", "")), MAX_MESSAGE), "truncated": True})
    return text


def _row_to_change(row) -> Change:
    return Change(
        id=row["id"], type=row["type"], target=row["target"], user=row["user"],
        state=ChangeState(row["state"]), params=json.loads(row["params"]), created=row["created"],
        started=row["started"], finished=row["finished"],
        result=json.loads(row["result"]) if row["result"] else None,
        needs_attention=bool(row["needs_attention"]))


class ChangeJournal:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        migrate(conn, "changes", _MIGRATIONS)

    def create(self, type_: str, target: Optional[str], user: Optional[str], params: dict, now: float) -> Change:
        text = json.dumps(params, sort_keys=True)
        if len(text) > MAX_PARAMS_BYTES:
            raise TooLarge(f"the change's parameters take {len(text)} bytes (at most {MAX_PARAMS_BYTES})",
                           field="body")
        cursor = self._conn.execute(
            "INSERT INTO changes (type, target, user, state, params, created) VALUES (?, ?, ?, ?, ?, ?)",
            (type_, target, user, ChangeState.QUEUED.value, text, now))
        return Change(cursor.lastrowid, type_, target, user, ChangeState.QUEUED, params, now)

    def get(self, change_id: int) -> Optional[Change]:
        row = self._conn.execute("SELECT * FROM changes WHERE id = ?", (change_id,)).fetchone()
        return _row_to_change(row) if row else None

    def list(self, state: Optional[ChangeState] = None, limit: int = 100,
             before: Optional[int] = None) -> List[Change]:
        """Newest first."""
        query, args = "SELECT * FROM changes WHERE 1=1", []
        if state is not None:
            query += " AND state = ?"
            args.append(state.value)
        if before is not None:
            query += " AND id < ?"
            args.append(before)
        query += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [_row_to_change(r) for r in self._conn.execute(query, args)]

    def ids_in_state(self, state: ChangeState) -> List[int]:
        return [r[0] for r in self._conn.execute(
            "SELECT id FROM changes WHERE state = ? ORDER BY id", (state.value,))]

    def set_running(self, change_id: int, now: float) -> None:
        self._conn.execute("UPDATE changes SET state = ?, started = ? WHERE id = ?",
                           (ChangeState.RUNNING.value, now, change_id))

    def finish(self, change_id: int, state: ChangeState, result: Optional[dict], now: float,
               needs_attention: bool = False) -> None:
        self._conn.execute(
            "UPDATE changes SET state = ?, finished = ?, result = ?, needs_attention = ? WHERE id = ?",
            (state.value, now, _result_text(result), int(needs_attention), change_id))

    def add_message(self, change_id: int, time: float, message: str) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO change_messages (change_id, seq, time, message) VALUES (?, "
            "(SELECT MIN(COALESCE(MAX(seq), 0) + 1, ?) FROM change_messages WHERE change_id = ?), ?, ?)",
            (change_id, MAX_MESSAGES, change_id, time, shorten(message)))

    def messages(self, change_id: int) -> List[dict]:
        return [{"time": r["time"], "message": r["message"]} for r in self._conn.execute(
            "SELECT time, message FROM change_messages WHERE change_id = ? ORDER BY seq", (change_id,))]

    def record_plan(self, change_id: int, steps: List[dict]) -> None:
        """Journal the whole plan before it runs, so recovery can roll forward past a commit."""
        self._conn.execute("BEGIN")
        try:
            self._conn.execute("DELETE FROM change_steps WHERE change_id = ?", (change_id,))
            self._conn.executemany(
                "INSERT INTO change_steps (change_id, idx, step, state) VALUES (?, ?, ?, 'pending')",
                [(change_id, i, json.dumps(step, sort_keys=True)) for i, step in enumerate(steps)])
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def step_state(self, change_id: int, index: int, state: str, now: float, error: Optional[str] = None) -> None:
        column = "started" if state == "started" else "finished"
        self._conn.execute(
            f"UPDATE change_steps SET state = ?, {column} = ?, error = ? WHERE change_id = ? AND idx = ?",
            (state, now, shorten(error) if error is not None else None, change_id, index))

    def steps(self, change_id: int) -> List[dict]:
        return [{"index": r["idx"], "step": json.loads(r["step"]), "state": r["state"], "error": r["error"]}
                for r in self._conn.execute(
                    "SELECT * FROM change_steps WHERE change_id = ? ORDER BY idx", (change_id,))]

    def count(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
