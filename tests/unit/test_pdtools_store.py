"""`pdtools store` against a stand-in of the controller's HTTP API: real HTTP, and a real websocket for the
deployment stream.

What is checked is what a user and the controller see: the requests sent (route, body, tar members), the progress
lines, the outcome per node, stdout, stderr and the exit code.
"""
import io
import json
import re
import tarfile
import time

import pytest
import yaml
from click.testing import CliRunner

from pdtools import config
from pdtools.cloud_client import ControllerClient
from pdtools.main import pdtools
from tests.unit.fake_controller import FAILING_NODE, T0, FakeController
from tests.unit.fake_node import serving

CONFIG = {"name": "hello", "version": 1, "services": {"main": {"type": "light", "image": "python3",
                                                                "command": "python3 app.py"}}}


@pytest.fixture
def controller():
    with serving(FakeController()) as server:
        yield server


@pytest.fixture
def cli(tmp_path, monkeypatch, controller):
    """`pdtools store --controller <stand-in> ARGS` logged in as admin."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv("PARADROP_CONTROLLER_URL", raising=False)
    config.save_token(controller.url, controller.token_for("admin"))
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(pdtools, ["store", "--controller", controller.url, *args], input=input,
                             catch_exceptions=False)
    return run


@pytest.fixture
def project(tmp_path):
    def make(name="hello", version=1):
        root = tmp_path / f"{name}-{version}"
        (root / "__pycache__").mkdir(parents=True)
        (root / "__pycache__" / "app.pyc").write_bytes(b"\0")
        (root / "paradrop.yaml").write_text(yaml.safe_dump({**CONFIG, "name": name, "version": version}))
        (root / "app.py").write_text("print('hi')\n")
        return root
    return make


def rows(stdout):
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line and not line.startswith("─")]


def tar_names(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return sorted(tar.getnames())


def clock(timestamp):
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


# -- chutes and versions


def test_a_chute_and_a_version_from_a_project_directory(cli, controller, project):
    assert cli("create-chute", "hello", "--description", "a page").stdout == "Created chute hello in the store.\n"
    result = cli("create-version", str(project()))
    assert (result.exit_code, result.stdout) == (0, "Created version 1 of hello in the store.\n")
    [upload] = controller.requests_to("POST", "/api/v1/store/chutes/hello/versions")
    assert upload.content_type == "application/x-tar"
    assert tar_names(upload.body) == ["app.py", "paradrop.yaml"]
    assert rows(cli("list-chutes").stdout) == [["name", "owner", "versions", "description"],
                                               ["hello", "admin", "1", "a page"]]
    human = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))
    assert rows(cli("list-versions", "hello").stdout) == [
        ["version", "created", "by", "size", "sha256"], ["1", human, "admin", str(len(upload.body)), "ab" * 6]]


def test_description_only_sends_paradrop_yaml_as_json(cli, controller, project):
    cli("create-chute", "hello")
    result = cli("--json", "create-version", "--description-only", str(project(version=3)))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == "3"
    [upload] = controller.requests_to("POST", "/api/v1/store/chutes/hello/versions")
    assert (upload.content_type, upload.body) == ("application/json", {"config": {**CONFIG, "version": 3}})


def test_a_version_of_a_chute_not_in_the_store_says_to_create_it(cli, project):
    result = cli("create-version", str(project()))
    assert result.exit_code == 1
    assert result.stderr == ("error: no chute hello in the store (field: chute)\n"
                             "hint: create the chute first: 'pdtools store create-chute hello'\n")


def test_a_version_that_exists_is_the_controller_conflict(cli, project):
    cli("create-chute", "hello")
    directory = str(project())
    assert cli("create-version", directory).exit_code == 0
    result = cli("create-version", directory)
    assert (result.exit_code, result.stderr) == (1, "error: version 1 of hello exists (field: version)\n")


def test_a_project_without_a_name_sends_nothing(cli, controller, tmp_path):
    (tmp_path / "paradrop.yaml").write_text("version: 1\n")
    result = cli("create-version", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"error: paradrop.yaml in {tmp_path} names no chute (field: name)\n"
    assert controller.seen == []


def test_store_names_are_one_path_segment(cli, controller):
    result = cli("list-versions", "../../nodes")
    assert result.stderr == "error: no chute ../../nodes in the store (field: chute)\n"
    assert controller.seen[-1].segments == ["api", "v1", "store", "chutes", "../../nodes", "versions"]


# -- deployments


def test_install_chute_creates_a_deployment_and_shows_its_deliveries(cli, controller):
    a, b = controller.add_node("a"), controller.add_node("b")
    result = cli("install-chute", "hello", "1", "--node", a, "--node", b)
    assert result.exit_code == 0, result.output
    assert controller.requests_to("POST", "/api/v1/deployments")[0].body == {
        "chute": "hello", "version": "1", "nodes": [a, b]}
    lines = result.stdout.splitlines()
    assert lines[0] == "Deployment 1: hello 1 to 2 node(s)."
    assert rows("\n".join(lines[1:-1])) == [["node", "state", "change", "message"], [a, "pending", "-", "-"],
                                            [b, "pending", "-", "-"]]
    assert lines[-1] == "Follow it with 'pdtools store watch-deployment 1'."
    assert not [seen for seen in controller.seen if seen.path.startswith("/ws/")]


def test_install_chute_on_a_group_sends_the_group(cli, controller):
    controller.groups["outdoor"] = {controller.add_node("a")}
    result = cli("--json", "install-chute", "hello", "1", "--group", "outdoor")
    assert result.exit_code == 0, result.output
    assert controller.requests_to("POST", "/api/v1/deployments")[0].body == {
        "chute": "hello", "version": "1", "group": "outdoor"}
    assert [d["state"] for d in json.loads(result.stdout)["deliveries"]] == ["pending"]


@pytest.mark.parametrize("targets", [[], ["--node", "a", "--group", "g"]])
def test_install_chute_needs_nodes_or_a_group(cli, controller, targets):
    result = cli("install-chute", "hello", "1", *targets)
    assert result.exit_code == 2
    assert "--node ID (one or more) or a group with --group, not both" in result.stderr
    assert controller.seen == []


def progress_lines(node_ids, failing=(), forbidden=()):
    """The lines of a deployment's stream: each delivery's state at the start, then each pending one's steps."""
    lines = [f"{clock(T0)} {node_id} {'forbidden' if node_id in forbidden else 'pending'}"
             for node_id in [*node_ids, *forbidden]]
    for index, node_id in enumerate(node_ids):
        last = "failed: service main exited with code 3" if node_id in failing else "succeeded"
        lines += [f"{clock(T0 + 10 * index)} {node_id} sent", f"{clock(T0 + 10 * index + 1)} {node_id} running: "
                  "building image", f"{clock(T0 + 10 * index + 2)} {node_id} {last}"]
    return lines


