"""`pdtools cloud` against a stand-in of the controller's HTTP API on a real socket.

What is checked is what a user and the controller see: stdout, stderr, exit codes, the requests sent (route,
body, token) and the token file.
"""
import json
import os
import re
import socket
import stat
import time

import pytest
from click.testing import CliRunner

from pdtools import config
from pdtools.main import pdtools
from tests.unit.fake_controller import T0, WAMP, FakeController
from tests.unit.fake_node import serving


@pytest.fixture
def controller():
    with serving(FakeController()) as server:
        yield server


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A private config dir and none of the environment that would change which controller or token is used."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    monkeypatch.delenv("PARADROP_CONTROLLER_URL", raising=False)


@pytest.fixture
def cli(config_home, controller):
    """Run `pdtools cloud --controller <stand-in> ARGS`; returns click's Result."""
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(pdtools, ["cloud", "--controller", controller.url, *args], input=input,
                             catch_exceptions=False)
    return run


@pytest.fixture
def logged_in(controller, config_home):
    config.save_token(controller.url, controller.token_for("admin"))


def rows(stdout):
    """The cells of a printed table, one list per line (rules left out)."""
    return [re.split(r"\s{2,}", line.strip()) for line in stdout.splitlines() if line and not line.startswith("─")]


# -- the account


