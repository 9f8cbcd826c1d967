"""The node's cloud link against a real crossbar router, with a real autobahn session as the controller:
provisioning over the Edge API, the session (WAMP-CRA with a salted key), state and change reports, remote commands
(run once per key, permission of the cloud user's role), reconnection after the router dies, and the rule that an
unprovisioned node never imports autobahn."""
import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest
import pytest_twisted
import requests
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions
from twisted.internet import defer, threads

from pdserver.cloud import protocol
from tests.conftest import REPO, NodeProcess, _finish, wait_until
from tests.integration.chute_helpers import tar_bytes, unique, write_project
from tests.integration.cloud_router import ControllerClient, Crossbar, Gate, node_credentials, wait_for

pytestmark = pytest.mark.docker

NODES = 10  # node ids the module's router knows (each test takes its own)


@pytest.fixture(scope="module")
def router(tmp_path_factory):
    crossbar = Crossbar(tmp_path_factory.mktemp("router"), node_credentials(NODES))
    try:
        yield crossbar.start()
    finally:
        crossbar.remove()


@pytest.fixture(scope="module")
def controller(router):
    client = ControllerClient(router.url)
    pytest_twisted.blockon(client.start())
    yield client
    pytest_twisted.blockon(client.stop())


@pytest.fixture
def credentials(router):
    """A node id (and secret) of the router's that no other test of the module uses."""
    return router.take()


@pytest.fixture
def node(tmp_path):
    proc = NodeProcess(tmp_path / "state", {"PARADROP_CLOUD_RETRY_INITIAL": "0.2", "PARADROP_CLOUD_RETRY_MAX": "1"})
    try:
        yield proc.start()
    finally:
        _finish(proc)


def in_thread(f, *args, **kwargs):
    """Blocking HTTP to the node subprocess off the reactor thread (the controller's session lives there)."""
    return threads.deferToThread(f, *args, **kwargs)


def provision(node, body):
    return in_thread(node.session().post, node.url + "/api/v1/config/provision", json=body, timeout=10)


def link_status(node):
    return node.session().get(node.url + "/api/v1/config/provision", timeout=10).json()


def wait_connected(node, connected=True, timeout=30):
    """The link's status once its ``connected`` is as wanted."""
    return wait_for(lambda: (lambda status: status["connected"] == connected and status)(link_status(node)),
                    timeout=timeout, message=f"the link connected={connected}")


