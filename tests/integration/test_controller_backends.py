"""Issue 12.2: several controller backends on one router and one PostgreSQL database, and a backend killed in the
middle of a deployment loses nothing.

One crossbar router run on its own from tools/crossbar/config.json (as tests/integration/test_external_router.py
runs it), one PostgreSQL database (tests/postgres.py), two ``pdserver controller --router ... --db postgresql://...``
processes (A and B: their own state dirs and HTTP ports, the same database and ticket) and 20 simulated nodes in one
process (tests/simulated_node.py ``--nodes``), which prints ``ran NODE KEY`` each time a node runs a command.

A deployment of a version uploaded as a project archive (which each node downloads from the backend that sends
it its delivery) to the 20 nodes is made through A; once some of its deliveries are on their way (sent, queued or
running) and before all have ended, one backend is killed with SIGKILL (A, the one that created it, or B). Through
the survivor, within a bound: its deployment websocket (opened before the kill) shows every node's end and closes,
and then its API shows every delivery succeeded and the deployment finished, each node ran the deployment's
key exactly once, and all 20 nodes are online with the chute installed.
"""
import collections
import io
import json
import os
import signal
import sys
import tarfile
import time

import pytest
import requests
import websocket  # websocket-client
import yaml

from tests import postgres
from tests.conftest import free_port, wait_until
from tests.integration.processes import alive, clean_env, needs_crossbar, start_router, ticket_file
from tests.integration.processes import spawn  # noqa: F401  (a fixture)

PASSWORD = "controller-backends-admin-password"
NODES = 20
STEP = 1.0  # seconds per step of a simulated install (queued, running): an install takes 2 s
TAKEOVER = 40.0  # seconds the survivor has, after the kill, to bring the deployment to its end
IN_FLIGHT = ("sent", "queued", "running")
CHUTE = {"name": "hello", "version": "1",
         "services": {"main": {"type": "light", "image": "busybox", "command": "httpd -f -p 8000"}}}

postgres_cluster, postgres_database = postgres.postgres_cluster, postgres.postgres_database

BYSTANDER = """
import sys
from autobahn.twisted.component import Component, run
url, ticket = sys.argv[1], open(sys.argv[2]).read().strip()
component = Component(transports=[{"url": url, "max_retries": 0}], realm="paradrop",
                      authentication={"ticket": {"authid": "controller", "ticket": ticket}})
component.on("join", lambda session, details: print("joined", file=sys.__stdout__, flush=True))  # run() takes stdout
run([component], log_level="warn")
"""

pytestmark = needs_crossbar


