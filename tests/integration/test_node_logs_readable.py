"""A real node's log, as the person running it reads it: installing a light web chute (whose readiness check
makes HTTP client connections) and calling the API log no factory chatter at info level, and exactly one line when
each change starts and one when it ends, on stdout and in the JSON log; with ``log_level: warn`` stdout holds no
info line at all; nor does the controller's."""
import json
import os
import re
import signal
import subprocess
import sys

import psutil
import requests

from tests.conftest import REPO, free_port, wait_until
from tests.integration.chute_helpers import act, install, unique, web_chute, write_project


def exercise(node, tmp_path):
    """Install a light web chute, read it and the changes through the API, remove it; the changes' ids."""
    session = node.session()
    name = unique("readable")
    description, files = web_chute(name, 1, free_port(), "hello")
    assert install(session, node.url, write_project(tmp_path / "project", description, files))["state"] == "succeeded"
    for path in ("/api/v1/chutes", f"/api/v1/chutes/{name}", "/api/v1/changes", "/api/v1/info/software"):
        assert session.get(node.url + path, timeout=10).status_code == 200
    assert act(session, node.url, name, "delete")["state"] == "succeeded"
    return [change["id"] for change in session.get(node.url + "/api/v1/changes", timeout=10).json()]


def test_at_info_no_library_chatter_and_one_start_and_one_end_line_per_change(tmp_path, node_process_factory):
    node = node_process_factory().start()
    change_ids = exercise(node, tmp_path)
    assert node.stop() == 0
    stdout = node.output.read_text()
    for chatter in ("Starting factory", "Stopping factory", "_HTTP11ClientFactory", "(TCP Port"):
        assert chatter not in stdout, stdout
    json_lines = [json.loads(line) for line in (node.state_dir / "logs" / "pdserver.jsonl").read_text().splitlines()]
    json_texts = [line.get("log_format", "") + line.get("log_text", "") for line in json_lines]
    assert not any("Starting factory" in text or "Stopping factory" in text for text in json_texts)
    assert len(change_ids) >= 3  # reconcile at start, install, delete
    for change_id in change_ids:
        started = re.findall(rf"#info\] change {change_id} started: ", stdout)
        ended = re.findall(rf"#(?:info|warn)\] change {change_id} (?:succeeded|failed|cancelled|interrupted): .* in "
                           rf"[0-9.]+ s", stdout)
        assert len(started) == 1 and len(ended) == 1, stdout
        assert [line["id"] for line in json_lines if line.get("result") and line.get("id") == change_id] == [change_id]
    assert re.search(r"change \d+ succeeded: install readable-\w+ by paradrop in [0-9.]+ s", stdout)


def test_at_log_level_warn_stdout_has_no_info_line(tmp_path, node_process_factory):
    node = node_process_factory(PARADROP_LOG_LEVEL="warn").start()
    session = node.session()
    assert session.get(node.url + "/api/v1/changes", timeout=10).status_code == 200
    assert node.stop() == 0
    stdout = node.output.read_text()
    assert "#info]" not in stdout and "ParaDrop node ready" not in stdout, stdout
    json_levels = {json.loads(line)["log_level"]["name"]
                   for line in (node.state_dir / "logs" / "pdserver.jsonl").read_text().splitlines()}
    assert json_levels <= {"warn", "error", "critical"}


def test_the_controller_honours_log_level_too(tmp_path):
    """`pdserver controller` with PARADROP_LOG_LEVEL=warn: ready and serving, yet not one info line on stdout."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    env.update({"PARADROP_LOG_LEVEL": "warn", "PARADROP_CROSSBAR": os.environ.get("PARADROP_CROSSBAR", ""),
                "PARADROP_CONTROLLER_ADMIN_PASSWORD": "controller-admin-password"})
    output = tmp_path / "controller-output.log"
    with open(output, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "pdserver.main", "controller", "--state-dir",
                                    str(tmp_path / "controller"), "--port", str(port), "--wamp-port", str(free_port())],
                                   env=env, stdout=out, stderr=subprocess.STDOUT, cwd=str(REPO))
    try:
        children = []

        def healthy():
            if process.poll() is not None:
                raise AssertionError(f"the controller exited:\n{output.read_text()}")
            children[:] = psutil.Process(process.pid).children(recursive=True)
            try:
                return requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=1).ok
            except requests.ConnectionError:
                return False
        wait_until(healthy, timeout=60, message="the controller's API")
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for child in children:
            if child.is_running():
                child.kill()
    text = output.read_text()
    assert "#info]" not in text and "ParaDrop controller ready" not in text, text
    assert (tmp_path / "controller" / "log" / "pdserver.jsonl").exists()
