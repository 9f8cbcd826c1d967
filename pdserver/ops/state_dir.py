"""A node's state dir as a whole: the lock a running node holds on it, what in it is regenerable, and a state
dir that moved (restored from a backup into another directory, or copied).

The lock is an flock on ``<state>/node.lock``: the kernel drops it when the node dies, even by kill -9, so a
stale lock file never blocks a start or a restore.
"""
import dataclasses
import fcntl
import os
from pathlib import Path
from typing import IO

from pdserver import errors

LOCK_FILE = "node.lock"
DATABASE = "node.db"
# Made again by a node on start or by its first reconcile; never copied into a backup or a fixture.
REGENERABLE = frozenset({LOCK_FILE, "logs", "run", "sysconfig", "chutes/build",
                         DATABASE + "-wal", DATABASE + "-shm", DATABASE + "-journal"})


class StateDirBusy(errors.Conflict):
    """A node runs on this state dir."""


def lock(state_dir: Path) -> IO:
    """Take the state dir's lock for as long as the returned file stays open (StateDirBusy if a node holds it)."""
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = state_dir / LOCK_FILE
    handle = open(os.open(path, os.O_RDWR | os.O_CREAT, 0o600), "r+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StateDirBusy(f"a node (pid {holder}) is running on {state_dir}: stop it first",
                           field="state_dir") from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def regenerable(relative: Path) -> bool:
    """Whether a path of the state dir (relative to it) is made again by the node."""
    return any(str(relative) == name or str(relative).startswith(name + "/") for name in REGENERABLE)


def known_schema() -> dict:
    """The schema version of each component of the node's database that this release knows (the stores are
    imported here only: a restore checks an archive without loading the whole node)."""
    from pdserver.auth import audit, users
    from pdserver.changes import journal
    from pdserver.chutes import store
    from pdserver.cloud import commands
    return {"users": len(users._MIGRATIONS), "audit": len(audit._MIGRATIONS), "changes": len(journal._MIGRATIONS),
            "chutes": len(store._MIGRATIONS), "cloud_commands": len(commands._MIGRATIONS)}


def relocate_sources(chutes, sources_dir: Path) -> int:
    """Point the chute records at their projects in ``sources_dir`` when the state dir moved: a record naming
    a project under another directory takes the one of the same name here, if it is here. Returns how many
    records moved. Without it, the first reconcile could not rebuild their images and would remove the
    projects as unused."""
    moved = 0
    for record in chutes.list():
        if not record.source_dir or Path(record.source_dir).parent == sources_dir:
            continue
        here = sources_dir / Path(record.source_dir).name
        if here.is_dir():
            chutes.save(dataclasses.replace(record, source_dir=str(here)))
            moved += 1
    return moved
