"""`pdtools node` and NodeClient against a small fake node on a real socket.

The fake speaks the Edge API contract (canned JSON, bearer tokens, the change stream over a real websocket
handshake), so these tests check what a user sees: exit codes, stdout, stderr, and the token file.
"""
import json
import os
import re
import socket
import stat
import time
from collections import namedtuple
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner

from pdtools import config
from pdtools.client import NodeClient, websocket_url
from pdtools.errors import ApiError, ConnectionFailed
from pdtools.main import pdtools
from tests.unit.fake_node import FakeServer, JsonHandler, serving

TOKEN = "good-token"
PASSWORD = "right-password"
T0 = 1_700_000_000.0

HARDWARE = {"cpu_count": 4, "memory_total": 8589934592}
SOFTWARE = {"pdserver_version": "0.1.0", "python_version": "3.11.7", "os": "Linux"}
FEATURES = ["docker", "hostapd", "[bold]markup-free[/bold]"]


def change(change_id, state, **extra):
    summary = {
        "id": change_id, "type": "install", "target": "hello-web", "user": "paradrop", "state": state,
        "created": T0 + change_id, "started": None, "finished": None, "result": None,
    }
    return {**summary, **extra}


CHANGES = [change(2, "running"), change(1, "succeeded", type="update-hostconfig", target=None)]
STREAMS = {
    7: [
        {"time": T0, "message": "building image"},
        {"time": T0 + 1, "message": "starting service main"},
        {"time": T0 + 2, "message": "done", "state": "succeeded", "result": None},
    ],
    8: [
        {"time": T0, "message": "building image"},
        {"time": T0 + 3, "message": "build failed", "state": "failed", "result": {"error": "no Dockerfile"}},
    ],
    9: [{"time": T0, "message": "a ParaDrop node sends no final frame"}],  # outcome via GET /changes/9
    10: [{"time": T0, "message": "the node dies after this"}],
}
BROKEN_STREAM = 10  # ends with the TCP connection dropped, no websocket close; the change itself succeeds


Seen = namedtuple("Seen", "method path query body authorization")


class FakeNode(FakeServer):
    """Serves canned Edge API answers and records every request it saw."""



    def last(self, path):
        return [seen for seen in self.seen if seen.path == path][-1]


class _Handler(JsonHandler):
    def _route(self, method):
        url = urlsplit(self.path)
        path, query = url.path, dict(parse_qsl(url.query))
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.server.seen.append(Seen(method, path, query, body, self.headers.get("Authorization")))

        if (method, path) == ("POST", "/api/v1/auth/local"):
            if body["username"] == "throttled":
                return self._error(429, "too_many_requests", "too many failed logins; retry in 30 s",
                                   headers={"Retry-After": "30"})
            if (body["username"], body["password"]) != ("paradrop", PASSWORD):
                return self._error(401, "bad_credentials", "invalid username or password")
            return self._json(200, {"token": TOKEN, "username": "paradrop", "role": "owner", "expires_at": T0})
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "unauthorized", "missing or invalid token")
        if path.startswith("/ws/changes/"):
            change_id = int(path.split("/")[3])
            return self._stream(STREAMS[change_id], clean_close=change_id != BROKEN_STREAM)
        if path.startswith("/api/v1/info/"):
            answers = {"hardware": HARDWARE, "software": SOFTWARE, "features": {"features": FEATURES}}
            return self._json(200, answers[path.rsplit("/", 1)[1]])
        if path == "/api/v1/changes":
            return self._json(200, CHANGES)
        if path == "/api/v1/changes/9":
            return self._json(200, {**change(9, "succeeded"), "messages": STREAMS[9]})
        if path == f"/api/v1/changes/{BROKEN_STREAM}":
            return self._json(200, change(BROKEN_STREAM, "succeeded"))
        if path == "/api/v1/password/change":
            if body["old_password"] != PASSWORD:
                return self._error(401, "unauthorized", "old_password is wrong", field="old_password")
            return self._json(200, {"message": f"password of {body['username']} changed"})
        return self._error(404, "not_found", f"no route {path}")


FakeNode.handler = _Handler


@pytest.fixture
def fake_node():
    with serving(FakeNode()) as server:
        yield server


@pytest.fixture
def config_home(tmp_path, monkeypatch):
    """A private config dir and none of the environment that would change which node or token is used."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    monkeypatch.delenv("PDTOOLS_NODE_TARGET", raising=False)


@pytest.fixture
def cli(config_home, fake_node):
    """Run `pdtools node --target <fake> ARGS`; returns click's Result (an unexpected exception fails the test)."""
    runner = CliRunner()

    def run(*args, input=None):
        return runner.invoke(pdtools, ["node", "--target", fake_node.url, *args], input=input, catch_exceptions=False)

    return run


@pytest.fixture
def logged_in(fake_node, config_home):
    config.save_token(fake_node.url, TOKEN)


