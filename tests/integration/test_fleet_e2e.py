"""Many nodes, as the README's "Many nodes" section runs them: a real `pdserver controller` (embedded crossbar), two
real `pdserver node` daemons provisioned to it with pdtools, a chute version put in the store and deployed to both
with pdtools; then the controller and its router killed and restarted while a deployment waits for a node that is
away: the nodes come back online, their state resynchronises, and the waiting deployment runs once on its node.
A chute's container dying behind its node's back (a crash Docker restarts, a `docker kill` it does not) shows in the
controller's view of the node, and so does its return."""
import json
import os
import signal
import subprocess
import sys
import threading

import psutil
import pytest
import requests
import websocket
import yaml

from tests.conftest import REPO, NodeProcess, _finish, free_port, wait_until

pytestmark = pytest.mark.docker

ADMIN_PASSWORD = "fleet-admin-password"
ALICE_PASSWORD = "alice-password-123"


class ControllerProcess:
    """`pdserver controller` as a child process on fixed ports, so that it can be killed and started again."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.port, self.wamp_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.output = state_dir.parent / "controller-output.log"
        self.proc = None

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
        env.update(PARADROP_CONTROLLER_ADMIN_PASSWORD=ADMIN_PASSWORD)
        if os.environ.get("PARADROP_CROSSBAR"):
            env["PARADROP_CROSSBAR"] = os.environ["PARADROP_CROSSBAR"]
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pdserver.main", "controller", "--state-dir", str(self.state_dir),
                 "--port", str(self.port), "--wamp-port", str(self.wamp_port), "--allow-registration"],
                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
        wait_until(self._healthy, 60, interval=0.1, message="the controller's API")
        return self

    def _healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"the controller exited with {self.proc.returncode}:\n{self.output.read_text()}")
        try:
            return requests.get(self.url + "/api/v1/health", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def kill(self):
        """kill -9 of the controller and of its router: nothing stops cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return
        family = [psutil.Process(self.proc.pid)] + psutil.Process(self.proc.pid).children(recursive=True)
        for process in family:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(family, timeout=10)

    def stop(self):
        if self.proc is None or self.proc.poll() is not None:
            return
        children = psutil.Process(self.proc.pid).children(recursive=True)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for child in children:
            if child.is_running():
                child.kill()


@pytest.fixture
def controller(tmp_path):
    process = ControllerProcess(tmp_path / "controller")
    try:
        yield process.start()
    finally:
        process.stop()


@pytest.fixture
def nodes(tmp_path):
    made = [NodeProcess(tmp_path / f"node{i}" / "state", {"PARADROP_CLOUD_RETRY_INITIAL": "0.2",
                                                          "PARADROP_CLOUD_RETRY_MAX": "1"}) for i in (1, 2)]
    for node in made:
        node.state_dir.parent.mkdir(parents=True)
    try:
        yield [node.start() for node in made]
    finally:
        for node in made:
            _finish(node)


@pytest.fixture
def node(tmp_path):
    made = NodeProcess(tmp_path / "node" / "state", {"PARADROP_CLOUD_RETRY_INITIAL": "0.2",
                                                     "PARADROP_CLOUD_RETRY_MAX": "1"})
    made.state_dir.parent.mkdir(parents=True)
    try:
        yield made.start()
    finally:
        _finish(made)