class Backend:
    """One ``pdserver controller`` process joined to the router, on the shared database."""

    def __init__(self, spawn, tmp_path, name, router_url, tickets, db):
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = spawn(f"controller-{name}", [
            sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(tmp_path / f"state-{name}"),
            "--port", str(self.port), "--router", router_url, "--router-ticket-file", str(tickets),
            "--db", db, "--db-pool-size", "3"], clean_env(PARADROP_CONTROLLER_ADMIN_PASSWORD=PASSWORD))
        self.proc.name = f"controller {name}"
        self.http = requests.Session()

    def healthy(self):
        alive(self.proc)
        try:
            return requests.get(self.url + "/api/v1/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def joined(self):
        """Its WAMP session has joined the router (its health says so)."""
        alive(self.proc)
        return requests.get(self.url + "/api/v1/health", timeout=2).json()["router"] is True

    def log_in(self):
        answer = self.http.post(self.url + "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        self.http.headers["Authorization"] = f"Bearer {answer.json()['token']}"

    def get(self, path):
        alive(self.proc)
        answer = self.http.get(self.url + path, timeout=10)
        assert answer.status_code == 200, (path, answer.status_code, answer.text)
        return answer.json()

    def post(self, path, body, status):
        answer = self.http.post(self.url + path, json=body, timeout=30)
        assert answer.status_code == status, (path, answer.status_code, answer.text)
        return answer.json()

    def nodes(self):
        """Every node (one page: there are fewer than the page limit)."""
        answer = self.http.get(self.url + "/api/v1/nodes?limit=1000", timeout=10)
        assert answer.status_code == 200 and "Link" not in answer.headers, answer.text
        return answer.json()


def _project_tar(config) -> bytes:
    """A chute project archive: nodes download it from the backend that sends them the deployment."""
    data = yaml.safe_dump(config).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo("paradrop.yaml")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _ran(proc):
    """(node id, key) of each ``ran`` line the simulated nodes printed so far."""
    return [tuple(line.split()[1:3]) for line in proc.log.read_text().splitlines() if line.startswith("ran ")]


@pytest.mark.parametrize("victim", ["creator", "other"])
def test_a_backend_killed_mid_deployment_loses_nothing(victim, tmp_path, postgres_database, spawn):
    started = time.monotonic()
    ticket = "t-" + os.urandom(24).hex()
    router, router_url = start_router(spawn, tmp_path / "router", ticket)
    tickets = ticket_file(tmp_path / "ticket", ticket)

    # A first (it makes the tables and the admin), then B on the same database.
    a = Backend(spawn, tmp_path, "A", router_url, tickets, postgres_database)
    wait_until(a.healthy, 60, interval=0.1, message="backend A's API")
    b = Backend(spawn, tmp_path, "B", router_url, tickets, postgres_database)
    wait_until(b.healthy, 60, interval=0.1, message="backend B's API")
    wait_until(lambda: alive(router) or (a.joined() and b.joined()), 60, interval=0.1,
               message="both backends joined to the router")
    # Another session with the controller's ticket (an operator's tool, a readiness probe) is no backend: were it
    # counted as one, the nodes it "owned" would never be seen online or sent anything.
    bystander = spawn("bystander", [sys.executable, "-c", BYSTANDER, router_url, str(tickets)], clean_env())
    wait_until(lambda: alive(bystander) or "joined" in bystander.log.read_text(), 30, interval=0.1,
               message="a bystander session with the controller's ticket")
    a.log_in()
    b.log_in()

    created = [a.post("/api/v1/nodes", {"name": f"node-{i:02d}"}, 201) for i in range(NODES)]
    assert {n["wamp_router"] for n in created} == {router_url}
    node_ids = sorted(n["id"] for n in created)
    nodes_file = tmp_path / "nodes.json"
    nodes_file.write_text(json.dumps([{"id": n["id"], "secret": n["secret"]} for n in created]))
    simulated = spawn("nodes", [sys.executable, "-m", "tests.simulated_node", "--nodes", str(nodes_file), router_url,
                                str(STEP)], clean_env(), separate_stderr=True)
    simulated.name = "the simulated nodes"

    def all_online(backend):
        alive(router, simulated, a.proc, b.proc)
        return sum(1 for n in backend.nodes() if n["online"]) == NODES
    wait_until(lambda: all_online(a) and all_online(b), 60, interval=0.1,
               message=f"all {NODES} nodes online as both backends see them")
    wait_until(lambda: f"joined {NODES}" in simulated.log.read_text().splitlines(), 30, interval=0.1,
               message="the simulated nodes to have published their state")

    a.post("/api/v1/store/chutes", {"name": "hello"}, 201)
    answer = a.http.post(a.url + "/api/v1/store/chutes/hello/versions", data=_project_tar(CHUTE),
                         headers={"Content-Type": "application/x-tar"}, timeout=30)
    assert answer.status_code == 201 and answer.json()["archive"] is True, answer.text
    deployment = a.post("/api/v1/deployments", {"chute": "hello", "version": "1", "nodes": node_ids}, 202)
    path = f"/api/v1/deployments/{deployment['id']}"

    def on_the_way():
        shown = a.get(path)
        return shown if any(shown["states"].get(s) for s in IN_FLIGHT) and not shown["finished"] else None
    at_kill = wait_until(on_the_way, 30, interval=0.05, message="some deliveries on their way, not all ended")

    killed, survivor = (a, b) if victim == "creator" else (b, a)
    stream = websocket.create_connection(survivor.url.replace("http", "ws", 1) + f"/ws/deployments/{deployment['id']}",
                                         header=[f"Authorization: {survivor.http.headers['Authorization']}"],
                                         timeout=TAKEOVER)
    os.killpg(killed.proc.pid, signal.SIGKILL)
    killed.proc.wait(10)
    killed_at = time.monotonic()

    # The survivor's websocket shows every node's end (through the relay, or from its own dispatch once it took
    # the dead backend's nodes over) and closes after the last end was written: a read then finds them all.
    seen = {}
    try:
        while True:
            opcode, frame = stream.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            for update in json.loads(frame):
                seen[update["node_id"]] = update["state"]
    except websocket.WebSocketTimeoutException:
        raise AssertionError(
            f"{TAKEOVER:.0f} s after backend {killed.name} was killed (deliveries then: {at_kill['states']}), "
            f"backend {survivor.name}'s websocket had shown {collections.Counter(seen.values())}, its API "
            f"{survivor.get(path)['states']}; nodes ran {len(_ran(simulated))} commands") from None
    takeover = time.monotonic() - killed_at
    shown = survivor.get(path)
    assert seen == {node_id: "succeeded" for node_id in node_ids}
    assert shown["states"] == {"succeeded": NODES} and shown["finished"]

    assert sorted(d["node_id"] for d in shown["deliveries"]) == node_ids
    assert all(d["state"] == "succeeded" and d["key"] == f"dep-{deployment['id']}-{d['node_id']}"
               for d in shown["deliveries"]), shown["deliveries"]
    runs = collections.Counter(_ran(simulated))
    assert runs == {(node_id, f"dep-{deployment['id']}-{node_id}"): 1 for node_id in node_ids}

    def installed():
        alive(router, simulated, survivor.proc)
        nodes = survivor.nodes()
        return (sorted(n["id"] for n in nodes) == node_ids and all(n["online"] for n in nodes)
                and all(n["chutes"] == [{"name": "hello", "version": "1", "state": "running"}] for n in nodes))
    wait_until(installed, 15, interval=0.2, message="all nodes online with hello 1 running, through the survivor")
    print(f"killed {killed.name} with {at_kill['states']}; the survivor finished {takeover:.1f} s later; "
          f"{time.monotonic() - started:.1f} s in all")
