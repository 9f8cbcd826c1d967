"""`pdtools node` as a user runs it: a separate process talking HTTP to a real `pdserver node`."""
import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.fixture
def pdtools(node_process, tmp_path):
    """Run `python -m pdtools.main node ARGS` against the node, with HOME and the config dir in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PDTOOLS_NODE_TARGET=node_process.url)

    def run(*args, input=None):
        return subprocess.run([sys.executable, "-m", "pdtools.main", "node", *args], input=input, env=env,
                              cwd=str(REPO), capture_output=True, text=True, timeout=60)
    run.tokens = tmp_path / "config" / "pdtools" / "tokens.json"
    return run


def login(pdtools, password, username="paradrop"):
    return pdtools("login", "--username", username, "--password-stdin", input=password + "\n")


def assert_failed_cleanly(result):
    assert result.returncode == 1, result
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr


def test_login_then_info_and_list_changes_then_logout(pdtools, node_process):
    result = login(pdtools, node_process.admin_password)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"Logged in to {node_process.url} as paradrop (owner).\n"
    assert stat.S_IMODE(pdtools.tokens.stat().st_mode) == 0o600

    result = pdtools("--json", "info")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["software"]["pdserver_version"]
    assert info["hardware"]["cpu_count"] >= 1
    assert isinstance(info["features"], list)

    result = pdtools("info")
    assert result.returncode == 0, result.stderr
    assert "pdserver_version" in result.stdout

    result = pdtools("--json", "list-changes", "--limit", "10")
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    assert pdtools("list-changes").returncode == 0

    assert pdtools("logout").stdout == f"Logged out of {node_process.url}.\n"
    result = pdtools("info")
    assert_failed_cleanly(result)
    assert "hint: run 'pdtools node " in result.stderr


def test_a_wrong_password_exits_1_with_the_node_message_and_saves_no_token(pdtools):
    result = login(pdtools, "not-the-password")
    assert_failed_cleanly(result)
    assert "hint:" not in result.stderr
    assert not pdtools.tokens.exists()


def test_set_password_from_stdin_then_only_the_new_password_logs_in(pdtools, node_process):
    new_password = "a-new-password-for-the-cli"
    assert login(pdtools, node_process.admin_password).returncode == 0

    result = pdtools("set-password", "--stdin", input=f"{node_process.admin_password}\n{new_password}\n")
    assert result.returncode == 0, result.stderr
    assert "changed" in result.stdout

    assert_failed_cleanly(login(pdtools, node_process.admin_password))
    result = login(pdtools, new_password)
    assert result.returncode == 0, result.stderr
    assert pdtools("--json", "info").returncode == 0


def test_a_wrong_old_password_names_the_field(pdtools, node_process):
    assert login(pdtools, node_process.admin_password).returncode == 0
    result = pdtools("set-password", "--stdin", input="not-the-password\nanother-new-password\n")
    assert_failed_cleanly(result)
    assert "(field: old_password)" in result.stderr
    assert "hint:" not in result.stderr


def test_watch_change_prints_the_progress_of_a_real_change_and_exits_by_its_result(pdtools, node_process):
    assert login(pdtools, node_process.admin_password).returncode == 0
    session = node_process.session()
    change_id = session.put(node_process.url + "/api/v1/config/hostconfig",
                            json={"telemetry": {"enabled": False}}).json()["change_id"]
    result = pdtools("watch-change", str(change_id))
    assert result.returncode == 0, result.stderr
    assert "write the new host configuration" in result.stdout
    assert f"change {change_id} succeeded" in result.stdout

    result = pdtools("--json", "watch-change", str(change_id))
    assert result.returncode == 0, result.stderr
    frames = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert frames[-1]["state"] == "succeeded"

    result = pdtools("watch-change", "424242")
    assert_failed_cleanly(result)