@pytest.fixture
def pdtools(tmp_path, controller):
    """`pdtools GROUP ARGS` as a person runs it, against the controller (and a node, with ``node=``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PARADROP_CONTROLLER_URL=controller.url)

    def run(*args, node=None, stdin=None, ok=True, cwd=None):
        extra = {"PARADROP_API_TOKEN": node.token(), "PDTOOLS_NODE_TARGET": node.url} if node else {}
        result = subprocess.run([sys.executable, "-m", "pdtools.main", *args], input=stdin, env={**env, **extra},
                                cwd=str(cwd or REPO), capture_output=True, text=True, timeout=240)
        assert "Traceback" not in result.stderr, result.stderr
        if ok:
            assert result.returncode == 0, f"pdtools {' '.join(args)}: {result.stdout}\n{result.stderr}"
        return result
    return run


def project(pdtools, directory, version, text):
    """`pdtools chute init hello` with its page and version set, and no host port (two nodes share one engine)."""
    pdtools("chute", "init", "hello", cwd=directory)
    root = directory / "hello"
    description = yaml.safe_load((root / "paradrop.yaml").read_text())
    description["version"] = version
    del description["services"]["main"]["requests"]
    (root / "paradrop.yaml").write_text(yaml.safe_dump(description))
    (root / "www" / "index.html").write_text(text)
    return root


def chute_page(node, engine):
    """What the node's chute hello serves, read from its container's own address."""
    session = node.session()
    record = session.get(node.url + "/api/v1/chutes/hello", timeout=10).json()
    assert record["state"] == "running", record
    node_id = (node.state_dir / "node-id").read_text().strip()
    containers = engine.containers.list(filters={"label": [f"org.paradrop.node={node_id}",
                                                           "org.paradrop.chute=hello"]})
    assert len(containers) == 1, containers
    address = next(iter(containers[0].attrs["NetworkSettings"]["Networks"].values()))["IPAddress"]
    return wait_until(lambda: _get(f"http://{address}:8000/"), 30, interval=0.2, message="the chute's page")


def _get(url):
    try:
        response = requests.get(url, timeout=2)
    except requests.ConnectionError:
        return None
    return response.text if response.status_code == 200 else None


def cloud_json(pdtools, *args):
    return json.loads(pdtools("cloud", "--json", *args).stdout)


def online(pdtools, node_ids):
    shown = {n["id"]: n for n in cloud_json(pdtools, "list-nodes")}
    return all(shown[i]["online"] for i in node_ids) and shown


def remote_changes(node, user="cloud:alice"):
    changes = node.session().get(node.url + "/api/v1/changes", params={"limit": 100}, timeout=10).json()
    return sorted((c for c in changes if c["user"] == user and c["target"] == "hello"), key=lambda c: c["id"])


def provision_all(pdtools, controller, nodes):
    """register, create-node per node and `pdtools node provision` on each: the README's first steps."""
    pdtools("cloud", "register", "--username", "alice", "--password-stdin", stdin=ALICE_PASSWORD + "\n")
    ids = []
    for i, node in enumerate(nodes):
        made = cloud_json(pdtools, "create-node", f"node{i}")
        pdtools("node", "provision", made["id"], "-", "--controller", controller.url, "--wamp", made["wamp_router"],
                node=node, stdin=made["secret"] + "\n")
        ids.append(made["id"])
    wait_until(lambda: online(pdtools, ids), 60, interval=0.2, message="both nodes online")
    return ids


def test_a_store_version_deployed_with_pdtools_runs_on_two_provisioned_nodes_and_the_controller_shows_it(
        controller, nodes, pdtools, tmp_path, engine):
    ids = provision_all(pdtools, controller, nodes)
    root = project(pdtools, tmp_path, 1, "hello from the store\n")
    pdtools("store", "create-chute", "hello", "--description", "a web page")
    pdtools("store", "create-version", str(root))
    result = pdtools("store", "install-chute", "hello", "1", "--node", ids[0], "--node", ids[1], "--follow")
    assert "succeeded" in result.stdout

    for node in nodes:
        assert chute_page(node, engine) == "hello from the store\n"
        assert [(c["type"], c["state"]) for c in remote_changes(node)] == [("install", "succeeded")]
    shown = wait_until(lambda: (lambda s: all(n["chutes"] == [{"name": "hello", "version": "1", "state": "running"}]
                                              for n in s.values()) and s)(online(pdtools, ids)),
                       30, interval=0.2, message="the controller showing hello running on both nodes")
    assert set(shown) >= set(ids)
    described = cloud_json(pdtools, "describe-node", ids[0])
    assert described["online"] and described["role"] == "owner"


