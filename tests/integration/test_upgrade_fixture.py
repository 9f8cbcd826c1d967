"""Upgrades keep state: this release starts on the state dir every earlier release left (tests/fixtures/state/<
release>/, made by tools/make-state-fixture) and keeps its users with their roles, its chutes with their
versions and states, its change history, audit records and provisioning; the running chute comes back running
and serving on this engine although the fixture holds no Docker object (reconcile rebuilds it from its stored
project). Downgrades refuse: a state dir (or a controller database) a newer release wrote stops the node (the
controller) with one clear line, and stays unchanged."""
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import docker
import pytest
import requests

from pdserver import __version__
from pdserver.controller.storage import MIGRATIONS
from pdserver.ops.state_dir import known_schema
from tests.conftest import REPO, NodeProcess, _finish, wait_until
from tests.integration.chute_helpers import FINAL

FIXTURES = sorted(p for p in (REPO / "tests" / "fixtures" / "state").iterdir() if p.is_dir())
pytestmark = pytest.mark.docker


@pytest.fixture
def fixture_node(tmp_path, request):
    """A node process on a copy of one fixture's state dir; killed and its Docker objects removed at the end."""
    made = []

    def start(fixture: Path, wait=True):
        shutil.copytree(fixture / "state", tmp_path / "state", symlinks=True)
        expected = json.loads((fixture / "fixture.json").read_text())
        proc = NodeProcess(tmp_path / "state")
        proc.admin_password = expected["users"]["paradrop"]["password"]
        made.append(proc)
        proc.start(wait=wait)
        return proc, expected
    yield start
    for proc in made:
        _finish(proc)


def containers(state: Path) -> dict:
    """chute -> (running, address on its network) of the node's containers."""
    label = f"org.paradrop.node={(state / 'node-id').read_text().strip()}"
    client = docker.from_env()
    try:
        found = {}
        for c in client.containers.list(all=True, filters={"label": label}):
            networks = c.attrs["NetworkSettings"]["Networks"]
            found[c.labels["org.paradrop.chute"]] = (c.status == "running",
                                                     next(iter(networks.values()))["IPAddress"] if networks else "")
        return found
    finally:
        client.close()


def served(address: str):
    try:
        r = requests.get(f"http://{address}:8000/", timeout=2)
        return r.text if r.ok else None
    except requests.RequestException:
        return None


@pytest.mark.parametrize("fixture", FIXTURES, ids=[p.name for p in FIXTURES])
def test_this_release_starts_on_an_earlier_releases_state_and_keeps_it(fixture_node, fixture):
    node, expected = fixture_node(fixture)
    for user, entry in expected["users"].items():
        assert node.token(user, entry["password"])
    session = node.session()
    assert {u["username"]: u["role"] for u in session.get(node.url + "/api/v1/users", timeout=10).json()} == \
        {user: entry["role"] for user, entry in expected["users"].items()}
    chutes = session.get(node.url + "/api/v1/chutes", timeout=10).json()
    assert {c["name"]: {"version": c["version"], "state": c["state"]} for c in chutes} == expected["chutes"]

    newest = max(c["id"] for c in expected["changes"])

    def reconciled():
        later = [c for c in session.get(node.url + "/api/v1/changes", timeout=10).json() if c["id"] > newest]
        return next((c for c in later if c["type"] == "reconcile" and c["state"] in FINAL), None)
    reconcile = wait_until(reconciled, timeout=120, interval=0.2, message="the first reconcile")
    assert reconcile["state"] == "succeeded", reconcile["result"]

    found = containers(node.state_dir)
    assert {chute: running for chute, (running, _) in found.items()} == \
        {chute: entry["state"] == "running" for chute, entry in expected["chutes"].items()}
    for chute, text in expected["serves"].items():
        assert wait_until(lambda: served(found[chute][1]), timeout=20, message=f"{chute} serving") == text

    changes = session.get(node.url + "/api/v1/changes?limit=1000", timeout=10).json()
    kept = [{k: c[k] for k in ("id", "type", "target", "user", "state")} for c in changes if c["id"] <= newest]
    assert kept == expected["changes"]
    audit = session.get(node.url + "/api/v1/audit?limit=1000", timeout=10).json()
    oldest = max(a["id"] for a in expected["audit"])
    assert [{k: a[k] for k in ("id", "actor", "action", "target", "result")} for a in audit if a["id"] <= oldest] \
        == expected["audit"]
    provision = session.get(node.url + "/api/v1/config/provision", timeout=10).json()
    assert (provision["provisioned"], provision["routerId"], provision["pdserver"], provision["wampRouter"]) == \
        (True, expected["provision"]["node_id"], expected["provision"]["controller"],
         expected["provision"]["wamp_router"])


def schema_versions(database: Path) -> dict:
    conn = sqlite3.connect(database)
    try:
        return dict(conn.execute("SELECT component, version FROM schema_versions").fetchall())
    finally:
        conn.close()


def test_a_state_dir_written_by_a_newer_release_stops_the_node_with_one_line_and_stays_as_it_was(
        fixture_node, tmp_path):
    source = tmp_path / "newer"
    shutil.copytree(FIXTURES[-1], source)
    conn = sqlite3.connect(source / "state" / "node.db")
    conn.execute("UPDATE schema_versions SET version = ? WHERE component = 'chutes'", (known_schema()["chutes"] + 1,))
    conn.commit()
    conn.close()
    before = schema_versions(source / "state" / "node.db")
    node, _ = fixture_node(source, wait=False)
    assert node.wait_exit(30) == 1
    output = node.output.read_text()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    assert errors == [
        f"error: the database {node.state_dir / 'node.db'} holds component 'chutes' at schema version "
        f"{before['chutes']}, but this release ({__version__}) knows version {known_schema()['chutes']} at most: "
        f"a newer release wrote it; run that release again, or restore a backup made by this one"]
    assert schema_versions(node.state_dir / "node.db") == before
    assert containers(node.state_dir) == {}


def test_a_controller_database_written_by_a_newer_release_stops_the_controller_with_one_line(tmp_path):
    conn = sqlite3.connect(tmp_path / "controller.db")
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (len(MIGRATIONS) + 1,))
    conn.commit()
    conn.close()
    done = subprocess.run([sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(tmp_path),
                           "--port", "0", "--router", "ws://127.0.0.1:1/ws"], cwd=str(REPO), capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("error:")] == [
        f"error: the database {tmp_path / 'controller.db'} holds component 'controller' at schema version "
        f"{len(MIGRATIONS) + 1}, but this release ({__version__}) knows version "
        f"{len(MIGRATIONS)} at most: a newer release wrote it; run that release again, or restore a backup made "
        f"by this one"]
    conn = sqlite3.connect(tmp_path / "controller.db")
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(len(MIGRATIONS) + 1,)]
    conn.close()
