"""PostgreSQL through psycopg 3 (imported only when a ``postgresql://`` database is configured): the connection's
arguments, qmark parameters for the controller's portable SQL, and the driver's errors in pdserver.errors terms.

Chosen over psycopg2 after measuring both through adbapi on one connection (1,000 inserts, 1,000 updates, 500
single-row reads): within noise of each other; psycopg 3 is the maintained one, prepares repeated statements
itself and names every error by its SQLSTATE.
"""
import functools
import re
from typing import Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import conninfo

from pdserver import errors

CONNECT_TIMEOUT = 10  # seconds; libpq waits for ever by default when a host drops packets


def redact(url: str) -> str:
    """``url`` as logs and errors may show it: no password, neither in the user part nor as a parameter."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, host = netloc.rsplit("@", 1)
        netloc = f"{user.split(':', 1)[0]}{':***' if ':' in user else ''}@{host}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query)], safe="/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def check_url(url: str) -> dict:
    """libpq's reading of the URL (``InvalidInput`` on ``db`` when it has none), with the connect timeout."""
    try:
        urlsplit(url).port
        params = conninfo.conninfo_to_dict(url)
    except (ValueError, psycopg.Error) as e:
        raise errors.InvalidInput(f"invalid PostgreSQL URL {redact(url)}: {one_line(str(e), url)}",
                                  field="db") from None
    if not params.get("dbname"):
        raise errors.InvalidInput(f"the PostgreSQL URL {redact(url)} names no database (postgresql://USER@HOST/DB)",
                                  field="db")
    params.setdefault("connect_timeout", str(CONNECT_TIMEOUT))
    return params


def one_line(message: str, url: str) -> str:
    """A driver's message on one line, without the URL's password should it be echoed."""
    parts = urlsplit(url)
    text = "; ".join(line.strip() for line in message.splitlines() if line.strip())
    for password in [parts.password] + [v for k, v in parse_qsl(parts.query) if k == "password"]:
        if password:
            text = text.replace(password, "***")
    return text


@functools.lru_cache(maxsize=1024)
def _pyformat(sql: str) -> str:
    """qmark (``?``, the controller's SQL) to psycopg's ``%s``; a ``?`` never appears in the SQL's literals."""
    return sql.replace("%", "%%").replace("?", "%s")


def _params(params):
    """PostgreSQL's text holds no NUL character (SQLite's does): U+FFFD stands in for it, so a hostile name
    looked up is not found (as on SQLite) and a node's message with a NUL in it is still stored."""
    return tuple(p.replace("\x00", "\ufffd") if isinstance(p, str) and "\x00" in p else p for p in params)


class QmarkCursor(psycopg.Cursor):
    """A cursor taking the ``?`` placeholders SQLite takes, so one text of each query serves both."""

    def execute(self, query, params=None, **kwargs):
        if params is None:
            return super().execute(query, **kwargs)
        return super().execute(_pyformat(query), _params(params), **kwargs)

    def executemany(self, query, params_seq, **kwargs):
        return super().executemany(_pyformat(query), [_params(p) for p in params_seq], **kwargs)


_UPDATED_TABLE = re.compile(r"\s*UPDATE\s+(\w+)\s", re.IGNORECASE)


def runs_of_one_text(statements) -> List[Tuple[str, List[int]]]:
    """The batch as runs of one SQL text each, [(sql, [index into statements, ...])], in an order that has the
    same effect: an UPDATE joins the latest run of its text unless a statement on its table, or any statement
    that is not an UPDATE, came after that run began. UPDATEs of different tables commute: the controller's
    batched writes change no key that another row refers to."""
    runs: List[Tuple[str, List[int]]] = []
    latest: Dict[str, int] = {}  # table -> the run that last updated it
    floor = 0  # runs before this one take no more statements
    for index, (sql, _args) in enumerate(statements):
        match = _UPDATED_TABLE.match(sql)
        table = match.group(1).lower() if match else None
        run = latest.get(table) if table else None
        if run is not None and run >= floor and runs[run][0] == sql:
            runs[run][1].append(index)
            continue
        runs.append((sql, [index]))
        if table is None:
            floor = len(runs)
        else:
            latest[table] = len(runs) - 1
    return runs


def thd_copy_rows(txn, table: str, columns, rows) -> None:
    """Thread code: new rows of one table in the transaction, with one COPY (10,000 deliveries of a deployment:
    a fraction of an executemany's time); a failing row fails them all, as an INSERT of them in one statement
    would. ``table`` and ``columns`` are the caller's constants, never input."""
    with txn.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(_params(row))


def thd_run_pipelined(connection, statements) -> list:
    """Thread code: the statements in the connection's transaction, sent without waiting for each answer, those
    of one text together (psycopg's executemany: a third of the time of a cursor each); the rows each changed.
    The first failure is raised (and the transaction is then rolled back whole)."""
    runs = []
    with connection.pipeline():
        for sql, indexes in runs_of_one_text(statements):
            cursor = connection.cursor()
            cursor.executemany(sql, [statements[i][1] for i in indexes], returning=True)
            runs.append((cursor, indexes))
    counts = [0] * len(statements)
    for cursor, indexes in runs:
        for index in indexes:
            counts[index] = cursor.rowcount
            cursor.nextset()
    return counts


def connect_kwargs(params: dict) -> dict:
    """adbapi's keyword arguments to psycopg.connect."""
    return {**params, "cursor_factory": QmarkCursor}


def translate(error: BaseException, url: str) -> Optional[errors.Error]:
    """A driver error in pdserver.errors terms, or None to let it through: a lost race with another writer (a
    unique key taken, a row referred to deleted, a deadlock) is a Conflict, an unreachable server Unavailable."""
    if not isinstance(error, psycopg.Error):
        return None
    if isinstance(error, psycopg.errors.UniqueViolation):
        key = re.match(r"Key \((.+?)\)=", error.diag.message_detail or "")
        return errors.Conflict("it exists already (made by a concurrent request)", field=key and key.group(1))
    if isinstance(error, psycopg.errors.ForeignKeyViolation):
        return errors.Conflict("what it refers to was removed by a concurrent request")
    state = error.sqlstate or ""
    if state.startswith("40"):  # transaction rollback: serialization failure, deadlock
        return errors.Conflict("a concurrent change conflicted with this one: try again")
    # connection failures, the server shutting down, a database or role that is not there, a wrong password
    if isinstance(error, psycopg.OperationalError) and (not state or state[:2] in ("08", "57", "3D", "28")):
        return errors.Unavailable(one_line(str(error), url), headers={"Retry-After": "5"})
    return None
