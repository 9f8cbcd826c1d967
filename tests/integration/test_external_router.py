"""The production shape of issue 12: crossbar run on its own from tools/crossbar/config.json, the controller joining
it with --router and its ticket file, a node reaching the controller through it.

The router is started from the committed config (only its listen address changed to a free loopback port), with
the controller's ticket in its environment; nodes are simulated ones speaking the real protocol (tests/
simulated_node.py) in processes of their own.
"""
import json
import os
import subprocess
import sys

import requests

from pdserver.controller.router import TICKET_VARIABLE
from tests.conftest import REPO, free_port, wait_until
from tests.integration.processes import ROUTER_DIR, alive, clean_env, needs_crossbar, start_router, stop, ticket_file
from tests.integration.processes import spawn  # noqa: F401  (a fixture)

PASSWORD = "external-router-admin-password"

pytestmark = needs_crossbar


def test_the_committed_router_config_is_what_the_code_makes():
    result = subprocess.run([sys.executable, "-m", "pdserver.main", "router-config"], capture_output=True, text=True,
                            check=True, cwd=str(REPO))
    assert json.loads(result.stdout) == json.loads((ROUTER_DIR / "config.json").read_text())
    assert (ROUTER_DIR / "www" / "index.html").exists()


def test_a_controller_joins_a_router_run_on_its_own_and_deploys_through_it(tmp_path, spawn):
    ticket = "t-" + os.urandom(24).hex()
    config = json.loads((ROUTER_DIR / "config.json").read_text())
    auth = config["workers"][0]["transports"][0]["paths"]["ws"]["auth"]
    assert auth["ticket"]["principals"]["controller"]["ticket"] == f"${{{TICKET_VARIABLE}}}"  # no secret in the file
    router, router_url = start_router(spawn, tmp_path / "router", ticket)
    api_port = free_port()
    controller = spawn("controller", [
        sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(tmp_path / "controller"),
        "--port", str(api_port), "--router", router_url,
        "--router-ticket-file", str(ticket_file(tmp_path / "ticket", ticket))],
        clean_env(PARADROP_CONTROLLER_ADMIN_PASSWORD=PASSWORD))
    base = f"http://127.0.0.1:{api_port}"

    def healthy():
        alive(router, controller)
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
                      clean_env(SIMULATED_NODE_SECRET=node["secret"]))

    def online():
        alive(simulated)
        return session.get(base + f"/api/v1/nodes/{node['id']}").json()["online"]
    wait_until(online, 60, interval=0.1, message="the node online through the external router")

    chute = {"name": "hello", "version": "1",
             "services": {"main": {"type": "light", "image": "busybox", "command": "httpd -f -p 8000"}}}
    assert session.post(base + "/api/v1/store/chutes", json={"name": "hello"}).status_code == 201
    assert session.post(base + "/api/v1/store/chutes/hello/versions", json={"config": chute}).status_code == 201
    deployment = session.post(base + "/api/v1/deployments",
                              json={"chute": "hello", "version": "1", "nodes": [node["id"]]}).json()

    def finished():
        alive(controller)
        shown = session.get(base + f"/api/v1/deployments/{deployment['id']}").json()
        return shown if shown["states"] == {"succeeded": 1} else None
    wait_until(finished, 60, interval=0.1, message="the deployment to succeed")
    wait_until(lambda: session.get(base + f"/api/v1/nodes/{node['id']}").json()["chutes"] == [
        {"name": "hello", "version": "1", "state": "running"}], 30, interval=0.1, message="the node's new state")

    # The router's own log never shows the ticket (crossbar reads it from the environment, hidden).
    stop(controller)
    assert ticket not in router.log.read_text()
