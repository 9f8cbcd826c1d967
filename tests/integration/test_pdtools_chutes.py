"""A chute's life driven by `pdtools` as a user runs it: a separate process against a real `pdserver node`
and the real Docker engine (init -> validate -> install -> inspect -> stop/start -> update -> remove)."""
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time

import pytest
import requests

from tests.conftest import REPO, free_port, wait_until

pytestmark = pytest.mark.docker

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")


@pytest.fixture
def pdtools(node_process, tmp_path):
    """Run `python -m pdtools.main ARGS` (logged in to the node), with HOME and the config dir in tmp_path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "config"),
               PDTOOLS_NODE_TARGET=node_process.url, EDITOR="false")

    def command(*args):
        return [sys.executable, "-m", "pdtools.main", *args]

    def run(*args, input=None, timeout=120):
        return subprocess.run(command(*args), input=input, env=env, cwd=str(REPO), capture_output=True, text=True,
                              timeout=timeout)

    def popen(*args):
        return subprocess.Popen(command(*args), env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1)

    run.popen = popen
    login = run("node", "login", "--password-stdin", input=node_process.admin_password + "\n")
    assert login.returncode == 0, login.stderr
    return run


@pytest.fixture
def chute_names(node_process):
    """Unique chute names; whatever the test left installed is removed through the API at teardown."""
    names = []

    def make(prefix="pdt"):
        names.append(f"{prefix}-{secrets.token_hex(3)}")
        return names[-1]
    yield make
    session = node_process.session()
    api = node_process.url + "/api/v1"
    for name in names:
        answer = session.delete(f"{api}/chutes/{name}", timeout=10)
        if answer.status_code == 202:
            change = answer.json()["change_id"]
            wait_until(lambda: session.get(f"{api}/changes/{change}", timeout=10).json()["state"] in FINAL_STATES,
                       timeout=60, interval=0.2, message=f"the removal of {name}")


def api_chute(node_process, name):
    answer = node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}", timeout=10)
    return answer.json() if answer.status_code == 200 else None


def page(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except requests.ConnectionError:
        return None


def read_line(process, timeout=10):
    """The next line of a child's stdout, waiting at most `timeout` s for it to start."""
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    assert ready, f"no output within {timeout} s"
    return process.stdout.readline()


def logs_with(pdtools, name, text):
    """`chute-logs` output once it contains `text` (a container's output reaches the engine's log a bit later)."""
    def found():
        out = pdtools("node", "chute-logs", name, "--tail", "20").stdout
        return out if text in out else None
    return wait_until(found, timeout=10, interval=0.2, message=f"{text!r} in the chute's logs")


def succeeded(result):
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    return result


