"""`pdserver controller` as a process with its embedded crossbar, and a simulated node speaking the real protocol
(WAMP-CRA with the secret the API handed out): it comes online, a deployment reaches it once and is recorded.
Needs the WAMP side (pdserver.controller.router, wamp, fleet)."""
import os
import signal
import subprocess
import sys

import psutil
import pytest
import pytest_twisted
from twisted.internet import reactor, task

from tests.conftest import REPO, free_port
from tests.integration.controller.helpers import Client
from tests.simulated_node import SimulatedNode

pytest.importorskip("pdserver.controller.fleet")
ADMIN_PASSWORD = "process-admin-password"


async def _until(predicate, timeout=30.0):
    for _ in range(int(timeout / 0.05)):
        value = await predicate()
        if value:
            return value
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError("timed out waiting for a condition")


@pytest.fixture
def controller_process(tmp_path):
    port, wamp_port = free_port(), free_port()
    env = {**os.environ, "PARADROP_CONTROLLER_ADMIN_PASSWORD": ADMIN_PASSWORD,
           "PYTHONPATH": str(REPO), "PARADROP_CROSSBAR": os.environ.get("PARADROP_CROSSBAR", "")}
    process = subprocess.Popen([sys.executable, "-m", "pdserver.main", "controller", "--state-dir",
                                str(tmp_path / "state"), "--port", str(port), "--wamp-port", str(wamp_port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        children = psutil.Process(process.pid).children(recursive=True) if process.poll() is None else []
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        for child in children:
            if child.is_running():
                child.kill()


@pytest_twisted.ensureDeferred
async def test_a_deployment_reaches_a_simulated_node_through_the_embedded_router_once(controller_process):
    url, process = controller_process
    anonymous = Client(url)

    async def healthy():
        try:
            return (await anonymous.get("/api/v1/health"))[0] == 200
        except Exception:
            return False
    await _until(healthy)
    code, login = await anonymous.post("/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    admin = Client(url, login["token"])
    code, node = await admin.post("/api/v1/nodes", {"name": "sim"})
    await admin.post("/api/v1/store/chutes", {"name": "hello"})
    config = {"name": "hello", "version": "1", "services": {"main": {"type": "image", "image": "x"}}}
    assert (await admin.post("/api/v1/store/chutes/hello/versions", {"config": config}))[0] == 201

    sim = SimulatedNode(node["id"], node["secret"], node["wamp_router"])
    done = sim.component.start(reactor)
    try:
        await sim.joined

        async def online():
            code, shown = await admin.get(f"/api/v1/nodes/{node['id']}")
            return shown["online"] and shown["version"] == "sim-1"
        await _until(online)
        wrong = SimulatedNode(node["id"], "not-the-secret", node["wamp_router"])
        started = reactor.seconds()
        with pytest.raises(RuntimeError):
            await wrong.component.start(reactor)
        assert not wrong.joined.called and reactor.seconds() - started < 10  # refused, not retried 200 times
        code, deployment = await admin.post("/api/v1/deployments", {"chute": "hello", "version": "1",
                                                                    "nodes": [node["id"]]})
        assert code == 202

        async def finished():
            code, shown = await admin.get(f"/api/v1/deployments/{deployment['id']}")
            return shown if shown["finished"] else None
        shown = await _until(finished)
        assert [(d["state"], d["change_id"]) for d in shown["deliveries"]] == [("succeeded", 100)]
        assert sim.runs == [{"key": f"dep-{deployment['id']}-{node['id']}", "user": "admin", "role": "owner",
                             "config": config}]
    finally:
        await sim.component.stop()
        await done
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0
