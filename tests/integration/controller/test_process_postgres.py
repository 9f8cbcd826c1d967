"""`pdserver controller --db postgresql://...` as a process: what it stores outlives it (a restart with an empty
state dir still has the user and the node), and a database it cannot open stops it with one line that names the
problem and not the password."""
import os
import signal
import subprocess
import sys

import psutil
import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.conftest import REPO, free_port
from tests.integration.controller.helpers import PASSWORD, Client

ADMIN_PASSWORD = "process-admin-password"
ENV = {**os.environ, "PARADROP_CONTROLLER_ADMIN_PASSWORD": ADMIN_PASSWORD,
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
       "PARADROP_CROSSBAR": os.environ.get("PARADROP_CROSSBAR", "")}


def _command(state_dir, db, port=0, wamp_port=0):
    return [sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(state_dir), "--port",
            str(port or free_port()), "--wamp-port", str(wamp_port or free_port()), "--db", db, "--db-pool-size", "3",
            "--allow-registration"]


class Controller:
    """One controller process; stopped (with its router) by ``stop`` or at the test's end."""

    def __init__(self, state_dir, db):
        self.port = free_port()
        self.output = state_dir.parent / f"{state_dir.name}.out"
        with open(self.output, "wb") as out:
            self.process = subprocess.Popen(_command(state_dir, db, self.port), env=ENV, stdout=out,
                                            stderr=subprocess.STDOUT)
        self.client = Client(f"http://127.0.0.1:{self.port}")

    async def ready(self):
        for _ in range(1200):
            try:
                if (await self.client.get("/api/v1/health"))[0] == 200:
                    return
            except Exception:
                pass
            assert self.process.poll() is None, "the controller exited"
            await task.deferLater(reactor, 0.05, lambda: None)
        raise AssertionError("the controller did not become healthy")

    def stop(self) -> int:
        if self.process.poll() is not None:
            return self.process.returncode
        children = psutil.Process(self.process.pid).children(recursive=True)
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()
        finally:
            for child in children:
                if child.is_running():
                    child.kill()


@pytest.fixture
def controllers():
    started = []

    def start(state_dir, db):
        started.append(Controller(state_dir, db))
        return started[-1]
    yield start
    for controller in started:
        controller.stop()


@pytest_twisted.ensureDeferred
async def test_users_and_nodes_outlive_a_restart_on_postgresql(controllers, postgres_database, tmp_path):
    url = postgres_database.replace("@", ":s3cret@", 1)  # the test cluster trusts loopback: any password does
    first = controllers(tmp_path / "first", url)
    await first.ready()
    code, _ = await first.client.post("/api/v1/auth/register", {"username": "alice", "password": PASSWORD})
    assert code == 201
    code, login = await first.client.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD})
    alice = Client(first.client.url, login["token"])
    code, node = await alice.post("/api/v1/nodes", {"name": "kept"})
    assert code == 201
    assert first.stop() == 0

    second = controllers(tmp_path / "second", url)  # a new state dir: all it knows is in the database
    await second.ready()
    code, login = await second.client.post("/api/v1/auth/login", {"username": "alice", "password": PASSWORD})
    assert code == 200
    code, nodes = await Client(second.client.url, login["token"]).get("/api/v1/nodes")
    assert code == 200 and [(n["id"], n["name"], n["role"]) for n in nodes] == [(node["id"], "kept", "owner")]
    assert second.stop() == 0
    output = first.output.read_text() + second.output.read_text()
    assert "database postgresql://paradrop:***@127.0.0.1" in output  # the ready line names it, redacted
    logs = "".join(p.read_text(errors="replace") for p in tmp_path.rglob("*") if p.is_file())
    assert "s3cret" not in logs


@pytest.mark.parametrize("problem", ["unreachable", "missing"])
def test_a_database_it_cannot_open_stops_it_with_one_line_and_no_password(problem, postgres_cluster, tmp_path):
    if problem == "unreachable":
        url, says = f"postgresql://ctl:s3cret@127.0.0.1:{free_port()}/fleet", "refused"
    else:
        url, says = postgres_cluster.url("no_such_db", password="s3cret"), '"no_such_db" does not exist'
    result = subprocess.run(_command(tmp_path / "state", url), env=ENV, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot open the postgresql database") and says in lines[0]
    assert "s3cret" not in result.stderr + result.stdout and "Traceback" not in result.stderr + result.stdout
    logs = "".join(p.read_text() for p in (tmp_path / "state").rglob("*") if p.is_file() and p.suffix != ".db")
    assert "s3cret" not in logs