def test_a_chute_from_init_to_remove(pdtools, node_process, chute_names, tmp_path):
    name, port = chute_names(), free_port()
    project = tmp_path / "project"
    succeeded(pdtools("chute", "init", str(project), "--name", name, "--host-port", str(port)))
    assert f"chute {name} version 1 is valid" in succeeded(pdtools("chute", "validate", str(project))).stdout

    # install: progress is printed while the change runs, then its outcome
    install = pdtools.popen("node", "install-chute", str(project))
    first_line, first_at = install.stdout.readline(), time.monotonic()
    # Read on through the same buffered stream: communicate() reads the pipe itself and would skip what
    # readline() has buffered already (the lines after the first when they came in one chunk).
    stdout = first_line + install.stdout.read()
    ended_at = time.monotonic()
    stderr = install.stderr.read()
    install.wait(timeout=10)
    assert install.returncode == 0, stderr
    assert f"install {name}" in first_line
    assert ended_at - first_at > 0.3, "the progress came only at the end"
    assert "step 1/" in stdout and "building image" in stdout and "waiting for service main" in stdout
    assert stdout.splitlines()[-2].endswith(" succeeded")
    assert wait_until(lambda: f"Hello from chute {name}" in (page(port) or ""), timeout=10, message="the page")

    chutes = json.loads(succeeded(pdtools("node", "list-chutes", "--json")).stdout)
    [listed] = [chute for chute in chutes if chute["name"] == name]
    assert (listed["version"], listed["state"], listed["services"]) == ("1", "running", ["main"])
    table = succeeded(pdtools("node", "list-chutes")).stdout
    assert any(line.split()[:4] == [name, "1", "running", "main"] for line in table.splitlines())

    described = succeeded(pdtools("node", "describe-chute", name)).stdout
    assert f"Chute {name}" in described and f"{port}->8000/tcp" in described
    details = json.loads(succeeded(pdtools("node", "describe-chute", name, "--json")).stdout)
    assert [s["running"] for s in details["service_states"]] == [True]

    logs = logs_with(pdtools, name, '"GET / HTTP/1.1" 200')
    assert "[main] serving /opt/chute/www on port 8000" in logs

    # stop and start: the node's state and the published port follow
    succeeded(pdtools("node", "stop-chute", name))
    assert api_chute(node_process, name)["state"] == "stopped"
    assert page(port) is None
    succeeded(pdtools("node", "start-chute", name))
    assert api_chute(node_process, name)["state"] == "running"
    assert wait_until(lambda: page(port), timeout=10, message="the page after start")

    # restart without waiting, then follow the change by its id
    change_id = succeeded(pdtools("node", "restart-chute", name, "--no-wait")).stdout.strip()
    assert change_id.isdigit()
    assert f"change {change_id} succeeded" in succeeded(pdtools("node", "watch-change", change_id)).stdout

    # update to version 2 with new content
    (project / "www" / "index.html").write_text("<h1>version two</h1>\n")
    yaml_path = project / "paradrop.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("version: 1", "version: 2"))
    update = succeeded(pdtools("node", "update-chute", str(project)))
    assert f"updated {name} to 2" in update.stdout
    assert wait_until(lambda: page(port) == "<h1>version two</h1>\n", timeout=10, message="the new page")
    assert api_chute(node_process, name)["version"] == "2"
    stale = pdtools("node", "update-chute", str(project))
    assert stale.returncode == 1
    assert stale.stderr.startswith("error: version 2 is not newer than the installed 2")

    # the configuration, edited from a file: the same version, a new environment
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml_path.read_text().replace("services:", "environment: {GREETING: hola}\nservices:"))
    succeeded(pdtools("node", "edit-chute-configuration", name, "--file", str(edited)))
    assert api_chute(node_process, name)["environment"] == {"GREETING": "hola"}
    assert "No change" in succeeded(pdtools("node", "edit-chute-configuration", name, "--file", str(edited))).stdout

    # follow the logs, see a request arrive, stop with Ctrl-C
    follow = pdtools.popen("node", "watch-chute-logs", name)
    try:
        wait_until(lambda: page(port), timeout=10, message="the page after the configuration change")
        line = read_line(follow)
        assert line.startswith("[main] "), line
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=10) == 0, follow.stderr.read()
    finally:
        follow.kill()
        follow.communicate()

    succeeded(pdtools("node", "remove-chute", name))
    assert api_chute(node_process, name) is None
    assert name not in succeeded(pdtools("node", "list-chutes")).stdout
    assert page(port) is None


def test_a_project_the_node_refuses_exits_1_naming_the_field(pdtools, node_process, chute_names, tmp_path):
    name = chute_names()
    (tmp_path / "paradrop.yaml").write_text(
        f"name: {name}\nversion: 1\nservices:\n  main:\n    type: light\n    image: busybox\n"
        "    command: 'true'\n    requests: {port-bindings: [{external: 70000, internal: 80}]}\n")
    for command in (("chute", "validate"), ("node", "install-chute")):
        result = pdtools(*command, str(tmp_path))
        assert result.returncode == 1, result
        assert "services.main.requests.port-bindings[0].external: 70000 is greater than the maximum" in result.stderr
        assert "Traceback" not in result.stderr
    assert api_chute(node_process, name) is None


def test_a_chute_that_fails_to_start_exits_1_with_the_reason_and_is_rolled_back(pdtools, node_process, chute_names,
                                                                                tmp_path):
    name = chute_names()
    (tmp_path / "paradrop.yaml").write_text(
        f"name: {name}\nversion: 1\nservices:\n  main:\n    type: light\n    image: busybox\n"
        "    command: echo about to fail; exit 3\n")
    result = pdtools("node", "install-chute", str(tmp_path))
    assert result.returncode == 1, result
    assert "step 1/" in result.stdout
    # A websocket that cannot open or breaks off under load is followed by polling, after a "note:" line.
    *notes, error = result.stderr.splitlines()
    assert all(line.startswith("note: ") for line in notes), result.stderr
    assert error.startswith("error: change ") and " failed: " in error
    assert "exited with code 3" in error and "rolled back" in error
    assert api_chute(node_process, name) is None
