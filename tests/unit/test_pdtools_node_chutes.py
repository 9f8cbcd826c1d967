"""`pdtools node ...-chute(s)` against a small fake node on a real socket (HTTP and websocket handshakes).

What is checked is what a user and the node see: the requests sent (route, content type, tar members, JSON body),
stdout, stderr and the exit code.
"""
import io
import json
import sys
import tarfile
import time
from collections import namedtuple
from urllib.parse import parse_qsl, urlsplit

import pytest
import yaml
from click.testing import CliRunner

from pdtools import config
from pdtools.main import pdtools
from tests.unit.fake_node import FakeServer, JsonHandler, serving

TOKEN = "good-token"
T0 = 1_700_000_000.0
CONFIG = {"name": "hello", "version": 2, "description": "a page",
          "services": {"main": {"type": "light", "image": "python3", "command": "python3 app.py"}}}
SUMMARY = {"name": "hello", "version": "2", "state": "running", "description": "a page", "services": ["main"],
           "installed": T0, "updated": T0 + 60, "web": {"service": "main", "port": 8000}}
DETAILS = {**SUMMARY, "environment": {"GREETING": "hi"}, "service_states": [
    {"name": "main", "type": "light", "container": "paradrop-hello-main-3", "status": "running", "running": True,
     "health": None, "restart_count": 0, "address": "172.18.0.2",
     "ports": [{"external": 18001, "internal": 8000, "protocol": "tcp"}]}]}
LOG_LINES = [{"service": "main", "message": "serving on 8000"}, {"service": "main", "message": "GET / 200\n"}]
STREAMS = {
    7: [{"time": T0, "message": "change 7 started"},
        {"time": T0 + 1, "message": "change 7 succeeded", "state": "succeeded", "result": {"message": "ok"}}],
    8: [{"time": T0, "message": "change 8 started"},
        {"time": T0 + 2, "message": "change 8 failed", "state": "failed",
         "result": {"message": "step 2 failed: service main exited with code 3; rolled back"}}],
}
LOG_FRAMES = [{"service": "main", "timestamp": T0, "message": "tick 1"},
              {"service": "web", "timestamp": T0 + 1, "message": "tick [bold]2[/bold]"}]

Seen = namedtuple("Seen", "method path query content_type body")


class FakeNode(FakeServer):


    def requests_to(self, method, path):
        return [seen for seen in self.seen if (seen.method, seen.path) == (method, path)]


class _Handler(JsonHandler):
    def _route(self, method):
        url = urlsplit(self.path)
        path, query = url.path.rstrip("/"), dict(parse_qsl(url.query))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append(Seen(method, path, query, self.headers.get("Content-Type"), body))
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            return self._error(401, "unauthorized", "missing or invalid token")
        parts = path.split("/")
        if path.startswith("/ws/changes/"):
            return self._stream(STREAMS[int(parts[3])])
        if path == "/ws/chute_logs/hello":
            return self._stream(LOG_FRAMES)
        if path == "/api/v1/chutes":
            if method == "GET":
                return self._json(200, [SUMMARY])
            name = _tar_description(body)["name"]
            return self._json(202, {"change_id": 8 if name == "broken" else 7})
        if len(parts) < 5:
            return self._error(404, "not_found", "no such resource", field="path")
        if parts[4] != "hello":
            return self._error(404, "not_found", f"no chute {parts[4]} is installed", field="chute")
        route = (method, "/".join(parts[5:]))
        if route == ("GET", ""):
            return self._json(200, DETAILS)
        if route == ("GET", "config"):
            return self._json(200, CONFIG)
        if route == ("GET", "logs"):
            return self._json(200, {"lines": LOG_LINES})
        if route in {("PUT", ""), ("DELETE", ""), ("POST", "start"), ("POST", "stop"), ("POST", "restart"),
                     ("PUT", "config")}:
            return self._json(202, {"change_id": 7})
        return self._error(404, "not_found", "no such resource", field="path")


FakeNode.handler = _Handler


def _tar_description(body):
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return yaml.safe_load(tar.extractfile("paradrop.yaml"))


def tar_names(body):
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        return sorted(tar.getnames())


