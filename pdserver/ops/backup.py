"""Backups of a node's state: one tar.gz (mode 0600) with the database, secrets, provisioning, host config and
chute projects, and a manifest naming the release, the schema versions and every file with its mode and hash.

The database is copied with SQLite's online backup API, so a running node keeps working and the copy is one
consistent moment; the other files are copied next, and a chute project the copied records name must be among
them. Logs, run files and build caches stay out (ops.state_dir.REGENERABLE).

A restore refuses onto a running node (it takes the node's own state dir lock), into a non-empty directory
(unless forced), an archive from a newer release or with a newer schema, and a hostile archive: it is unpacked
under the rules of chute uploads (pdserver.chutes.source: the standard ``data`` filter, no absolute paths, '..'
or hard links, size and count limits) into a staging directory, and must hold exactly the files its manifest
lists, with their hashes, before anything moves into place.
"""
import dataclasses
import hashlib
import io
import json
import os
import shutil
import sqlite3
import stat
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Dict, Optional

from pdserver import __version__, errors
from pdserver.chutes.source import extract_archive
from pdserver.ops import state_dir as layout
from pdserver.storage import NewerSchema, check_versions

FORMAT = 1
MANIFEST = "manifest.json"
MAX_BYTES = 16 * 1024 ** 3
MAX_FILES = 200_000
_SECRET_MODE = 0o600


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a restore unpacks at most: a hostile archive must not fill the disk."""

    max_bytes: int = MAX_BYTES
    max_files: int = MAX_FILES


def release_key(version: str):
    """A release version ("0.1.0") as a comparable tuple; InvalidInput for anything else."""
    try:
        return tuple(int(part) for part in version.split("."))
    except (AttributeError, ValueError):
        raise errors.InvalidInput(f"the manifest's release {version!r} is not a version", field="archive") from None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def thd_copy_database(source: Path, dest: Path) -> Dict[str, int]:
    """A consistent copy of the node's database (a running node keeps writing) in one self-contained file;
    its schema versions."""
    src = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
    dst = sqlite3.connect(str(dest))
    try:
        src.backup(dst)
        dst.execute("PRAGMA journal_mode=DELETE")
        return dict(dst.execute("SELECT component, version FROM schema_versions").fetchall())
    finally:
        src.close()
        dst.close()


def _referenced_projects(database: Path):
    conn = sqlite3.connect(str(database))
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'chutes'").fetchone():
            return {}
        return {name: Path(source).name for name, source in
                conn.execute("SELECT name, source_dir FROM chutes WHERE source_dir IS NOT NULL")}
    finally:
        conn.close()


def _thd_snapshot(state_dir: Path, staging: Path) -> dict:
    """Copy what the backup holds into ``staging``; its manifest."""
    schema = thd_copy_database(state_dir / layout.DATABASE, staging / layout.DATABASE)
    files = {}
    for path in sorted(state_dir.rglob("*")):
        relative = path.relative_to(state_dir)
        if relative.parts[0] == layout.DATABASE or layout.regenerable(relative):
            continue
        copy = staging / relative
        if path.is_symlink():
            copy.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(path), copy)
            files[str(relative)] = {"link": os.readlink(path)}
        elif path.is_file():
            copy.parent.mkdir(parents=True, exist_ok=True)
            try:
                shutil.copy2(path, copy)
            except FileNotFoundError:
                continue  # removed while we walked: an upload discarded, a project a change just removed
            files[str(relative)] = {"mode": stat.S_IMODE(copy.stat().st_mode), "sha256": _sha256(copy)}
    files[layout.DATABASE] = {"mode": _SECRET_MODE, "sha256": _sha256(staging / layout.DATABASE)}
    sources = Path("chutes", "sources")
    for chute, project in _referenced_projects(staging / layout.DATABASE).items():
        if not (staging / sources / project).is_dir():
            raise errors.Conflict(f"the project of chute {chute} vanished while the backup ran (a change removed "
                                  f"it): run the backup again", field="state_dir")
    return {"format": FORMAT, "release": __version__, "created": time.time(), "schema": schema, "files": files}


def _thd_write_archive(staging: Path, manifest: dict, output: Path) -> None:
    """The archive, written beside ``output`` with mode 0600 from its first byte and renamed into place."""
    partial = output.with_name(output.name + ".partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _SECRET_MODE)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz", format=tarfile.PAX_FORMAT) as tar:
            data = json.dumps(manifest, indent=1, sort_keys=True).encode()
            info = tarfile.TarInfo(MANIFEST)
            info.size, info.mode, info.mtime = len(data), _SECRET_MODE, int(manifest["created"])
            tar.addfile(info, io.BytesIO(data))
            for relative in sorted(manifest["files"]):
                info = tar.gettarinfo(str(staging / relative), arcname=relative)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(staging / relative, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
        os.chmod(partial, _SECRET_MODE)
        os.replace(partial, output)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def default_output(now: Optional[float] = None) -> Path:
    return Path(time.strftime("paradrop-backup-%Y%m%dT%H%M%SZ.tar.gz", time.gmtime(now)))


def thd_backup(state_dir: Path, output: Path) -> dict:
    """Back up the node state in ``state_dir`` (running or not) into ``output``; the manifest."""
    state_dir, output = state_dir.absolute(), output.absolute()
    if not (state_dir / layout.DATABASE).is_file():
        raise errors.NotFound(f"{state_dir} holds no node state (no {layout.DATABASE})", field="state_dir")
    if state_dir == output.parent or state_dir in output.parents:
        raise errors.InvalidInput("the archive must not be written inside the state dir it backs up", field="output")
    if output.exists():
        raise errors.Conflict(f"{output} exists: name another file", field="output")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".paradrop-backup-") as staging:
        manifest = _thd_snapshot(state_dir, Path(staging))
        _thd_write_archive(Path(staging), manifest, output)
    return manifest


def _read_manifest(staging: Path) -> dict:
    path = staging / MANIFEST
    if not path.is_file() or path.is_symlink():
        raise errors.InvalidInput(f"the archive has no {MANIFEST}: not a ParaDrop node backup", field="archive")
    try:
        manifest = json.loads(path.read_bytes()[:16 * 1024 * 1024])
    except ValueError:
        raise errors.InvalidInput(f"the archive's {MANIFEST} is not JSON", field="archive") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or \
            not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("schema"), dict):
        raise errors.InvalidInput(f"the archive's {MANIFEST} is not of format {FORMAT}", field="archive")
    if release_key(manifest.get("release")) > release_key(__version__):
        raise errors.Conflict(f"the backup was made by release {manifest['release']}, newer than this one "
                              f"({__version__}): restore it with that release or a newer one", field="archive")
    return manifest


def _check_files(staging: Path, manifest: dict) -> None:
    """The unpacked files are exactly the manifest's, with their contents (nothing added, lost or altered)."""
    found = {str(p.relative_to(staging)) for p in staging.rglob("*") if p.is_symlink() or not p.is_dir()}
    found.discard(MANIFEST)
    listed = set(manifest["files"])
    if found != listed:
        odd = sorted(found ^ listed)[:3]
        raise errors.InvalidInput(f"the archive's files differ from its manifest (e.g. {odd})", field="archive")
    for relative, entry in manifest["files"].items():
        path = staging / relative
        if not isinstance(entry, dict):
            raise errors.InvalidInput(f"the manifest's entry of {relative!r} is not an object", field="archive")
        if "link" in entry:
            if not path.is_symlink() or os.readlink(path) != entry["link"]:
                raise errors.InvalidInput(f"{relative!r} is not the link the manifest names", field="archive")
        elif path.is_symlink() or not path.is_file() or _sha256(path) != entry.get("sha256") or \
                not isinstance(entry.get("mode"), int):
            raise errors.InvalidInput(f"{relative!r} does not match the manifest (damaged archive?)",
                                      field="archive")