# -- login, logout, tokens


def test_login_saves_the_token_readable_by_the_owner_only(cli, fake_node):
    result = cli("login", "--password-stdin", input=PASSWORD + "\n")

    assert result.exit_code == 0, result.output
    assert result.stdout == f"Logged in to {fake_node.url} as paradrop (owner).\n"
    assert fake_node.last("/api/v1/auth/local").body == {"username": "paradrop", "password": PASSWORD}
    assert config.saved_token(fake_node.url) == TOKEN
    assert stat.S_IMODE(os.stat(config.tokens_path()).st_mode) == 0o600


def test_login_prompts_for_the_password_without_echoing_it(cli):
    result = cli("login", input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert "Password: " in result.output
    assert PASSWORD not in result.output


def test_a_wrong_password_fails_with_the_server_message_and_saves_nothing(cli, fake_node):
    result = cli("login", "--password-stdin", input="wrong\n")
    assert result.exit_code == 1
    assert result.stderr == "error: invalid username or password\n"
    assert config.saved_token(fake_node.url) is None


def test_a_throttled_login_fails_with_the_node_message(cli):
    result = cli("login", "--username", "throttled", "--password-stdin", input="x\n")
    assert result.exit_code == 1
    assert result.stderr == "error: too many failed logins; retry in 30 s\n"


def test_without_a_token_a_401_says_to_log_in(cli, fake_node):
    result = cli("info")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: missing or invalid token\n"
        f"hint: run 'pdtools node --target {fake_node.url} login' to get a token for {fake_node.url}\n"
    )


def test_logout_forgets_the_token(cli, fake_node, logged_in):
    assert cli("logout").stdout == f"Logged out of {fake_node.url}.\n"
    assert config.saved_token(fake_node.url) is None
    assert cli("info").exit_code == 1
    assert cli("logout").stdout == f"Not logged in to {fake_node.url}.\n"


def test_paradrop_api_token_overrides_the_saved_token(cli, fake_node, monkeypatch):
    config.save_token(fake_node.url, "stale-token")
    monkeypatch.setenv(config.TOKEN_ENV, TOKEN)
    assert cli("info").exit_code == 0
    assert fake_node.last("/api/v1/info/hardware").authorization == f"Bearer {TOKEN}"

    config.save_token(fake_node.url, TOKEN)
    monkeypatch.setenv(config.TOKEN_ENV, "refused-token")
    result = cli("info")
    assert result.exit_code == 1
    assert f"the token in {config.TOKEN_ENV} was refused" in result.stderr


def test_the_target_comes_from_the_environment_and_host_port_means_http(config_home, fake_node, monkeypatch):
    config.save_token(fake_node.url, TOKEN)
    monkeypatch.setenv("PDTOOLS_NODE_TARGET", fake_node.url.removeprefix("http://") + "/")
    result = CliRunner().invoke(pdtools, ["node", "--json", "info"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert fake_node.last("/api/v1/info/hardware").authorization == f"Bearer {TOKEN}"


def test_a_target_that_is_no_url_is_a_usage_error(config_home):
    result = CliRunner().invoke(pdtools, ["node", "--target", "ftp://node", "info"], catch_exceptions=False)
    assert result.exit_code == 2
    assert "unsupported scheme 'ftp'" in result.stderr


# -- reading the node


def test_info_json_is_one_object(cli, logged_in):
    result = cli("--json", "info")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"hardware": HARDWARE, "software": SOFTWARE, "features": FEATURES}


def test_info_prints_three_tables_with_server_text_as_written(cli, logged_in):
    result = cli("info")
    assert result.exit_code == 0, result.output
    for text in ("Hardware", "Software", "Features", "cpu_count", "pdserver_version", "hostapd", FEATURES[2]):
        assert text in result.stdout
    assert "\x1b[" not in result.stdout  # no colour when not a terminal


def human(timestamp):
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def test_list_changes_shows_a_table_with_human_times(cli, logged_in):
    result = cli("list-changes")
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if not line.startswith("─")]
    assert [re.split(r"\s{2,}", line.strip()) for line in lines] == [
        ["id", "type", "target", "user", "state", "created"],
        ["2", "install", "hello-web", "paradrop", "running", human(T0 + 2)],
        ["1", "update-hostconfig", "-", "paradrop", "succeeded", human(T0 + 1)],
    ]


def test_list_changes_json_is_the_raw_list_and_filters_go_to_the_node(cli, fake_node, logged_in):
    result = cli("--json", "list-changes", "--state", "running", "--limit", "5")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == CHANGES
    assert fake_node.last("/api/v1/changes").query == {"state": "running", "limit": "5"}


def test_an_unknown_state_is_a_usage_error(cli, fake_node, logged_in):
    result = cli("list-changes", "--state", "done")
    assert result.exit_code == 2
    assert not [seen for seen in fake_node.seen if seen.path == "/api/v1/changes"]


