"""The production shape of issue 12: crossbar run on its own from tools/crossbar/config.json, the controller joining
it with --router and its ticket file, a node reaching the controller through it.

The router is started from the committed config (only its listen address changed to a free loopback port), with
the controller's ticket in its environment; nodes are simulated ones speaking the real protocol (tests/
simulated_node.py) in processes of their own.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import requests

from pdserver.controller.router import TICKET_VARIABLE, crossbar_path
from tests.conftest import REPO, free_port, wait_until

ROUTER_DIR = REPO / "tools" / "crossbar"
PASSWORD = "external-router-admin-password"

pytestmark = pytest.mark.skipif(not os.path.exists(crossbar_path()), reason="crossbar is not installed "
                                                                            "(make crossbar)")


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    if os.environ.get("PARADROP_CROSSBAR"):
        env["PARADROP_CROSSBAR"] = os.environ["PARADROP_CROSSBAR"]
    return {**env, **extra}


def _stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


@pytest.fixture
def spawn(tmp_path):
    """Start a process in a session of its own, output to a log under tmp_path; all are stopped at teardown."""
    started = []

    def start(name, args, env):
        with open(tmp_path / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                                    start_new_session=True)
        proc.log = tmp_path / f"{name}.log"
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        _stop(proc)


def _alive(proc, what):
    if proc.poll() is not None:
        raise AssertionError(f"{what} exited with {proc.returncode}:\n{proc.log.read_text()[-3000:]}")


def test_the_committed_router_config_is_what_the_code_makes():
    result = subprocess.run([sys.executable, "-m", "pdserver.main", "router-config"], capture_output=True, text=True,
                            check=True, cwd=str(REPO))
    assert json.loads(result.stdout) == json.loads((ROUTER_DIR / "config.json").read_text())
    assert (ROUTER_DIR / "www" / "index.html").exists()


def test_a_controller_joins_a_router_run_on_its_own_and_deploys_through_it(tmp_path, spawn):
    ticket = "t-" + os.urandom(24).hex()
    router_port, api_port = free_port(), free_port()
    cbdir = tmp_path / "router"
    shutil.copytree(ROUTER_DIR, cbdir)
    config = json.loads((cbdir / "config.json").read_text())
    transport = config["workers"][0]["transports"][0]
    auth = transport["paths"]["ws"]["auth"]
    assert auth["ticket"]["principals"]["controller"]["ticket"] == f"${{{TICKET_VARIABLE}}}"  # no secret in the file
    endpoint = transport["endpoint"]
    endpoint.update(interface="127.0.0.1", port=router_port)
    (cbdir / "config.json").write_text(json.dumps(config))
    router = spawn("crossbar", [crossbar_path(), "start", "--cbdir", str(cbdir)], _env(**{TICKET_VARIABLE: ticket}))
    router_url = f"ws://127.0.0.1:{router_port}/ws"

    ticket_file = tmp_path / "ticket"
    ticket_file.write_text(ticket + "\n")
    ticket_file.chmod(0o600)
    controller = spawn("controller", [
        sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(tmp_path / "controller"),
        "--port", str(api_port), "--router", router_url, "--router-ticket-file", str(ticket_file)],
        _env(PARADROP_CONTROLLER_ADMIN_PASSWORD=PASSWORD, PYTHONPATH=str(REPO)))
    base = f"http://127.0.0.1:{api_port}"

    def healthy():
        _alive(router, "crossbar")
        _alive(controller, "the controller")
        try:
            return requests.get(base + "/api/v1/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False
    wait_until(healthy, 90, interval=0.1, message="the controller's API")
    session = requests.Session()
    token = session.post(base + "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}).json()
    session.headers["Authorization"] = f"Bearer {token['token']}"
    node = session.post(base + "/api/v1/nodes", json={"name": "edge"}).json()
    assert node["wamp_router"] == router_url  # what the node is told: the router the controller joined

    simulated = spawn("node", [sys.executable, "-m", "tests.simulated_node", node["id"], node["wamp_router"], "0.01"],
                      _env(SIMULATED_NODE_SECRET=node["secret"], PYTHONPATH=str(REPO)))

    def online():
        _alive(simulated, "the simulated node")
        return session.get(base + f"/api/v1/nodes/{node['id']}").json()["online"]
    wait_until(online, 60, interval=0.1, message="the node online through the external router")

    chute = {"name": "hello", "version": "1",
             "services": {"main": {"type": "light", "image": "busybox", "command": "httpd -f -p 8000"}}}
    assert session.post(base + "/api/v1/store/chutes", json={"name": "hello"}).status_code == 201
    assert session.post(base + "/api/v1/store/chutes/hello/versions", json={"config": chute}).status_code == 201
    deployment = session.post(base + "/api/v1/deployments",
                              json={"chute": "hello", "version": "1", "nodes": [node["id"]]}).json()

    def finished():
        _alive(controller, "the controller")
        shown = session.get(base + f"/api/v1/deployments/{deployment['id']}").json()
        return shown if shown["states"] == {"succeeded": 1} else None
    wait_until(finished, 60, interval=0.1, message="the deployment to succeed")
    wait_until(lambda: session.get(base + f"/api/v1/nodes/{node['id']}").json()["chutes"] == [
        {"name": "hello", "version": "1", "state": "running"}], 30, interval=0.1, message="the node's new state")

    # The router's own log never shows the ticket (crossbar reads it from the environment, hidden).
    _stop(controller)
    assert ticket not in router.log.read_text()
