"""What the release before node-scoped Docker names left behind: its chute store and the names and labels it
gave a chute's Docker objects (every object also carried org.paradrop.node=<node id>). Upgrade tests of
both tiers build a node's state from these, as that release would have written it."""
import json
import re
import sqlite3

# Version 1 of the "chutes" component, the last that release knew.
STORE_SCHEMA = """CREATE TABLE chutes (
    name TEXT PRIMARY KEY,
    version TEXT NOT NULL,
    state TEXT NOT NULL,
    description TEXT NOT NULL,
    deployment INTEGER NOT NULL,
    source_dir TEXT,
    installed REAL NOT NULL,
    updated REAL NOT NULL)"""


def network(chute: str) -> str:
    return f"paradrop-{chute}"


def volume(chute: str) -> str:
    return f"paradrop-{chute}-data"


def container(chute: str, service: str, deployment: int) -> str:
    return f"paradrop-{chute}-{service}-{deployment}"


def image(chute: str, service: str, version, deployment: int) -> str:
    return f"paradrop-chute/{chute}-{service}:{re.sub(r'[^A-Za-z0-9_.-]', '_', str(version))}-{deployment}"


def write_store(conn: sqlite3.Connection, chutes) -> None:
    """The chute store with its rows: ``chutes`` are (description, state, deployment, source_dir)."""
    conn.execute(STORE_SCHEMA)
    conn.execute("INSERT INTO schema_versions (component, version) VALUES ('chutes', 1)")
    for description, state, deployment, source_dir in chutes:
        conn.execute("INSERT INTO chutes VALUES (?, ?, ?, ?, ?, ?, 1.0, 1.0)",
                     (description["name"], str(description["version"]), state,
                      json.dumps(description, sort_keys=True), deployment, source_dir))
