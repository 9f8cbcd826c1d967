"""Fixtures shared by both tiers: a node in this process (real HTTP, one reactor) and a node
in a subprocess (for restarts, kill -9 and the CLI)."""
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import pytest_twisted
import requests

ADMIN_PASSWORD = "admin-password-for-tests"
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout=15.0, interval=0.02, message="condition"):
    """Poll a condition (never a fixed sleep); fail with ``message`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture
def make_settings(tmp_path):
    from pdserver import settings as settings_module

    def make(**overrides):
        values = dict(state_dir=tmp_path / "state", port=0, admin_password=ADMIN_PASSWORD)
        values.update(overrides)
        return settings_module.load(None, environ={}, **values)
    return make


class InProcessNode:
    def __init__(self, node):
        self.node = node
        self.url = node.url
        self.queue = node.queue

    def login(self, username="paradrop", password=ADMIN_PASSWORD):
        import treq
        d = treq.post(self.url + "/api/v1/auth/local", json={"username": username, "password": password})
        d.addCallback(treq.json_content)
        return d.addCallback(lambda body: body["token"])


@pytest.fixture
def start_node(make_settings):
    """Start nodes in this process on the test reactor (returns a Deferred); all are stopped at teardown."""
    from twisted.internet import reactor

    from pdserver.node import build_node
    started = []

    def start(handlers=None, **overrides):
        node = build_node(make_settings(**overrides), reactor, handlers=handlers)
        started.append(node)
        return node.service.startService().addCallback(lambda _: InProcessNode(node))

    yield start
    for node in reversed(started):
        pytest_twisted.blockon(node.service.stopService())
        node.conn.close()
        remove_docker_objects(node.settings.state_dir)


@pytest.fixture
def node(start_node):
    return pytest_twisted.blockon(start_node())


class NodeProcess:
    """``pdserver node`` as a child process with its own state dir and a free port."""

    def __init__(self, state_dir: Path, env_extra=None):
        self.state_dir = state_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_password = ADMIN_PASSWORD
        self.env_extra = dict(env_extra or {})
        self.proc = None
        self.output = state_dir.parent / "node-output.log"

    def start(self, wait=True, **env):
        environ = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
        environ.update({"PARADROP_ADMIN_PASSWORD": self.admin_password, **self.env_extra, **env})
        out = open(self.output, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pdserver.main", "node", "--state-dir", str(self.state_dir),
             "--port", str(self.port)], env=environ, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
        out.close()
        if wait:
            self.wait_ready()
        return self

    def healthy(self):
        try:
            return requests.get(self.url + "/api/v1/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def wait_ready(self, timeout=20.0):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"pdserver exited with {self.proc.returncode}:\n{self.output.read_text()}")
            return self.healthy()
        wait_until(ready, timeout, message="the node API")

    def stop(self, sig=signal.SIGTERM, timeout=15.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def wait_exit(self, timeout=15.0) -> int:
        return self.proc.wait(timeout)

    def token(self, username="paradrop", password=None):
        r = requests.post(self.url + "/api/v1/auth/local",
                          json={"username": username, "password": password or self.admin_password}, timeout=10)
        r.raise_for_status()
        return r.json()["token"]

    def session(self, token=None):
        s = requests.Session()
        s.headers["Authorization"] = f"Bearer {token or self.token()}"
        return s


@pytest.fixture(scope="session")
def docker_client():
    """The Docker SDK client of the engine `make test` started; fails clearly when it does not answer."""
    import docker
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(f"the Docker engine does not answer ({exc}): run tools/start-engine")
    yield client
    client.close()


@pytest.fixture
def engine(docker_client):
    """The Docker SDK client, for tests that look at what the node made on the engine."""
    return docker_client


def remove_docker_objects(state_dir: Path) -> None:
    """Remove every Docker object a test node made (they carry its node id), even after a failure."""
    node_id_file = state_dir / "node-id"
    if not node_id_file.exists():
        return
    import docker
    label = f"org.paradrop.node={node_id_file.read_text().strip()}"
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
        for network in client.networks.list(filters={"label": label}):
            network.remove()
        for volume in client.volumes.list(filters={"label": label}):
            volume.remove(force=True)
        for image in client.images.list(filters={"label": label}):
            client.images.remove(image.id, force=True)
    finally:
        client.close()


def _finish(proc: "NodeProcess") -> None:
    if proc.proc is not None and proc.proc.poll() is None:
        proc.proc.kill()
        proc.proc.wait()
    remove_docker_objects(proc.state_dir)


@pytest.fixture
def node_process(tmp_path):
    """A running ``pdserver node`` subprocess; killed at teardown whatever happened, its Docker objects removed."""
    proc = NodeProcess(tmp_path / "state")
    try:
        proc.start()
        yield proc
    finally:
        _finish(proc)


@pytest.fixture
def node_process_factory(tmp_path):
    """NodeProcess objects the test starts itself (e.g. with fault-injection settings)."""
    made = []

    def make(**env_extra):
        proc = NodeProcess(tmp_path / "state", env_extra)
        made.append(proc)
        return proc
    yield make
    for proc in made:
        _finish(proc)