def _check_schema(database: Path) -> None:
    conn = sqlite3.connect(str(database))
    try:
        check_versions(conn, layout.known_schema())
    except NewerSchema as e:
        raise errors.Conflict(str(e), field="archive") from None
    except sqlite3.DatabaseError as e:
        raise errors.InvalidInput(f"the archive's database cannot be read: {e}", field="archive") from None
    finally:
        conn.close()


def _contents(state_dir: Path):
    return [p for p in state_dir.iterdir() if p.name != layout.LOCK_FILE]


def thd_restore(archive: Path, state_dir: Path, force: bool = False, limits: Limits = Limits()) -> dict:
    """Restore ``archive`` into ``state_dir`` (absent or empty; with ``force``, its contents are replaced);
    the manifest. Nothing changes in ``state_dir`` unless the whole archive checks out (an absent one that a
    refused restore made goes again)."""
    state_dir = state_dir.absolute()
    if not archive.is_file():
        raise errors.NotFound(f"no archive at {archive}", field="archive")
    created = not state_dir.exists()
    try:
        return _restore(archive, state_dir, force, limits)
    except BaseException:
        if created:
            shutil.rmtree(state_dir, ignore_errors=True)
        raise


def _restore(archive: Path, state_dir: Path, force: bool, limits: Limits) -> dict:
    with layout.lock(state_dir):
        if _contents(state_dir) and not force:
            raise errors.Conflict(f"{state_dir} is not empty: restore into an empty or new directory, or pass "
                                  f"--force to replace what it holds", field="state_dir")
        staging_root = Path(tempfile.mkdtemp(dir=state_dir, prefix=".restore-"))
        try:
            staging = staging_root / "state"
            with open(archive, "rb") as stream:
                extract_archive(stream, staging, limits.max_bytes, limits.max_files)
            manifest = _read_manifest(staging)
            _check_files(staging, manifest)
            _check_schema(staging / layout.DATABASE)
            (staging / MANIFEST).unlink()
            for relative, entry in manifest["files"].items():
                if "mode" in entry:
                    os.chmod(staging / relative, entry["mode"] & 0o755 | 0o600)
            for old in _contents(state_dir):
                if old == staging_root:
                    continue
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old)
                else:
                    old.unlink()
            for entry in staging.iterdir():
                os.rename(entry, state_dir / entry.name)
        finally:
            shutil.rmtree(staging_root, ignore_errors=True)
        os.chmod(state_dir, 0o700)
    return manifest
