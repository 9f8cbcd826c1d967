"""A real node's log, as the person running it reads it: installing a light web chute (whose readiness check
makes HTTP client connections) and calling the API log no factory chatter at info level, and exactly one line when
each change starts and one when it ends, on stdout and in the JSON log; with ``log_level: warn`` stdout holds no
info line at all."""
import json
import re

from tests.conftest import free_port
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
