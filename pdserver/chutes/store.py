"""Installed chutes in SQLite (mirrored in memory: a node holds tens of chutes, not thousands)."""
import dataclasses
import functools
import json
import sqlite3
from typing import Dict, List, Optional

from pdserver.chutes.naming import legacy_volume
from pdserver.chutes.spec import ChuteSpec, build
from pdserver.storage import migrate

RUNNING = "running"
STOPPED = "stopped"

_MIGRATIONS = [
    """CREATE TABLE chutes (
        name TEXT PRIMARY KEY,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        description TEXT NOT NULL,
        deployment INTEGER NOT NULL,
        source_dir TEXT,
        installed REAL NOT NULL,
        updated REAL NOT NULL)""",
    # The /data volume each chute mounts: chutes installed before names carried the node keep theirs
    # (naming.legacy_volume).
    """ALTER TABLE chutes ADD COLUMN volume TEXT NOT NULL DEFAULT '';
    UPDATE chutes SET volume = 'paradrop-' || name || '-data'""",
    # The subnet (and radio, VLAN) assigned to each host network of the chute: {"<service>.<interface>": {...}}
    """ALTER TABLE chutes ADD COLUMN networks TEXT NOT NULL DEFAULT '{}'""",
]


@dataclasses.dataclass(frozen=True)
class ChuteRecord:
    """What the node has committed for one chute: the containers of ``deployment`` are its current ones,
    ``volume`` is its /data volume for as long as it stays installed; ``networks`` what its host networks
    were given (pdserver.execution.network_plans.assign)."""

    name: str
    version: str
    state: str
    description: dict
    deployment: int
    source_dir: Optional[str]
    installed: float
    updated: float
    volume: str
    networks: Dict[str, dict] = dataclasses.field(default_factory=dict)

    def spec(self) -> ChuteSpec:
        return self._spec

    @functools.cached_property
    def _spec(self) -> ChuteSpec:
        """Validated once per record: list and status routes ask for it on every request."""
        return build(self.description)

    def to_dict(self) -> dict:
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "ChuteRecord":
        """Records journaled by a release that did not keep the volume name had the legacy volume."""
        return cls(**{"volume": legacy_volume(data["name"]), **data})


class ChuteStore:
    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn
        migrate(conn, "chutes", _MIGRATIONS)
        self._cache: Dict[str, ChuteRecord] = {}
        for row in conn.execute("SELECT * FROM chutes"):
            self._cache[row["name"]] = ChuteRecord(
                row["name"], row["version"], row["state"], json.loads(row["description"]), row["deployment"],
                row["source_dir"], row["installed"], row["updated"], row["volume"], json.loads(row["networks"]))

    def get(self, name: str) -> Optional[ChuteRecord]:
        return self._cache.get(name)

    def list(self) -> List[ChuteRecord]:
        return sorted(self._cache.values(), key=lambda r: r.name)

    def save(self, record: ChuteRecord) -> None:
        self._conn.execute(
            "INSERT INTO chutes (name, version, state, description, deployment, source_dir, installed, updated, "
            "volume, networks) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
            "version = excluded.version, state = excluded.state, description = excluded.description, "
            "deployment = excluded.deployment, source_dir = excluded.source_dir, updated = excluded.updated, "
            "volume = excluded.volume, networks = excluded.networks",
            (record.name, record.version, record.state, json.dumps(record.description, sort_keys=True),
             record.deployment, record.source_dir, record.installed, record.updated, record.volume,
             json.dumps(record.networks, sort_keys=True)))
        self._cache[record.name] = record

    def delete(self, name: str) -> None:
        self._conn.execute("DELETE FROM chutes WHERE name = ?", (name,))
        self._cache.pop(name, None)