@pytest.fixture
def fake_node():
    with serving(FakeNode()) as server:
        yield server


@pytest.fixture
def cli(tmp_path, monkeypatch, fake_node):
    """`pdtools node --target <fake> ARGS` with a saved token and no environment that would change it."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.delenv(config.TOKEN_ENV, raising=False)
    monkeypatch.delenv("PDTOOLS_NODE_TARGET", raising=False)
    config.save_token(fake_node.url, TOKEN)
    runner = CliRunner()

    def run(*args, input=None, env=None):
        return runner.invoke(pdtools, ["node", "--target", fake_node.url, *args], input=input, env=env,
                             catch_exceptions=False)
    return run


@pytest.fixture
def project(tmp_path):
    def make(name="hello", version=2):
        root = tmp_path / f"{name}-project"
        (root / ".git").mkdir(parents=True)
        (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
        (root / "paradrop.yaml").write_text(yaml.safe_dump({**CONFIG, "name": name, "version": version}))
        (root / "app.py").write_text("print('hi')\n")
        return root
    return make


def progress(change_id):
    return [f"{_clock(f['time'])} {f['message']}" for f in STREAMS[change_id]]


def _clock(timestamp):
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


# -- changes: install, update, remove, start/stop/restart


def test_install_uploads_a_tar_of_the_project_and_follows_the_change(cli, fake_node, project):
    result = cli("install-chute", str(project()))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [*progress(7), "change 7 succeeded", 'result: {"message": "ok"}']
    [upload] = fake_node.requests_to("POST", "/api/v1/chutes")
    assert upload.content_type == "application/x-tar"
    assert tar_names(upload.body) == ["app.py", "paradrop.yaml"]
    assert fake_node.requests_to("GET", "/ws/changes/7/stream")


def test_install_takes_the_current_directory_or_dash_d(cli, fake_node, project, monkeypatch):
    monkeypatch.chdir(project())
    assert cli("install-chute").exit_code == 0
    assert cli("install-chute", "-d", str(project("other"))).exit_code == 0
    first, second = fake_node.requests_to("POST", "/api/v1/chutes")
    assert (_tar_description(first.body)["name"], _tar_description(second.body)["name"]) == ("hello", "other")
    result = cli("install-chute", ".", "--directory", ".")
    assert result.exit_code == 2
    assert "either as DIR or with --directory" in result.stderr


def test_a_failed_change_exits_1_with_its_reason(cli, project):
    result = cli("install-chute", str(project("broken")))
    assert result.exit_code == 1
    assert result.stdout.splitlines()[:2] == progress(8)
    assert "change 8 failed" in result.stdout.splitlines()
    assert result.stderr == "error: change 8 failed: step 2 failed: service main exited with code 3; rolled back\n"


def test_no_wait_prints_the_change_id_and_opens_no_stream(cli, fake_node, project):
    result = cli("install-chute", "--no-wait", str(project()))
    assert (result.exit_code, result.stdout) == (0, "7\n")
    result = cli("--json", "stop-chute", "hello", "--no-wait")
    assert (result.exit_code, json.loads(result.stdout)) == (0, {"change_id": 7})
    assert not [seen for seen in fake_node.seen if seen.path.startswith("/ws/")]


def test_update_puts_the_project_to_the_chute_named_in_its_paradrop_yaml(cli, fake_node, project):
    result = cli("update-chute", str(project(version=3)))
    assert result.exit_code == 0, result.output
    [upload] = fake_node.requests_to("PUT", "/api/v1/chutes/hello")
    assert upload.content_type == "application/x-tar"
    assert _tar_description(upload.body)["version"] == 3


def test_update_needs_a_name_in_paradrop_yaml(cli, fake_node, tmp_path):
    (tmp_path / "paradrop.yaml").write_text("version: 2\n")
    result = cli("update-chute", str(tmp_path))
    assert result.exit_code == 1
    assert result.stderr == f"error: paradrop.yaml in {tmp_path} names no chute (field: name)\n"
    assert not fake_node.seen


@pytest.mark.parametrize("command, method, path", [
    ("remove-chute", "DELETE", "/api/v1/chutes/hello"),
    ("start-chute", "POST", "/api/v1/chutes/hello/start"),
    ("stop-chute", "POST", "/api/v1/chutes/hello/stop"),
    ("restart-chute", "POST", "/api/v1/chutes/hello/restart"),
])
def test_chute_actions_follow_their_change(cli, fake_node, command, method, path):
    result = cli(command, "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-2] == "change 7 succeeded"
    assert fake_node.requests_to(method, path)


def test_an_unknown_chute_is_the_node_message(cli):
    result = cli("stop-chute", "nope")
    assert result.exit_code == 1
    assert result.stderr == "error: no chute nope is installed (field: chute)\n"


def test_a_chute_name_stays_one_path_segment(cli, fake_node):
    assert cli("describe-chute", "../changes").exit_code == 1
    assert fake_node.seen[-1].path == "/api/v1/chutes/..%2Fchanges"


# -- reading chutes


def test_list_chutes_prints_a_table_or_json(cli):
    result = cli("list-chutes")
    assert result.exit_code == 0, result.output
    header, _, row = result.stdout.splitlines()
    assert header.split() == ["name", "version", "state", "services"]
    assert row.split() == ["hello", "2", "running", "main"]
    assert json.loads(cli("list-chutes", "--json").stdout) == [SUMMARY]
    assert json.loads(cli("--json", "list-chutes").stdout) == [SUMMARY]


def test_describe_chute_shows_summary_environment_and_services(cli):
    result = cli("describe-chute", "hello")
    assert result.exit_code == 0, result.output
    for text in ("Chute hello", "running", "a page", "service main, port 8000", "Environment", "GREETING",
                 "Services", "172.18.0.2", "18001->8000/tcp"):
        assert text in result.stdout
    assert json.loads(cli("describe-chute", "--json", "hello").stdout) == DETAILS


def test_chute_logs_prints_service_and_line_and_passes_tail(cli, fake_node):
    result = cli("chute-logs", "hello", "--tail", "5")
    assert result.exit_code == 0, result.output
    assert result.stdout == "[main] serving on 8000\n[main] GET / 200\n"
    assert fake_node.requests_to("GET", "/api/v1/chutes/hello/logs")[-1].query == {"tail": "5"}
    assert json.loads(cli("chute-logs", "hello", "--json").stdout) == LOG_LINES


def test_watch_chute_logs_prints_each_frame_until_the_node_closes_the_stream(cli):
    result = cli("watch-chute-logs", "hello")
    assert result.exit_code == 0, result.output
    assert result.stdout == "[main] tick 1\n[web] tick [bold]2[/bold]\n"
    result = cli("watch-chute-logs", "--timestamps", "hello")
    assert result.stdout.splitlines()[0] == f"{_clock(T0)} [main] tick 1"
    result = cli("watch-chute-logs", "--json", "hello")
    assert [json.loads(line) for line in result.stdout.splitlines()] == LOG_FRAMES


# -- editing the configuration


def put_config_bodies(fake_node):
    return [json.loads(seen.body) for seen in fake_node.requests_to("PUT", "/api/v1/chutes/hello/config")]


def test_edit_with_a_file_puts_the_new_description_and_follows_the_change(cli, fake_node, tmp_path):
    edited = {**CONFIG, "description": "a new page", "environment": {"GREETING": "hello"}}
    (tmp_path / "edited.yaml").write_text(yaml.safe_dump(edited))
    result = cli("edit-chute-configuration", "hello", "--file", str(tmp_path / "edited.yaml"))
    assert result.exit_code == 0, result.output
    assert put_config_bodies(fake_node) == [edited]
    assert result.stdout.splitlines()[:2] == progress(7)


def test_edit_with_a_file_from_stdin(cli, fake_node):
    result = cli("edit-chute-configuration", "hello", "--file", "-", "--no-wait",
                 input=yaml.safe_dump({**CONFIG, "version": 3}))
    assert (result.exit_code, result.stdout) == (0, "7\n")
    assert put_config_bodies(fake_node) == [{**CONFIG, "version": 3}]


def test_edit_with_an_unchanged_file_changes_nothing(cli, fake_node, tmp_path):
    (tmp_path / "same.yaml").write_text("# only a comment differs\n" + yaml.safe_dump(CONFIG))
    result = cli("edit-chute-configuration", "hello", "--file", str(tmp_path / "same.yaml"))
    assert (result.exit_code, result.stdout) == (0, "No change to the configuration of hello.\n")
    assert put_config_bodies(fake_node) == []


@pytest.mark.parametrize("edit, message", [
    ({"services": {"main": {"type": "light", "image": "python3"}}}, "error: services.main.command is required"),
    ({"name": "other"}, "error: the configuration is of chute other, not hello (field: name)"),
    ({"version": "not a version!"}, "error: version: 'not a version!' does not match '^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$'"),
])
def test_edit_with_a_file_the_node_would_refuse_sends_nothing(cli, fake_node, tmp_path, edit, message):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({**CONFIG, **edit}))
    result = cli("edit-chute-configuration", "hello", "--file", str(tmp_path / "bad.yaml"))
    assert result.exit_code == 1
    assert result.stderr.startswith(message)
    assert put_config_bodies(fake_node) == []


def editor(tmp_path, script):
    """An $EDITOR running `script` (Python) with `path` (the file to edit) and `text` (its content) defined."""
    program = tmp_path / "editor.py"
    program.write_text("import sys\npath = sys.argv[1]\ntext = open(path).read()\n" + script)
    return {"EDITOR": f"{sys.executable} {program}", "VISUAL": None}


def test_the_editor_gets_the_yaml_and_its_saved_change_is_applied(cli, fake_node, tmp_path):
    script = ("open(path + '.seen', 'w').write(text)\n"
              "open(path, 'w').write(text.replace('description: a page', 'description: edited'))\n"
              "open(sys.argv[0] + '.path', 'w').write(path)\n")
    result = cli("edit-chute-configuration", "hello", env=editor(tmp_path, script))
    assert result.exit_code == 0, result.output
    assert put_config_bodies(fake_node) == [{**CONFIG, "description": "edited"}]
    edited_path = (tmp_path / "editor.py.path").read_text()
    assert edited_path.endswith(".yaml")
    seen = open(edited_path + ".seen").read()
    assert seen.startswith("# The configuration of chute hello.")
    assert seen.index("name: hello") < seen.index("version: 2") < seen.index("services:")


def test_quitting_the_editor_without_saving_changes_nothing(cli, fake_node, tmp_path):
    result = cli("edit-chute-configuration", "hello", env=editor(tmp_path, "pass\n"))
    assert result.exit_code == 0, result.output
    assert result.stdout == "Nothing saved: the configuration of hello stays as it was.\n"
    assert put_config_bodies(fake_node) == []


def test_an_invalid_edit_can_be_edited_again(cli, fake_node, tmp_path):
    # First round: remove the command. Second round (the error is shown at the top): put a command back.
    script = ("if text.startswith('# error: '):\n"
              "    open(sys.argv[0] + '.error', 'w').write(text.splitlines()[0])\n"
              "    open(path, 'w').write(text.replace('  main:\\n', '  main:\\n    command: python3 new.py\\n'))\n"
              "else:\n"
              "    open(path, 'w').write(text.replace('command: python3 app.py', ''))\n")
    result = cli("edit-chute-configuration", "hello", input="y\n", env=editor(tmp_path, script))
    assert result.exit_code == 0, result.output
    assert "error: services.main.command is required" in result.stderr
    assert (tmp_path / "editor.py.error").read_text() == "# error: services.main.command is required " \
                                                         "(field: services.main.command)"
    [body] = put_config_bodies(fake_node)
    assert body["services"]["main"]["command"] == "python3 new.py"


def test_an_invalid_edit_not_edited_again_changes_nothing(cli, fake_node, tmp_path):
    script = "open(path, 'w').write('name: [\\n')\n"
    result = cli("edit-chute-configuration", "hello", input="n\n", env=editor(tmp_path, script))
    assert result.exit_code == 1
    assert "the edited configuration is not valid YAML" in result.stderr
    assert result.stderr.endswith("error: the configuration of hello was not changed\n")
    assert put_config_bodies(fake_node) == []