def test_nodes_outlive_a_killed_controller_and_a_deployment_waiting_for_an_absent_node_runs_once_when_it_returns(
        controller, nodes, pdtools, tmp_path, engine):
    ids = provision_all(pdtools, controller, nodes)
    (tmp_path / "v1").mkdir()
    first = project(pdtools, tmp_path / "v1", 1, "version one\n")
    pdtools("store", "create-chute", "hello")
    pdtools("store", "create-version", str(first))
    pdtools("store", "install-chute", "hello", "1", "--node", ids[0], "--node", ids[1], "--follow")

    away = nodes[1]
    assert away.stop() == 0
    wait_until(lambda: not {n["id"]: n for n in cloud_json(pdtools, "list-nodes")}[ids[1]]["online"], 30,
               interval=0.2, message="node 2 offline")
    (tmp_path / "v2").mkdir()
    second = project(pdtools, tmp_path / "v2", 2, "version two\n")
    pdtools("store", "create-version", str(second))
    deployment = json.loads(pdtools("store", "--json", "install-chute", "hello", "2", "--node", ids[0],
                                    "--node", ids[1]).stdout)

    def delivery_states():
        shown = [d for d in json.loads(pdtools("store", "--json", "list-deployments").stdout)
                 if d["id"] == deployment["id"]]
        return shown[0]["states"]
    wait_until(lambda: delivery_states() == {"succeeded": 1, "pending": 1}, 120, interval=0.2,
               message="node 1 updated, node 2 waiting")

    controller.kill()
    assert nodes[0].healthy() and chute_page(nodes[0], engine) == "version two\n"  # the node goes on alone
    controller.start()
    wait_until(lambda: online(pdtools, ids[:1]), 60, interval=0.2, message="node 1 back online")
    away.start()
    wait_until(lambda: delivery_states() == {"succeeded": 2}, 180, interval=0.2,
               message="the waiting delivery done on node 2")

    for node in nodes:
        assert chute_page(node, engine) == "version two\n"
        assert [(c["type"], c["state"]) for c in remote_changes(node)] == [("install", "succeeded"),
                                                                          ("update", "succeeded")]
    wait_until(lambda: (lambda s: all(s[i]["chutes"] == [{"name": "hello", "version": "2", "state": "running"}]
                                      for i in ids) and s)(online(pdtools, ids)),
               30, interval=0.2, message="the controller's resynchronised view of both nodes")


class NodeStream:
    """The controller's /ws/nodes as a user's client reads it: every message, collected by a thread."""

    def __init__(self, controller, username, password):
        token = requests.post(controller.url + "/api/v1/auth/login", json={"username": username,
                                                                          "password": password}, timeout=10)
        self._ws = websocket.create_connection(controller.url.replace("http", "ws") + "/ws/nodes", timeout=60,
                                               header=[f"Authorization: Bearer {token.json()['token']}"])
        self.messages = []
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self):
        try:
            while True:
                self.messages.append(json.loads(self._ws.recv()))
        except (websocket.WebSocketException, OSError, ValueError):
            pass

    def chute_states(self, node_id, chute):
        """The chute's state in each message about the node since the list, in order."""
        return [next((c["state"] for c in m["node"]["chutes"] if c["name"] == chute), None) for m in self.messages
                if "node" in m and m["node"]["id"] == node_id]

    def close(self):
        self._ws.close()
        self._thread.join(10)


def hello_container(engine, node):
    node_id = (node.state_dir / "node-id").read_text().strip()
    [container] = engine.containers.list(all=True, filters={"label": [f"org.paradrop.node={node_id}",
                                                                      "org.paradrop.chute=hello"]})
    return container


def hello_state(pdtools, node_id):
    return {c["name"]: c["state"] for c in cloud_json(pdtools, "describe-node", node_id)["chutes"]}.get("hello")


