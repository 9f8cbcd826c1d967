"""The chute store: chutes and their versions, each validated exactly as a node validates an install.

A version comes from a tar of the chute project (unpacked and checked with pdserver.chutes.source in a thread,
then the archive itself is kept in the database, in chunks, for nodes to download from any backend) or from JSON
``{config}`` (checked with pdserver.chutes.spec; image services only, as on the node). The version is the
paradrop.yaml's. Versions an earlier release kept as files under its state dir are served from there.
"""
import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Callable, Optional

from twisted.internet import defer

from pdserver import errors
from pdserver.chutes.source import thd_unpack_project
from pdserver.controller.audit import Audit, thd_record
from pdserver.controller.storage import Database, fetch, run
from pdserver.validation import SchemaError, check

CHUTE_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"}
_COPY_CHUNK = 1024 * 1024
ARCHIVE_CHUNK = 1024 * 1024  # bytes per row of store_archive_chunks: what a download holds in memory at once
IN_DATABASE = "database"  # store_versions.archive of a version whose archive is in store_archive_chunks


def check_chute_name(value) -> str:
    try:
        check(value, CHUTE_NAME)
    except SchemaError:
        raise errors.InvalidInput("chute must match ^[a-z][a-z0-9-]{0,62}$", field="chute") from None
    return value


def thd_keep_archive(stream, work: Path, max_bytes: int):
    """Thread code: copy an uploaded tar to ``work``/archive (its sha256 on the way), unpack and validate it in
    ``work``/project, drop the unpacked copy; (description, path of the archive, sha256, size)."""
    work.mkdir(parents=True)
    archive = work / "archive"
    digest, size = hashlib.sha256(), 0
    stream.seek(0)
    with open(archive, "wb") as out:
        while True:
            chunk = stream.read(_COPY_CHUNK)
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    with open(archive, "rb") as f:
        description, _ = thd_unpack_project(f, work / "project", max_bytes)
    shutil.rmtree(work / "project")
    return description, archive, digest.hexdigest(), size


def _uncancelled(d: defer.Deferred) -> defer.Deferred:
    """A Deferred with ``d``'s result; cancelling it fails it at once and leaves ``d`` (a thread's work) alone."""
    out = defer.Deferred()
    d.addCallbacks(lambda value: out.called or out.callback(value),
                   lambda failure: out.called or out.errback(failure))
    return out


def _version(row: dict) -> dict:
    return {"chute": row["chute"], "version": row["version"], "config": json.loads(row["config"]),
            "archive": row["archive"] is not None, "sha256": row["sha256"], "size": row["size"],
            "created": row["created"], "created_by": row["created_by"]}


def _thd_store_archive(txn, chute: str, version: str, path: Path) -> None:
    with open(path, "rb") as f:
        for seq, data in enumerate(iter(lambda: f.read(ARCHIVE_CHUNK), b"")):
            run(txn, "INSERT INTO store_archive_chunks (chute, version, seq, data) VALUES (?, ?, ?, ?)",
                (chute, version, seq, data))