def light_chute(name, version=1):
    return {"name": name, "version": version, "description": "sent by the cloud",
            "services": {"main": {"type": "light", "image": "busybox",
                                  "command": ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"]}}}


@pytest_twisted.inlineCallbacks
def test_a_provisioned_node_joins_registers_its_procedures_and_publishes_its_state(node, router, controller,
                                                                                   credentials):
    node_id, secret = credentials
    answer = yield provision(node, {"node_id": node_id, "secret": secret, "controller": "http://127.0.0.1:9",
                                    "wamp_router": router.url})
    assert answer.status_code == 200, answer.text
    assert secret not in answer.text
    status = yield wait_connected(node)
    assert status["provisioned"] and status["routerId"] == node_id and status["wampRouter"] == router.url
    assert status["last_connected"] and status["last_error"] is None
    record = node.state_dir / "cloud.json"
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and json.loads(record.read_text())["secret"] == secret
    assert node.session().get(node.url + "/api/v1/config/pdid", timeout=10).json() == {"pdid": node_id}

    state = (yield wait_for(lambda: controller.of(node_id, protocol.STATE), message="a state message"))[-1]
    assert state["node_id"] == node_id and state["chutes"] == [] and state["version"]
    telemetry = yield wait_for(lambda: controller.of(node_id, protocol.TELEMETRY), message="telemetry")
    assert telemetry[0]["memory"]["total"] > 0 and telemetry[0]["interfaces"]
    answered = yield controller.call(node_id, protocol.GET_STATE)
    assert answered["node_id"] == node_id and answered["commands"] == []
    registered = yield controller.session.call("wamp.registration.list")
    uris = set()
    for registration_id in registered["exact"]:
        uris.add((yield controller.session.call("wamp.registration.get", registration_id))["uri"])
    assert uris >= {protocol.node_uri(node_id, p) for p in protocol.PROCEDURES}
    exit_code = yield in_thread(node.stop)
    assert exit_code == 0, node.output.read_text()[-3000:]


@pytest_twisted.inlineCallbacks
def test_a_remote_install_runs_once_per_key_and_its_progress_reaches_the_controller(node, router, controller,
                                                                                   credentials):
    node_id, secret = credentials
    yield provision(node, {"routerId": node_id, "apitoken": secret, "wampRouter": router.url})
    yield wait_connected(node)
    name, key = unique("cloud"), unique("dep")
    first, second = yield defer.gatherResults([
        controller.call(node_id, protocol.INSTALL_CHUTE, key=key, user="alice", role="admin",
                        config=light_chute(name)),
        controller.call(node_id, protocol.INSTALL_CHUTE, key=key, user="alice", role="admin",
                        config=light_chute(name))])
    assert first["change_id"] == second["change_id"]
    assert sorted([first["duplicate"], second["duplicate"]]) == [False, True]
    change_id = first["change_id"]

    def events():
        return [e for e in controller.of(node_id, protocol.CHANGE) if e["change_id"] == change_id]
    final = yield wait_for(lambda: [e for e in events() if e["state"] in protocol.FINISHED_STATES], timeout=120,
                           message="the install's final change event")
    assert final[0]["state"] == "succeeded", events()
    seen = [e["state"] for e in events()]
    assert set(seen[:-1]) <= {"running"} and all(e["key"] == key for e in events())
    assert any("starting service main" in e["message"] for e in events())
    state = yield wait_for(lambda: [s for s in controller.of(node_id, protocol.STATE) if s["chutes"]],
                           message="a state message with the chute")
    assert state[-1]["chutes"] == [{"name": name, "version": "1", "state": "running"}]
    assert {"key": key, "change_id": change_id, "state": "succeeded"} in state[-1]["commands"]

    again = yield controller.call(node_id, protocol.INSTALL_CHUTE, key=key, user="alice", role="admin",
                                  config=light_chute(name))
    assert again == {"change_id": change_id, "duplicate": True}
    yield in_thread(node.stop)
    yield in_thread(node.start)
    yield wait_connected(node)
    after_restart = yield controller.call(node_id, protocol.INSTALL_CHUTE, key=key, user="alice", role="admin",
                                          config=light_chute(name))
    assert after_restart == {"change_id": change_id, "duplicate": True}
    session = node.session()
    installs = [c for c in session.get(node.url + "/api/v1/changes?limit=100").json() if c["type"] == "install"]
    assert [c["id"] for c in installs] == [change_id] and installs[0]["user"] == "cloud:alice"
    audit = session.get(node.url + "/api/v1/audit?actor=cloud:alice").json()
    assert {(a["action"], a["result"]) for a in audit} >= {("cloud:install_chute", "queued"),
                                                          ("change:install", "succeeded")}

    updated = yield controller.call(node_id, protocol.UPDATE_CHUTE, key=unique("up"), user="alice", role="admin",
                                    config=light_chute(name, 2))
    yield wait_for(lambda: [s for s in controller.of(node_id, protocol.STATE)
                            if {"name": name, "version": "2", "state": "running"} in s["chutes"]
                            and {"key": key, "change_id": change_id, "state": "succeeded"} in s["commands"]],
                   timeout=60, message=f"the update (change {updated['change_id']}) in the state")
    removed = yield controller.call(node_id, protocol.REMOVE_CHUTE, key=unique("rm"), user="alice", role="owner",
                                    chute=name)
    yield wait_for(lambda: [e for e in controller.of(node_id, protocol.CHANGE)
                            if e["change_id"] == removed["change_id"] and e["state"] == "succeeded"],
                   timeout=60, message="the removal")


@pytest_twisted.inlineCallbacks
def test_a_progressive_install_is_one_call_answered_at_its_end_with_its_progress_and_the_node_s_chutes(
        node, router, controller, credentials):
    node_id, secret = credentials
    yield provision(node, {"routerId": node_id, "apitoken": secret, "wampRouter": router.url})
    yield wait_connected(node)
    name, key = unique("prog"), unique("dep")
    heard = []
    uri = protocol.node_uri(node_id, protocol.INSTALL_CHUTE)
    answer = yield controller.session.call(uri, key=key, user="alice", role="admin", config=light_chute(name),
                                           options=CallOptions(on_progress=heard.append))
    assert (answer["state"], answer["duplicate"], answer["version"]) == ("succeeded", False,
                                                                         controller.of(node_id, protocol.STATE)[-1][
                                                                             "version"])
    assert answer["chutes"] == [{"name": name, "version": "1", "state": "running"}]
    assert f"change {answer['change_id']} succeeded: installed {name} 1" in answer["message"]
    said = "\n".join([p["message"] for p in heard] + [answer["message"]])
    assert "starting service main" in said and all(p["key"] == key and p["state"] == "running" for p in heard)
    again = yield controller.session.call(uri, key=key, user="alice", role="admin", config=light_chute(name),
                                          options=CallOptions(on_progress=heard.append))
    assert (again["change_id"], again["duplicate"], again["state"]) == (answer["change_id"], True, "succeeded")
    plain = yield controller.call(node_id, protocol.STOP_CHUTE, key=unique("stop"), user="alice", role="admin",
                                  chute=name)  # a plain call: answered when queued, its end published
    assert set(plain) == {"change_id", "duplicate"}
    yield wait_for(lambda: [e for e in controller.of(node_id, protocol.CHANGE)
                            if e["change_id"] == plain["change_id"] and e["state"] == "succeeded"],
                   timeout=60, message="the plain call's change event")
    assert [e for e in controller.of(node_id, protocol.CHANGE) if e["change_id"] == answer["change_id"]] == []


class ArchiveServer:
    """A tiny HTTP server on the test reactor serving one archive to the bearer of one token."""

    def __init__(self, archive: bytes, token: str):
        from twisted.internet import reactor
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        class Archive(Resource):
            isLeaf = True

            def render_GET(self, request):
                if request.getHeader("authorization") != f"Bearer {token}":
                    request.setResponseCode(401)
                    return b"no"
                request.setHeader("content-type", "application/x-tar")
                return archive
        self._port = reactor.listenTCP(0, Site(Archive()), interface="127.0.0.1")
        self.url = f"http://127.0.0.1:{self._port.getHost().port}/archive"

    def stop(self):
        return self._port.stopListening()


@pytest_twisted.inlineCallbacks
def test_a_remote_install_from_an_archive_is_fetched_with_its_token_and_checked_against_its_sha256(
        node, router, controller, credentials, tmp_path):
    node_id, secret = credentials
    yield provision(node, {"node_id": node_id, "secret": secret, "wamp_router": router.url})
    yield wait_connected(node)
    name = unique("tar")
    archive = tar_bytes(write_project(tmp_path / "project", light_chute(name), {"www/index.html": "hello"}))
    server = ArchiveServer(archive, "archive-token")
    good = {"url": server.url, "token": "archive-token", "sha256": hashlib.sha256(archive).hexdigest()}
    try:
        for source, code, field in [({**good, "sha256": "0" * 64}, "bad_request", "source.sha256"),
                                    ({**good, "token": "wrong"}, "service_unavailable", "source.url")]:
            with pytest.raises(ApplicationError) as caught:
                yield controller.call(node_id, protocol.INSTALL_CHUTE, key=unique("k"), user="carol", role="owner",
                                      source=source)
            assert (caught.value.kwargs["code"], caught.value.kwargs["field"]) == (code, field)
        assert list((node.state_dir / "chutes" / "sources").iterdir()) == []
        answer = yield controller.call(node_id, protocol.INSTALL_CHUTE, key=unique("k"), user="carol", role="owner",
                                       source=good)
    finally:
        yield server.stop()
    final = yield wait_for(lambda: [e for e in controller.of(node_id, protocol.CHANGE)
                                    if e["change_id"] == answer["change_id"]
                                    and e["state"] in protocol.FINISHED_STATES], timeout=120,
                           message="the install's end")
    assert final[0]["state"] == "succeeded", final
    config = node.session().get(f"{node.url}/api/v1/chutes/{name}/config", timeout=10).json()
    assert config["name"] == name


@pytest_twisted.inlineCallbacks
def test_commands_a_role_may_not_give_or_the_node_cannot_take_are_refused_with_the_field(node, router, controller,
                                                                                          credentials):
    node_id, secret = credentials
    yield provision(node, {"node_id": node_id, "secret": secret, "wamp_router": router.url})
    yield wait_connected(node)
    refusals = [
        ({"role": "user", "config": light_chute(unique("no"))}, "forbidden", "role"),
        ({"role": "owner", "config": {"name": "x"}}, "invalid_chute", "config.version"),
        ({"role": "owner", "config": light_chute("bad\nname")}, "invalid_chute", "config.name"),
        ({"role": "king", "config": light_chute(unique("no"))}, "bad_request", "role"),
        ({"role": "owner", "source": {"url": "file:///etc/passwd", "sha256": "0" * 64}}, "bad_request",
         "source.url"),
    ]
    for arguments, code, field in refusals:
        with pytest.raises(ApplicationError) as caught:
            yield controller.call(node_id, protocol.INSTALL_CHUTE, key=unique("k"), user="bob", **arguments)
        assert caught.value.error == f"org.paradrop.error.{code}", arguments
        assert caught.value.kwargs["code"] == code and caught.value.kwargs["field"] == field, caught.value.kwargs
    with pytest.raises(ApplicationError) as caught:
        yield controller.call(node_id, protocol.STOP_CHUTE, key=unique("k"), user="bob", role="owner",
                              chute="absent")
    assert caught.value.kwargs["code"] == "not_found"
    changes = node.session().get(node.url + "/api/v1/changes?limit=100").json()
    assert [c for c in changes if (c["user"] or "").startswith("cloud:")] == []
    audit = node.session().get(node.url + "/api/v1/audit?actor=cloud:bob").json()
    assert [(a["action"], a["result"]) for a in audit] == [("cloud:install_chute", "forbidden")]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["killed", "stopped"])
@pytest_twisted.inlineCallbacks
def test_the_node_outlives_its_router_and_reconnects_and_republishes_its_state(node, router, controller,
                                                                               credentials, sig):
    node_id, secret = credentials
    gate = Gate(router.port).open()
    try:
        yield provision(node, {"node_id": node_id, "secret": secret, "wamp_router": gate.url()})
        yield wait_connected(node)
        yield in_thread(router.kill, sig)
        status = yield wait_connected(node, connected=False)
        assert status["last_error"]
        yield gate.close()
        health = yield in_thread(requests.get, node.url + "/api/v1/health", timeout=5)
        assert health.status_code == 200
        before = len(controller.of(node_id, protocol.STATE))
        yield in_thread(router.start)
        yield wait_for(lambda: controller.session, message="the test controller back")
        gate.open()
        yield wait_connected(node)
        yield wait_for(lambda: len(controller.of(node_id, protocol.STATE)) > before,
                       message="the state republished after the reconnection")
    finally:
        yield gate.close()


@pytest_twisted.inlineCallbacks
def test_a_wrong_secret_is_refused_and_the_node_keeps_serving(node, router, credentials):
    node_id, _ = credentials
    answer = yield provision(node, {"node_id": node_id, "secret": "not-the-secret", "wamp_router": router.url})
    assert answer.status_code == 200
    status = yield wait_for(lambda: (lambda s: s["last_error"] and s)(link_status(node)),
                            message="the refusal in the link's status")
    assert not status["connected"] and status["provisioned"]


@pytest.mark.parametrize("body, field", [
    ({"node_id": "NOT-HEX", "secret": "s", "wamp_router": "ws://127.0.0.1:1/ws"}, "node_id"),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "http://127.0.0.1:1/ws"}, "wamp_router"),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://127.0.0.1:1/ws\nX-Evil: 1"}, "wamp_router"),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://u:p@127.0.0.1:1/ws"}, "wamp_router"),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://127.0.0.1:99999/ws"}, "wamp_router"),
    ({"node_id": "ab" * 8, "secret": "s\u0000", "wamp_router": "ws://127.0.0.1:1/ws"}, "secret"),
    ({"node_id": "ab" * 8, "secret": "s", "pdserver": "javascript:alert(1)", "wamp_router": "ws://h/ws"},
     "controller"),
    ({"node_id": "ab" * 8, "routerId": "cd" * 8, "secret": "s", "wamp_router": "ws://h/ws"}, "routerId"),
    ({"node_id": "ab" * 8, "secret": "s"}, "wamp_router"),
    ({"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://h/ws", "extra": 1}, "extra"),
])
def test_a_bad_provision_request_is_refused_naming_the_field_and_nothing_is_stored(node, body, field):
    answer = node.session().post(node.url + "/api/v1/config/provision", json=body, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["field"] == field, answer.text
    assert not (node.state_dir / "cloud.json").exists()
    assert link_status(node)["provisioned"] is False


def test_a_user_below_admin_may_neither_provision_nor_read_the_provisioning(node):
    session = node.session()
    session.post(node.url + "/api/v1/users", json={"username": "ursula", "password": "ursula-password-1",
                                                     "role": "trusted"}, timeout=10).raise_for_status()
    theirs = node.session(node.token("ursula", "ursula-password-1"))
    answer = theirs.post(node.url + "/api/v1/config/provision",
                         json={"node_id": "ab" * 8, "secret": "s", "wamp_router": "ws://h/ws"}, timeout=10)
    assert answer.status_code == 403
    assert theirs.get(node.url + "/api/v1/config/provision", timeout=10).status_code == 403
    assert link_status(node)["provisioned"] is False


AUTOBAHN_PROBE = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from twisted.internet import defer, task
    from pdserver import settings
    from pdserver.cloud.provisioning import ProvisionRecord
    from pdserver.node import build_node

    @defer.inlineCallbacks
    def main(reactor):
        node = build_node(settings.load(None, environ={{}}, state_dir=Path(sys.argv[1]), port=0,
                                        admin_password="probe-password"), reactor)
        yield node.service.startService()
        before = sorted(m for m in sys.modules if m.split(".")[0] in ("autobahn", "txaio"))
        yield node.cloud.provision(ProvisionRecord("ab" * 8, "secret", None, "ws://127.0.0.1:{port}/ws"), "probe")
        after = "autobahn" in sys.modules
        yield node.service.stopService()
        print(json.dumps({{"before": before, "after": after}}))

    task.react(main)
""")


def test_an_unprovisioned_node_never_imports_autobahn(tmp_path):
    from tests.conftest import free_port
    probe = subprocess.run([sys.executable, "-c", AUTOBAHN_PROBE.format(port=free_port()), str(tmp_path / "state")],
                           capture_output=True, text=True, timeout=120, cwd=str(REPO),
                           env={**{k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")},
                                "PYTHONPATH": str(REPO)})
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])
    assert result == {"before": [], "after": True}


def test_pdtools_provisions_a_node_with_the_key_on_stdin_and_describes_its_link(node, router, credentials, tmp_path):
    node_id, secret = credentials
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), PARADROP_API_TOKEN=node.token(), PDTOOLS_NODE_TARGET=node.url)

    def pdtools(*args, stdin=None):
        result = subprocess.run([sys.executable, "-m", "pdtools.main", "node", *args], input=stdin, env=env,
                                cwd=str(REPO), capture_output=True, text=True, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    refused = pdtools("provision", node_id, "-", stdin=secret + "\n")
    assert refused.returncode == 2 and "--wamp" in refused.stderr
    done = pdtools("provision", node_id, "-", "--wamp", router.url, stdin=secret + "\n")
    assert done.returncode == 0, done.stderr
    assert node_id in done.stdout and secret not in done.stdout

    def described():
        result = pdtools("--json", "describe-provision")
        return result.returncode == 0 and json.loads(result.stdout)
    status = wait_until(lambda: (lambda s: s and s["connected"] and s)(described()), timeout=30,
                        message="describe-provision showing the link up")
    assert status["routerId"] == node_id and status["wampRouter"] == router.url
    bad = pdtools("provision", "XYZ", "-", "--wamp", router.url, stdin="s\n")
    assert bad.returncode == 1 and "node_id" in bad.stderr


def test_unprovisioning_forgets_the_controller_and_removes_the_record(node):
    session = node.session()
    body = {"node_id": "ef" * 8, "secret": "s3cret", "wamp_router": "ws://127.0.0.1:9/ws"}
    assert session.post(node.url + "/api/v1/config/provision", json=body, timeout=10).json()["provisioned"]
    answer = session.delete(node.url + "/api/v1/config/provision", timeout=10)
    assert answer.status_code == 200 and answer.json()["provisioned"] is False
    assert not (node.state_dir / "cloud.json").exists()
    actions = [a["action"] for a in session.get(node.url + "/api/v1/audit?limit=5", timeout=10).json()]
    assert actions[:2] == ["cloud:unprovision", "cloud:provision"]