def test_a_chute_dying_behind_its_node_s_back_and_coming_back_shows_on_the_controller(controller, node, pdtools,
                                                                                     tmp_path, engine):
    [node_id] = provision_all(pdtools, controller, [node])
    root = project(pdtools, tmp_path, 1, "still here\n")
    pdtools("store", "create-chute", "hello")
    pdtools("store", "create-version", str(root))
    pdtools("store", "install-chute", "hello", "1", "--node", node_id, "--follow")
    wait_until(lambda: hello_state(pdtools, node_id) == "running", 30, interval=0.2,
               message="the controller showing hello running")
    stream = NodeStream(controller, "alice", ALICE_PASSWORD)
    try:
        wait_until(lambda: stream.messages, 30, message="the node list")
        container = hello_container(engine, node)
        restarts = container.attrs["RestartCount"]
        os.kill(container.attrs["State"]["Pid"], signal.SIGKILL)  # a crash: Docker's restart policy brings it back
        wait_until(lambda: hello_container(engine, node).attrs["RestartCount"] > restarts, 30,
                   message="Docker restarting the chute's container")
        states = wait_until(lambda: (lambda s: s[-1:] == ["running"] and s)(stream.chute_states(node_id, "hello")),
                            30, message="the controller's view of the chute: running again")
        assert any(state in ("exited", "restarting") for state in states), states
        assert states[0] != "running" and hello_state(pdtools, node_id) == "running"
    finally:
        stream.close()

    hello_container(engine, node).kill()  # `docker kill`: Docker leaves it down
    wait_until(lambda: hello_state(pdtools, node_id) == "exited", 30, interval=0.2,
               message="the controller showing hello exited")
    alice = requests.post(controller.url + "/api/v1/auth/login", json={"username": "alice",
                                                                       "password": ALICE_PASSWORD}, timeout=10)
    response = requests.post(f"{controller.url}/api/v1/nodes/{node_id}/commands", timeout=10,
                             json={"type": "restart", "chute": "hello"},
                             headers={"Authorization": f"Bearer {alice.json()['token']}"})
    assert response.status_code == 202, response.text
    wait_until(lambda: hello_state(pdtools, node_id) == "running", 60, interval=0.2,
               message="the controller showing hello running after the node restarted it")
    assert chute_page(node, engine) == "still here\n"


def test_a_version_the_node_refuses_ends_its_delivery_failed_with_the_node_s_reason(controller, node, pdtools,
                                                                                      tmp_path):
    """A Wi-Fi chute sent to a node without a radio: the node refuses the command at once (409 locally), and the
    deployment ends there with the node's words instead of waiting for ever for a node that will never take it."""
    [node_id] = provision_all(pdtools, controller, [node])
    root = project(pdtools, tmp_path, 1, "no radio here\n")
    description = yaml.safe_load((root / "paradrop.yaml").read_text())
    description["services"]["main"]["interfaces"] = {"wlan0": {"type": "wifi-ap",
                                                               "wireless": {"ssid": "Hello", "key": "secret-psk"}}}
    (root / "paradrop.yaml").write_text(yaml.safe_dump(description))
    pdtools("store", "create-chute", "hello")
    pdtools("store", "create-version", str(root))
    result = pdtools("store", "install-chute", "hello", "1", "--node", node_id, "--follow", ok=False)
    assert result.returncode == 1, result
    assert "did not succeed on every node: 1 failed" in result.stderr, result.stderr
    assert "the node refused it" in result.stdout, result.stdout
    [deployment] = json.loads(pdtools("store", "list-deployments", "--json").stdout)
    final = pdtools("store", "watch-deployment", str(deployment["id"]), "--json", ok=False)
    assert final.returncode == 1, final
    [delivery] = json.loads(final.stdout.splitlines()[-1])["deliveries"]
    assert delivery["state"] == "failed" and delivery["message"].startswith("the node refused it: "), delivery
    assert "wlan0" in delivery["message"] and "radio" in delivery["message"], delivery
    assert remote_changes(node) == []
    assert node.session().get(node.url + "/api/v1/chutes/hello", timeout=10).status_code == 404