class ChuteStore:
    def __init__(self, db: Database, audit: Audit, scratch: Path, run_in_thread: Callable[..., defer.Deferred],
                 max_upload_bytes: int):
        """``scratch``: where uploads are unpacked and checked (this backend's own disk)."""
        self._db = db
        self._audit = audit
        self._scratch = scratch
        self._run_in_thread = run_in_thread
        self._max_upload = max_upload_bytes

    def list_chutes(self) -> defer.Deferred:
        return self._db.query(
            "SELECT c.*, (SELECT COUNT(*) FROM store_versions v WHERE v.chute = c.name) AS versions "
            "FROM store_chutes c ORDER BY c.name")

    def create_chute(self, username: str, name, description: str, address: Optional[str]) -> defer.Deferred:
        name = check_chute_name(name)

        def thd_create(txn):
            if fetch(txn, "SELECT name FROM store_chutes WHERE name = ?", (name,)):
                raise errors.Conflict(f"chute {name} exists in the store", field="name")
            now = self._audit.clock()
            run(txn, "INSERT INTO store_chutes (name, owner, description, created) VALUES (?, ?, ?, ?)",
                (name, username, description, now))
            thd_record(txn, now, username, "store-chute-create", "succeeded", target=name, address=address)
            return {"name": name, "owner": username, "description": description, "created": now, "versions": 0}
        return self._db.interaction(thd_create)

    @staticmethod
    def _thd_chute(txn, name: str) -> dict:
        found = fetch(txn, "SELECT * FROM store_chutes WHERE name = ?", (name,))
        if not found:
            raise errors.NotFound(f"no chute {name} in the store", field="chute")
        return found[0]

    def get_chute(self, name: str) -> defer.Deferred:
        def thd_get(txn):
            chute = self._thd_chute(txn, name)
            versions = fetch(txn, "SELECT version, created FROM store_versions WHERE chute = ? ORDER BY created",
                             (name,))
            return {**chute, "versions": versions}
        return self._db.interaction(thd_get)

    def versions(self, name: str) -> defer.Deferred:
        def thd_versions(txn):
            self._thd_chute(txn, name)
            return [_version(r) for r in fetch(txn, "SELECT * FROM store_versions WHERE chute = ? ORDER BY created",
                                               (name,))]
        return self._db.interaction(thd_versions)

    def get_version(self, name: str, version: str) -> defer.Deferred:
        def thd_get(txn):
            self._thd_chute(txn, name)
            found = fetch(txn, "SELECT * FROM store_versions WHERE chute = ? AND version = ?", (name, version))
            if not found:
                raise errors.NotFound(f"chute {name} has no version {version}", field="version")
            return {**_version(found[0]), "archive_path": found[0]["archive"]}
        return self._db.interaction(thd_get)

    def archive_chunk(self, name: str, version: str, seq: int) -> defer.Deferred:
        """Bytes ``seq`` of a version's archive kept in the database; b"" past its end."""
        d = self._db.query("SELECT data FROM store_archive_chunks WHERE chute = ? AND version = ? AND seq = ?",
                           (name, version, seq))
        return d.addCallback(lambda found: bytes(found[0]["data"]) if found else b"")

    @defer.inlineCallbacks
    def add_tar(self, username: str, name: str, stream, address: Optional[str]):
        """A version from an uploaded project tar; the archive is kept only when the version is stored.

        The request's Deferred is cancelled when its client leaves, but a thread cannot be: the clean-up waits
        for the thread's end, so nothing it writes stays behind."""
        work = self._scratch / ".incoming" / uuid.uuid4().hex
        thread_done = defer.Deferred()
        unpacked = self._run_in_thread(thd_keep_archive, stream, work, self._max_upload)
        unpacked.addBoth(lambda result: (thread_done.callback(None), result)[1])
        try:
            description, archive, sha256, size = yield _uncancelled(unpacked)
            version = yield self._add(username, name, description, (archive, sha256, size), address)
            return version
        finally:
            yield thread_done
            yield self._run_in_thread(shutil.rmtree, str(work), True)

    def add_config(self, username: str, name: str, description: dict, address: Optional[str]) -> defer.Deferred:
        return self._add(username, name, description, None, address)

    def _add(self, username, name, description: dict, archive, address) -> defer.Deferred:
        if description["name"] != name:
            raise errors.InvalidInput(f"the paradrop.yaml names chute {description['name']}, not {name}",
                                      field="name")
        version = str(description["version"])

        def thd_add(txn):
            chute = self._thd_chute(txn, name)
            if chute["owner"] != username:
                raise errors.Forbidden(f"only {chute['owner']} adds versions of chute {name}", field="chute")
            if fetch(txn, "SELECT version FROM store_versions WHERE chute = ? AND version = ?", (name, version)):
                raise errors.Conflict(f"chute {name} already has version {version}", field="version")
            now = self._audit.clock()
            source, sha256, size = archive or (None, None, None)
            run(txn, "INSERT INTO store_versions (chute, version, config, archive, sha256, size, created, created_by) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, version, json.dumps(description), IN_DATABASE if source else None, sha256, size, now,
                 username))
            if source is not None:
                _thd_store_archive(txn, name, version, source)
            thd_record(txn, now, username, "store-version-create", "succeeded", target=name, address=address,
                       detail={"version": version, "archive": archive is not None})
            return _version(fetch(txn, "SELECT * FROM store_versions WHERE chute = ? AND version = ?",
                                  (name, version))[0])
        return self._db.interaction(thd_add)
