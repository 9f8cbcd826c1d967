"""A backup round trip on real processes: a node with a running chute and a second user is backed up while it
runs (`pdserver backup`), then the node, its Docker objects and its state dir go; `pdserver restore` into a
new directory and a node started there bring the users and the chute back, running and serving. A restore
onto a running node is refused, and so is a second node on its state dir."""
import shutil
import stat
import subprocess
import sys

import docker
import pytest
import requests

from tests.conftest import ADMIN_PASSWORD, REPO, NodeProcess, _finish, remove_docker_objects, wait_until
from tests.integration.chute_helpers import act, install, unique, write_project

pytestmark = pytest.mark.docker
OPERATOR = ("operator", "operator-password-for-tests")


def pdserver(*args):
    return subprocess.run([sys.executable, "-m", "pdserver.main", *map(str, args)], cwd=str(REPO),
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def processes():
    made = []
    yield made
    for proc in made:
        _finish(proc)


def served_by(state_dir, chute):
    """The body the chute's container serves on its own address (no published port), once it answers."""
    label = [f"org.paradrop.node={(state_dir / 'node-id').read_text().strip()}", f"org.paradrop.chute={chute}"]
    client = docker.from_env()
    try:
        [container] = client.containers.list(filters={"label": label})
        address = next(iter(container.attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    finally:
        client.close()

    def fetch():
        try:
            r = requests.get(f"http://{address}:8000/", timeout=2)
            return r.text if r.ok else None
        except requests.RequestException:
            return None
    return wait_until(fetch, timeout=30, interval=0.1, message=f"{chute} serving")


def test_a_backup_of_a_running_node_restores_its_users_and_chutes_elsewhere(tmp_path, processes):
    (tmp_path / "old").mkdir()
    node = NodeProcess(tmp_path / "old" / "state")
    processes.append(node)
    node.start()
    session = node.session()
    r = session.post(node.url + "/api/v1/users", json={"username": OPERATOR[0], "password": OPERATOR[1],
                                                       "role": "trusted"}, timeout=30)
    assert r.status_code == 201, r.text
    chute = unique("bk")
    project = write_project(tmp_path / "project", {
        "name": chute, "version": 1, "web": {"service": "main", "port": 8000},
        "services": {"main": {"type": "light", "image": "busybox", "command": "httpd -f -p 8000 -h /opt/chute/www"}}},
        {"www/index.html": "kept by the backup\n"})
    assert install(session, node.url, project)["state"] == "succeeded"
    assert served_by(node.state_dir, chute) == "kept by the backup\n"

    archive = tmp_path / "node-backup.tar.gz"
    done = pdserver("backup", "--state-dir", node.state_dir, "--output", archive)
    assert done.returncode == 0, done.stderr
    assert stat.S_IMODE(archive.stat().st_mode) == 0o600
    assert act(session, node.url, chute, "restart")["state"] == "succeeded"  # the node kept working

    refused = pdserver("restore", "--force", "--state-dir", node.state_dir, archive)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        f"error: a node (pid {node.proc.pid}) is running on {node.state_dir}: stop it first"]
    second = NodeProcess(node.state_dir)
    processes.append(second)
    second.start(wait=False)
    assert second.wait_exit(30) == 1
    assert f"error: a node (pid {node.proc.pid}) is running on {node.state_dir}: stop it first" in \
        second.output.read_text()
    assert node.healthy()

    assert node.stop() == 0
    remove_docker_objects(node.state_dir)
    shutil.rmtree(node.state_dir)

    restored = tmp_path / "new" / "state"
    done = pdserver("restore", "--state-dir", restored, archive)
    assert done.returncode == 0, done.stderr
    again = NodeProcess(restored)
    processes.append(again)
    again.start()
    assert again.token(*OPERATOR)
    assert again.token("paradrop", ADMIN_PASSWORD)
    session = again.session()

    def running():
        [listed] = session.get(again.url + "/api/v1/chutes", timeout=10).json()
        return listed if listed["state"] == "running" and _reconciled(session, again.url) else None
    listed = wait_until(running, timeout=120, interval=0.2, message="the chute back after the first reconcile")
    assert (listed["name"], listed["version"]) == (chute, "1")
    assert served_by(restored, chute) == "kept by the backup\n"


def _reconciled(session, url) -> bool:
    [newest] = session.get(url + "/api/v1/changes?limit=1", timeout=10).json()
    if newest["type"] == "reconcile" and newest["state"] not in ("queued", "running"):
        assert newest["state"] == "succeeded", newest["result"]
        return True
    return False