def test_install_chute_follow_streams_each_node_and_exits_0_when_all_succeed(cli, controller):
    a, b = controller.add_node("a"), controller.add_node("b")
    result = cli("install-chute", "hello", "1", "--node", a, "--node", b, "--follow")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:9] == ["Deployment 1: hello 1 to 2 node(s).", *progress_lines([a, b])]
    assert rows("\n".join(lines[9:-1])) == [["node", "state", "change", "message"], [a, "succeeded", "1", "-"],
                                            [b, "succeeded", "2", "-"]]
    assert lines[-1] == "deployment 1 succeeded on 2 node(s)"
    assert controller.requests_to("GET", "/ws/deployments/1")


def test_watch_deployment_exits_1_naming_what_did_not_succeed(cli, controller):
    good, bad, foreign = controller.add_node("good"), controller.add_node(FAILING_NODE), \
        controller.add_node("other", owner="someone-else")
    cli("install-chute", "hello", "1", "--node", good, "--node", bad, "--node", foreign)
    result = cli("watch-deployment", "1")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[:9] == progress_lines([good, bad], failing=[bad], forbidden=[foreign])
    assert rows("\n".join(lines[9:])) == [
        ["node", "state", "change", "message"], [good, "succeeded", "1", "-"],
        [bad, "failed", "2", "service main exited with code 3"], [foreign, "forbidden", "-", "-"]]
    assert result.stderr == "error: deployment 1 did not succeed on every node: 1 failed, 1 forbidden, 1 succeeded\n"


def test_watch_deployment_json_prints_each_message_then_the_deployment(cli, controller):
    node_id = controller.add_node("a")
    cli("install-chute", "hello", "1", "--node", node_id)
    result = cli("watch-deployment", "1", "--json")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(m["node_id"], m["state"]) for m in lines[:4]] == [
        (node_id, "pending"), (node_id, "sent"), (node_id, "running"), (node_id, "succeeded")]
    assert lines[4]["id"] == "1" and lines[4]["deliveries"][0]["state"] == "succeeded"
    assert len(lines) == 5


def test_a_stream_that_breaks_off_is_followed_by_asking_for_the_deployment(cli, controller):
    node_id = controller.add_node("a")
    controller.drop_stream = True
    result = cli("install-chute", "hello", "1", "--node", node_id, "--follow")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1] == progress_lines([node_id])[0]
    assert result.stdout.splitlines()[-1] == "deployment 1 succeeded on 1 node(s)"
    assert "the stream broke off" in result.stderr and "following deployment 1 by polling" in result.stderr
    assert controller.requests_to("GET", "/api/v1/deployments/1")


def test_watching_an_unknown_deployment_is_the_controller_404(cli):
    result = cli("watch-deployment", "42")
    assert (result.exit_code, result.stderr) == (1, "error: no deployment 42 (field: deployment_id)\n")


def test_watching_without_a_token_says_how_to_log_in(cli, controller):
    config.forget_token(controller.url)
    result = cli("watch-deployment", "1")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: use a Bearer token from POST /api/v1/auth/login (field: Authorization)\n"
                                    "hint: run 'pdtools cloud --controller ")


def test_list_deployments_tallies_the_deliveries(cli, controller):
    a, b = controller.add_node("a"), controller.add_node(FAILING_NODE)
    cli("install-chute", "hello", "1", "--node", a, "--node", b, "--follow")
    human = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))
    assert rows(cli("list-deployments").stdout) == [
        ["id", "chute", "version", "user", "created", "nodes"], ["1", "hello", "1", "admin", human,
                                                                 "1 failed, 1 succeeded"]]


def test_the_client_library_logs_in_deploys_and_streams(controller):
    client = ControllerClient(controller.url.removeprefix("http://"))
    client.login("admin", "admin-password")
    assert client.identity == {"username": "admin", "admin": True, "expires": T0 + 3600}
    node_id = controller.add_node("a")
    with pytest.raises(ValueError):
        client.deploy("hello", 1, nodes=[node_id], group="g")
    deployment = client.deploy("hello", 1, nodes=[node_id])
    assert [m["state"] for m in client.stream_deployment(deployment["id"])] == ["pending", "sent", "running",
                                                                                 "succeeded"]
    assert client.get_deployment(deployment["id"])["states"] == {"succeeded": 1}
    client.close()