def test_register_opens_an_account_logs_in_and_keeps_the_token_private(cli, controller):
    result = cli("register", "--username", "alice", "--password-stdin", input="pw of alice\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Registered and logged in to {controller.url} as alice.\n"
    assert controller.users["alice"] == "pw of alice"
    assert controller.tokens[config.saved_token(controller.url)] == "alice"
    assert stat.S_IMODE(os.stat(config.tokens_path()).st_mode) == 0o600


def test_register_asks_for_the_name_and_the_password_twice(cli, controller):
    result = cli("register", input="bob\nsecret\ntypo\nsecret\nsecret\n")
    assert result.exit_code == 0, result.output
    assert "do not match" in result.output and "secret" not in result.output
    assert controller.users["bob"] == "secret"


def test_registration_closed_is_the_controller_message_and_saves_nothing(cli, controller):
    controller.registration = False
    result = cli("register", "--username", "alice", "--password-stdin", input="pw\n")
    assert (result.exit_code, result.stderr) == (1, "error: registration is closed on this controller\n")
    assert "alice" not in controller.users and config.saved_token(controller.url) is None


def test_login_saves_the_token_under_the_controller_url(cli, controller):
    result = cli("login", "--username", "admin", "--password-stdin", input="admin-password\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Logged in to {controller.url} as admin (controller admin).\n"
    assert controller.requests_to("POST", "/api/v1/auth/login")[0].body == {
        "username": "admin", "password": "admin-password"}
    assert controller.tokens[config.saved_token(controller.url)] == "admin"


def test_a_wrong_password_is_refused_without_a_login_hint(cli, controller):
    result = cli("login", "--username", "admin", "--password-stdin", input="wrong\n")
    assert (result.exit_code, result.stderr) == (1, "error: invalid username or password\n")
    assert config.saved_token(controller.url) is None


def test_without_a_token_a_401_says_how_to_log_in(cli, controller):
    result = cli("list-nodes")
    assert result.exit_code == 1
    assert result.stderr == ("error: use a Bearer token from POST /api/v1/auth/login (field: Authorization)\n"
                             f"hint: run 'pdtools cloud --controller {controller.url} login' to get a token for "
                             f"{controller.url}\n")


def test_a_revoked_token_says_how_to_log_in_again(cli, controller, logged_in):
    controller.tokens.clear()
    result = cli("group", "list")
    assert result.exit_code == 1
    assert result.stderr == ("error: token revoked (logged out) (field: token)\n"
                             f"hint: run 'pdtools cloud --controller {controller.url} login' to get a token for "
                             f"{controller.url}\n")


def test_a_node_token_is_never_sent_to_the_controller(cli, controller, monkeypatch):
    config.save_token("http://127.0.0.1:8080", "node-token")
    monkeypatch.setenv(config.TOKEN_ENV, "chute-token")
    assert cli("list-nodes").exit_code == 1
    assert [seen.authorization for seen in controller.seen] == [None]


def test_the_controller_comes_from_the_environment_and_host_port_means_http(config_home, controller, monkeypatch):
    config.save_token(controller.url, controller.token_for("admin"))
    monkeypatch.setenv("PARADROP_CONTROLLER_URL", controller.url.removeprefix("http://") + "/")
    result = CliRunner().invoke(pdtools, ["cloud", "--json", "list-nodes"], catch_exceptions=False)
    assert (result.exit_code, json.loads(result.stdout)) == (0, [])


def test_logout_revokes_the_token_on_the_controller_and_forgets_it(cli, controller, logged_in):
    token = config.saved_token(controller.url)
    assert cli("logout").stdout == f"Logged out of {controller.url}.\n"
    assert token not in controller.tokens
    assert config.saved_token(controller.url) is None
    assert cli("logout").stdout == f"Not logged in to {controller.url}.\n"


def test_logout_from_an_unreachable_controller_forgets_the_token_and_says_so(config_home):
    url = f"http://127.0.0.1:{free_port()}"
    config.save_token(url, "some-token")
    result = CliRunner().invoke(pdtools, ["cloud", "--controller", url, "logout"], catch_exceptions=False)
    assert result.exit_code == 0
    assert result.stderr == (f"note: cannot reach {url}/api/v1/auth/logout: Connection refused; "
                             "the token was forgotten here but not revoked\n")
    assert config.saved_token(url) is None


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again: nothing listens there


def test_an_unreachable_controller_is_an_error_naming_the_url(config_home):
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(pdtools, ["cloud", "--controller", url, "list-nodes"], catch_exceptions=False)
    assert (result.exit_code, result.stderr) == (1, f"error: cannot reach {url}/api/v1/nodes: Connection refused\n")


# -- nodes


def test_create_node_shows_the_secret_once_with_the_command_that_provisions_the_node(cli, controller, logged_in):
    result = cli("create-node", "kitchen")
    assert result.exit_code == 0, result.output
    [node_id] = controller.nodes
    secret = "s3cret-" + node_id
    assert ["secret", secret] in rows(result.stdout)
    assert result.stdout.splitlines()[-1] == (
        f"  pdtools node provision {node_id} {secret} "
        f"--controller {controller.url} --wamp {WAMP}")
    assert controller.requests_to("POST", "/api/v1/nodes")[0].body == {"name": "kitchen"}


def test_an_invalid_name_is_refused_naming_the_field(cli, logged_in):
    result = cli("create-node", "")
    assert (result.exit_code, result.stderr) == (1, "error: name: must not be empty\n")


def test_list_nodes_shows_status_version_chutes_and_role_of_your_nodes(cli, controller, logged_in):
    up = controller.add_node("roof", online=True, last_seen=T0, version="0.2.0",
                             chutes=[{"name": "hello", "version": "2", "state": "running"}])
    down = controller.add_node("cellar")
    controller.add_node("not-mine", owner="someone-else")
    result = cli("list-nodes")
    assert result.exit_code == 0, result.output
    assert rows(result.stdout) == [
        ["id", "name", "status", "version", "chutes", "role"],
        [up, "roof", "online", "0.2.0", "1", "owner"],
        [down, "cellar", "offline", "-", "0", "owner"],
    ]
    for args in (["--json", "list-nodes"], ["list-nodes", "--json"]):
        assert [node["id"] for node in json.loads(cli(*args).stdout)] == [up, down]


def test_list_nodes_without_nodes_says_so(cli, logged_in):
    assert cli("list-nodes").stdout == "No nodes.\n"


def test_describe_node_shows_its_summary_groups_and_chutes(cli, controller, logged_in):
    node_id = controller.add_node("roof", online=False, last_seen=T0, version="0.2.0",
                                  chutes=[{"name": "hello", "version": "2", "state": "running"}])
    controller.groups["outdoor"] = {node_id}
    result = cli("describe-node", node_id)
    assert result.exit_code == 0, result.output
    cells = rows(result.stdout)
    human = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(T0))
    for pair in (["id", node_id], ["name", "roof"], ["status", "offline"], ["last seen", human], ["role", "owner"],
                 ["groups", "outdoor"]):
        assert pair in cells
    assert cells[-2:] == [["chute", "version", "state"], ["hello", "2", "running"]]


def test_a_node_id_is_one_path_segment_whatever_it_holds(cli, controller, logged_in):
    result = cli("describe-node", "../auth/me?x=1")
    assert (result.exit_code, result.stderr) == (1, "error: no node ../auth/me?x=1 (field: node_id)\n")
    [seen] = controller.requests_to("GET", "/api/v1/nodes/..%2Fauth%2Fme%3Fx%3D1")
    assert seen.segments == ["api", "v1", "nodes", "../auth/me?x=1"]


def test_rename_and_delete_a_node(cli, controller, logged_in):
    node_id = controller.add_node("roof")
    assert cli("rename-node", node_id, "attic").stdout == f"Node {node_id} is now named attic.\n"
    assert controller.requests_to("PATCH", f"/api/v1/nodes/{node_id}")[0].body == {"name": "attic"}
    assert controller.nodes[node_id]["name"] == "attic"
    result = cli("delete-node", node_id)
    assert (result.exit_code, result.stdout) == (0, f"Deleted node {node_id}.\n")
    assert controller.nodes == {}
    assert cli("delete-node", node_id).stderr == f"error: no node {node_id} (field: node_id)\n"


def test_claim_node_makes_you_its_owner(cli, controller, logged_in):
    node_id = controller.add_node("field", owner=None, claim_token="claim-123")
    result = cli("claim-node", "claim-123")
    assert (result.exit_code, result.stdout) == (0, f"Claimed node {node_id} (field).\n")
    assert controller.nodes[node_id]["owner"] == "admin"
    assert cli("claim-node", "claim-123").stderr == "error: no node has this claim token (field: claim_token)\n"


def test_provision_key_sends_the_limits_and_prints_the_key_alone_on_stdout(cli, controller, logged_in):
    result = cli("provision-key", "--name", "batch 1", "--max-nodes", "50", "--ttl", "12h")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"pk-[0-9a-f]{16}\n", result.stdout)
    assert "shown only this once" in result.stderr
    assert controller.requests_to("POST", "/api/v1/provision-keys")[0].body == {
        "name": "batch 1", "max_nodes": 50, "ttl": 43200}


