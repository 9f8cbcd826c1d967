"""The daemon as a process: first start, restarts, clean stops and kill -9 in the middle of a change."""
import json
import os
import signal
import stat
import subprocess
import sys

import requests

from tests.conftest import REPO, free_port, wait_until


def wait_change(session, url, change_id, states=("succeeded", "failed", "interrupted", "cancelled")):
    def finished():
        change = session.get(f"{url}/api/v1/changes/{change_id}", timeout=5).json()
        return change if change["state"] in states else None
    return wait_until(finished, message=f"change {change_id} to finish")


def test_first_start_without_a_password_generates_one_in_a_0600_file_and_never_logs_it(tmp_path):
    state = tmp_path / "state"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    proc = subprocess.Popen([sys.executable, "-m", "pdserver.main", "node", "--state-dir", str(state),
                             "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            cwd=str(REPO))
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _healthy(url), message="the node API")
        password_file = state / "initial-admin-password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "node-secret").stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 16
        r = requests.post(url + "/api/v1/auth/local", json={"username": "paradrop", "password": password})
        assert r.status_code == 200
        r = requests.post(url + "/api/v1/auth/local", json={"username": "paradrop", "password": ""})
        assert r.status_code == 400 and r.json()["error"]["field"] == "password"
    finally:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0
    text = output.decode()
    assert str(password_file) in text
    assert password not in text
    log_lines = (state / "logs" / "pdserver.jsonl").read_text().splitlines()
    assert log_lines and all(json.loads(line) for line in log_lines)
    assert password not in "".join(log_lines)


def _healthy(url):
    try:
        return requests.get(url + "/api/v1/health", timeout=1).ok
    except requests.ConnectionError:
        return False


def test_change_ids_keep_growing_across_restarts_and_sigterm_stops_cleanly(node_process):
    session = node_process.session()
    ids = []
    for n in range(3):
        r = session.put(node_process.url + "/api/v1/config/hostconfig", json={"telemetry": {"interval": 60 + n}})
        assert r.status_code == 202
        ids.append(r.json()["change_id"])
    wait_change(session, node_process.url, ids[-1])
    assert node_process.stop(signal.SIGTERM) == 0
    node_process.start()
    session = node_process.session()
    r = session.put(node_process.url + "/api/v1/config/hostconfig", json={"telemetry": {"interval": 99}})
    new_id = r.json()["change_id"]
    assert new_id > max(ids)
    assert wait_change(session, node_process.url, new_id)["state"] == "succeeded"
    assert session.get(node_process.url + "/api/v1/config/hostconfig").json()["telemetry"]["interval"] == 99


def test_kill_9_during_a_change_leaves_it_interrupted_and_rolled_back_after_restart(node_process_factory):
    node = node_process_factory(PARADROP_TEST_FAULTS="1", PARADROP_CRASH_AFTER_STEP="0")
    node.start()
    session = node.session()
    before = session.get(node.url + "/api/v1/config/hostconfig").json()
    try:
        session.put(node.url + "/api/v1/config/hostconfig", json={"wan": {"interface": "eth7", "proto": "dhcp"}})
    except requests.ConnectionError:
        pass  # the daemon may die before its 202 leaves the socket buffer
    assert node.wait_exit() == -signal.SIGKILL

    node.env_extra = {}
    node.start()
    session = node.session()
    change = next(c for c in session.get(f"{node.url}/api/v1/changes").json() if c["type"] == "hostconfig")
    change = session.get(f"{node.url}/api/v1/changes/{change['id']}").json()
    assert change["state"] == "interrupted"
    assert change["result"]["rolled_back_steps"] == 1
    assert not change["needs_attention"]
    messages = [m["message"] for m in change["messages"]]
    assert any("rolling back" in m for m in messages)
    assert session.get(node.url + "/api/v1/config/hostconfig").json() == before
    audit = session.get(node.url + "/api/v1/audit?action=change:hostconfig").json()
    assert audit[0]["result"] == "interrupted"


def test_crash_fault_setting_is_ignored_without_the_test_flag(node_process_factory):
    node = node_process_factory(PARADROP_CRASH_AFTER_STEP="0")
    node.start()
    session = node.session()
    r = session.put(node.url + "/api/v1/config/hostconfig", json={"wan": {"interface": "eth7", "proto": "dhcp"}})
    assert wait_change(session, node.url, r.json()["change_id"])["state"] == "succeeded"
    assert node.proc.poll() is None


def test_bad_settings_are_refused_with_a_clear_message(tmp_path):
    config = tmp_path / "settings.yaml"
    config.write_text("port: 8080\nfavourite_colour: blue\n")
    result = subprocess.run([sys.executable, "-m", "pdserver.main", "node", "--state-dir", str(tmp_path / "s"),
                             "--config", str(config)], capture_output=True, text=True, cwd=str(REPO), timeout=30)
    assert result.returncode == 2
    assert "favourite_colour" in result.stderr
    assert "Traceback" not in result.stderr