# -- following a change


def lines_for(frames):
    return [f"{time.strftime('%H:%M:%S', time.localtime(f['time']))} {f['message']}" for f in frames]


def test_watch_change_prints_progress_and_exits_0_on_success(cli, logged_in):
    result = cli("watch-change", "7")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [*lines_for(STREAMS[7]), "change 7 succeeded"]


def test_watch_change_exits_1_when_the_change_failed(cli, logged_in):
    result = cli("watch-change", "8")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        *lines_for(STREAMS[8]), "change 8 failed", 'result: {"error": "no Dockerfile"}',
    ]


def test_watch_change_asks_for_the_outcome_when_the_stream_has_no_final_frame(cli, logged_in):
    result = cli("watch-change", "9")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [*lines_for(STREAMS[9]), "change 9 succeeded"]


def test_watch_change_json_prints_one_message_per_line(cli, logged_in):
    result = cli("--json", "watch-change", "8")
    assert result.exit_code == 1
    assert [json.loads(line) for line in result.stdout.splitlines()] == STREAMS[8]


def test_a_stream_that_breaks_off_is_followed_by_asking_for_the_change(cli, fake_node, logged_in):
    result = cli("watch-change", str(BROKEN_STREAM))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [*lines_for(STREAMS[BROKEN_STREAM]), f"change {BROKEN_STREAM} succeeded"]
    url = fake_node.url.replace("http://", "ws://") + f"/ws/changes/{BROKEN_STREAM}/stream"
    assert result.stderr.startswith(f"note: cannot reach {url}: the stream broke off")
    assert "following change 10 by polling" in result.stderr


def test_watch_change_refused_at_the_handshake_says_to_log_in(cli):
    result = cli("watch-change", "7")
    assert result.exit_code == 1
    assert result.stderr.startswith("error: missing or invalid token\nhint: run ")


# -- passwords


def test_set_password_from_stdin(cli, fake_node, logged_in):
    result = cli("set-password", "--stdin", input=f"{PASSWORD}\nnew password \n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "password of paradrop changed\n"
    assert fake_node.last("/api/v1/password/change").body == {
        "username": "paradrop", "old_password": PASSWORD, "new_password": "new password ",
    }


def test_set_password_prompts_until_the_new_password_is_typed_the_same_twice(cli, fake_node, logged_in):
    result = cli("set-password", "--username", "alice", input=f"{PASSWORD}\nn3w\ntypo\nn3w\nn3w\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("New password: ") == 2
    assert "do not match" in result.output
    assert "n3w" not in result.output
    assert fake_node.last("/api/v1/password/change").body == {
        "username": "alice", "old_password": PASSWORD, "new_password": "n3w",
    }


def test_a_wrong_old_password_names_the_field_and_gives_no_login_hint(cli, logged_in):
    result = cli("set-password", "--stdin", input="wrong\nnew\n")
    assert result.exit_code == 1
    assert result.stderr == "error: old_password is wrong (field: old_password)\n"


def test_set_password_stdin_needs_two_lines(cli, logged_in):
    result = cli("set-password", "--stdin", input="only-one\n")
    assert result.exit_code == 2
    assert "expected 2 line(s) on stdin, got 1" in result.stderr


# -- the client library and its failures


def test_an_unreachable_node_is_a_clear_error_naming_the_url(config_home):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    result = CliRunner().invoke(pdtools, ["node", "--target", f"127.0.0.1:{port}", "info"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr == f"error: cannot reach http://127.0.0.1:{port}/api/v1/info/hardware: Connection refused\n"


def test_the_client_keeps_the_token_and_identity_from_login(fake_node):
    client = NodeClient(fake_node.url.removeprefix("http://"))
    assert client.login("paradrop", PASSWORD) == TOKEN
    assert client.identity == {"username": "paradrop", "role": "owner", "expires_at": T0}
    assert client.info("features") == {"features": FEATURES}
    assert list(client.stream_change(7)) == STREAMS[7]
    client.close()


def test_client_errors_carry_status_code_and_field(fake_node):
    client = NodeClient(fake_node.url, token=TOKEN)
    with pytest.raises(ApiError) as caught:
        client.get_change(404)
    assert (caught.value.status, caught.value.code) == (404, "not_found")
    with pytest.raises(ConnectionFailed, match="cannot reach http://127.0.0.1:1/api/v1/health"):
        NodeClient("127.0.0.1:1").health()


@pytest.mark.parametrize(
    "base, expected",
    [
        ("http://node:8080", "ws://node:8080/ws/x"),
        ("https://node/pd", "wss://node/pd/ws/x"),
        ("node:1", "ws://node:1/ws/x"),
    ],
)
def test_the_websocket_url_follows_the_http_scheme(base, expected):
    assert websocket_url(base, "/ws/x") == expected