@pytest.mark.parametrize("ttl", ["0", "-5", "1w", "12 hours", ""])
def test_a_bad_ttl_is_a_usage_error_and_sends_nothing(cli, controller, logged_in, ttl):
    result = cli("provision-key", "--name", "k", "--ttl", ttl)
    assert result.exit_code == 2
    assert "is not a duration" in result.stderr
    assert controller.seen == []


# -- groups


def test_groups_are_created_filled_listed_emptied_and_deleted(cli, controller, logged_in):
    a, b = controller.add_node("a"), controller.add_node("b")
    assert cli("group", "create", "outdoor").stdout == "Created group outdoor.\n"
    assert cli("group", "add-node", "outdoor", a).stdout == f"Added node {a} to group outdoor.\n"
    assert cli("group", "add-node", "outdoor", b).exit_code == 0
    assert controller.requests_to("PUT", f"/api/v1/groups/outdoor/nodes/{a}")
    assert rows(cli("group", "list").stdout) == [["group", "nodes"], ["outdoor", ", ".join(sorted([a, b]))]]
    assert cli("group", "remove-node", "outdoor", a).stdout == f"Removed node {a} from group outdoor.\n"
    assert json.loads(cli("--json", "group", "list").stdout) == [{"name": "outdoor", "nodes": [b]}]
    assert cli("group", "delete", "outdoor").stdout == "Deleted group outdoor.\n"
    assert cli("group", "list").stdout == "No groups.\n"
    assert cli("group", "delete", "outdoor").stderr == "error: no group outdoor (field: group)\n"
