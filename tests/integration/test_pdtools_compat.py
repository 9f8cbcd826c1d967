"""ParaDrop's own client, pdtools 0.13.2 from PyPI, drives our node (DESIGN section 4: compatibility is tested).

The old client is installed by tools/setup-pdtools-compat in .venv-pdtools013. It exits 0 whatever the node
answers (it prints error bodies as YAML), so every step is checked through our API, not by its exit code.
What it does, from its source (pdtools/node.py, paradrop_client.py, authenticated_client.py):
- takes the token from PARADROP_API_TOKEN first (then a saved one, the default password, a prompt);
- `install-chute -d DIR` / `update-chute -d DIR` tar the directory (members named "paradrop.yaml", "www/..."),
  POST /api/v1/chutes/ (trailing slash) or PUT /api/v1/chutes/<name> with Content-Type application/x-tar;
- then follow ws://<target>/ws/changes/<id>/stream, printing "<local time>: <message>" for each JSON frame
  {"time", "message"}, and return when the node closes the socket;
- `watch-chute-logs` follows ws://<target>/sockjs/logs/<chute>: frames {"service", "timestamp", "message"};
- list-chutes, describe-chute, describe-chute-configuration print the JSON answers as YAML;
- edit-chute-configuration GETs /chutes/<name>/config, opens $EDITOR on it as YAML, PUTs it back if saved;
- edit-chute-variables opens $EDITOR on the chute's environment and POSTs {"environment": {...}} to
  /chutes/<name>/restart.
"""
import json
import os
import secrets
import select
import shutil
import subprocess

import pytest
import yaml

from tests.conftest import REPO, wait_until

OLD_PDTOOLS = REPO / ".venv-pdtools013" / "bin" / "pdtools"

pytestmark = [
    pytest.mark.docker,
    pytest.mark.skipif(not OLD_PDTOOLS.exists(),
                       reason=f"pdtools 0.13.2 is not installed in {OLD_PDTOOLS.parent.parent.name}: "
                              "run tools/setup-pdtools-compat"),
]

FINAL_STATES = ("succeeded", "failed", "cancelled", "interrupted")
# A light chute that prints a line a second and stops at once on SIGTERM.
PROJECT = """\
name: {name}
version: {version}
description: driven by pdtools 0.13.2
services:
  main:
    type: light
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick {version} $GREETING; sleep 1; done"]
"""


def pdtools_runner(node, tmp_path):
    """Run `pdtools node --target 127.0.0.1:PORT ARGS` of pdtools 0.13.2 against ``node`` (a NodeProcess), with a
    token in PARADROP_API_TOKEN (and without our PYTHONPATH, through which the old client would import our
    pdtools instead of its own). ``run.popen`` starts it without waiting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARADROP_", "PDTOOLS_", "XDG_", "PYTHONPATH"))}
    env.update(HOME=str(tmp_path / "home"), PARADROP_API_TOKEN=node.token())
    target = f"127.0.0.1:{node.port}"

    def command(*args):
        return [str(OLD_PDTOOLS), "node", "--target", target, *args]

    def run(*args, editor=None, timeout=120):
        extra = {"EDITOR": editor} if editor else {}
        result = subprocess.run(command(*args), env={**env, **extra}, stdin=subprocess.DEVNULL, capture_output=True,
                                text=True, timeout=timeout, cwd=str(tmp_path))
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def popen(*args):
        return subprocess.Popen(command(*args), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, bufsize=1, cwd=str(tmp_path))

    run.popen = popen
    return run


@pytest.fixture
def old_pdtools(node_process, tmp_path):
    return pdtools_runner(node_process, tmp_path)


@pytest.fixture
def chute_name(node_process):
    """A unique chute name; the chute is removed through our API at teardown if the test left it installed."""
    name = f"compat-{secrets.token_hex(3)}"
    yield name
    session, api = node_process.session(), node_process.url + "/api/v1"
    answer = session.delete(f"{api}/chutes/{name}", timeout=10)
    if answer.status_code == 202:
        change = answer.json()["change_id"]
        wait_until(lambda: session.get(f"{api}/changes/{change}", timeout=10).json()["state"] in FINAL_STATES,
                   timeout=60, interval=0.2, message=f"the removal of {name}")


def write_project(directory, name, version):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "paradrop.yaml").write_text(PROJECT.format(name=name, version=version))
    (directory / "README").write_text("a file besides paradrop.yaml\n")
    return directory


def api_chute(node_process, name):
    answer = node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}", timeout=10)
    return answer.json() if answer.status_code == 200 else None


def api_config(node_process, name):
    return node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}/config", timeout=10).json()


def api_logs(node_process, name):
    return node_process.session().get(f"{node_process.url}/api/v1/chutes/{name}/logs?tail=5", timeout=10).json()


def progress_messages(result):
    """The messages of the old client's "<YYYY-MM-DD HH:MM:SS.ffffff>: <message>" progress lines."""
    return [line.split(": ", 1)[1] for line in result.stdout.splitlines() if ": " in line]


def test_pdtools_0_13_installs_inspects_stops_starts_updates_edits_and_removes_a_chute(
        old_pdtools, node_process, chute_name, tmp_path):
    name = chute_name
    project = write_project(tmp_path / "project", name, 1)

    install = old_pdtools("install-chute", "-d", str(project))
    messages = progress_messages(install)
    assert messages[0].endswith(f"queued: install {name}"), install.stdout
    assert messages[-1].endswith(f"succeeded: installed {name} 1"), install.stdout
    chute = api_chute(node_process, name)
    assert (chute["version"], chute["state"]) == ("1", "running")

    listed = yaml.safe_load(old_pdtools("list-chutes").stdout)
    assert [(c["name"], c["state"]) for c in listed if c["name"] == name] == [(name, "running")]

    described = yaml.safe_load(old_pdtools("describe-chute", name).stdout)
    assert (described["name"], described["state"]) == (name, "running")
    assert [s["running"] for s in described["service_states"]] == [True]
    configuration = yaml.safe_load(old_pdtools("describe-chute-configuration", name).stdout)
    assert configuration == api_config(node_process, name)

    follow = old_pdtools.popen("watch-chute-logs", name)
    try:
        assert select.select([follow.stdout], [], [], 15)[0], "no log line within 15 s"
        assert follow.stdout.readline().startswith("[main] ")
    finally:
        follow.kill()
        follow.communicate()

    stop = old_pdtools("stop-chute", name)
    assert progress_messages(stop)[-1].endswith(f"{name} is stopped"), stop.stdout
    assert api_chute(node_process, name)["state"] == "stopped"
    old_pdtools("start-chute", name)
    assert api_chute(node_process, name)["state"] == "running"
    old_pdtools("restart-chute", name)
    assert api_chute(node_process, name)["state"] == "running"

    write_project(project, name, 2)
    update = old_pdtools("update-chute", "-d", str(project))
    assert progress_messages(update)[-1].endswith(f"updated {name} to 2"), update.stdout
    assert api_chute(node_process, name)["version"] == "2"

    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\nsed -i 's/^description: .*/description: edited by pdtools 0.13/' \"$1\"\n")
    editor.chmod(0o755)
    old_pdtools("edit-chute-configuration", name, editor=str(editor))
    assert api_config(node_process, name)["description"] == "edited by pdtools 0.13"
    assert api_chute(node_process, name)["state"] == "running"

    remove = old_pdtools("remove-chute", name)
    assert progress_messages(remove)[-1].endswith(f"removed {name}"), remove.stdout
    assert api_chute(node_process, name) is None
    assert [c for c in yaml.safe_load(old_pdtools("list-chutes").stdout) or [] if c["name"] == name] == []


def test_pdtools_0_13_edit_chute_variables_sets_the_environment(old_pdtools, node_process, chute_name, tmp_path):
    project = write_project(tmp_path / "project", chute_name, 1)
    old_pdtools("install-chute", "-d", str(project))
    assert api_chute(node_process, chute_name)["state"] == "running"
    editor = tmp_path / "editor.sh"
    editor.write_text("#!/bin/sh\necho 'GREETING: hola' > \"$1\"\n")
    editor.chmod(0o755)
    old_pdtools("edit-chute-variables", chute_name, editor=str(editor))
    assert api_chute(node_process, chute_name)["environment"] == {"GREETING": "hola"}
    wait_until(lambda: "tick 1 hola" in json.dumps(api_logs(node_process, chute_name)), timeout=15, interval=0.2,
               message="the chute's output with the new variable")


def test_pdtools_0_13_installs_paradrop_s_legacy_dockerfile_hello_world(old_pdtools, node_process, chute_name,
                                                                        tmp_path):
    project = shutil.copytree(REPO / "tests" / "fixtures" / "paradrop-chutes" / "legacy-hello-world",
                              tmp_path / "hello-world")
    text = (project / "paradrop.yaml").read_text()
    (project / "paradrop.yaml").write_text(text.replace("name: hello-world", f"name: {chute_name}"))
    result = old_pdtools("install-chute", "-d", str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    chute = api_chute(node_process, chute_name)
    assert (chute["state"], chute["version"], chute["web"]) == ("running", "0.1.0", {"service": "main", "port": 80})


def test_pdtools_0_13_provisions_the_node_and_describes_its_provisioning(old_pdtools, node_process):
    """`provision ID KEY --controller URL --wamp URL` posts {routerId, apitoken, pdserver, wampRouter}: stored 0600,
    the link starts (nothing listens at the loopback URLs given, so it stays down and says why), and
    `describe-provision` prints the state without the secret."""
    node_id, secret = secrets.token_hex(12), secrets.token_urlsafe(16)
    controller, wamp = "http://127.0.0.1:9", "ws://127.0.0.1:9/ws"
    before = yaml.safe_load(old_pdtools("describe-provision").stdout)
    assert before["provisioned"] is False and before["routerId"] is None
    old_pdtools("provision", node_id, secret, "--controller", controller, "--wamp", wamp)
    record = json.loads((node_process.state_dir / "cloud.json").read_text())
    assert record == {"node_id": node_id, "secret": secret, "controller": controller, "wamp_router": wamp}
    assert oct((node_process.state_dir / "cloud.json").stat().st_mode & 0o777) == "0o600"
    described = wait_until(lambda: (lambda r: r["last_error"] and r)(yaml.safe_load(
        old_pdtools("describe-provision").stdout)), timeout=20, message="the link's first failure")
    assert described["provisioned"] is True and described["routerId"] == node_id
    assert described["pdserver"] == controller and described["wampRouter"] == wamp
    assert described["connected"] is False
    assert secret not in old_pdtools("describe-provision").stdout

    refused = old_pdtools("provision", "not-hex", secret, "--controller", controller, "--wamp", wamp)
    assert "node_id" in refused.stdout
    assert json.loads((node_process.state_dir / "cloud.json").read_text())["node_id"] == node_id


def test_pdtools_0_13_imports_and_lists_ssh_keys_of_the_admin_account(old_pdtools, node_process, tmp_path):
    """`import-ssh-key PATH` reads a .pub file (ssh-keygen's) and POSTs {"key"} to /config/sshKeys/paradrop;
    `list-ssh-keys` prints the key lines as YAML. A file with a second line is refused (the old client says
    "Added" whatever the answer: the node's list shows what was taken)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice@laptop", "-f", str(tmp_path / "id")],
                   check=True)
    line = (tmp_path / "id.pub").read_text().strip()
    imported = old_pdtools("import-ssh-key", str(tmp_path / "id.pub"))
    assert f"Added public key from {tmp_path / 'id.pub'}" in imported.stdout
    assert yaml.safe_load(old_pdtools("list-ssh-keys").stdout) == [line]
    assert (node_process.state_dir / "ssh" / "authorized_keys").read_text() == line + "\n"

    refused = old_pdtools("import-ssh-key", str(tmp_path / "id"))  # the private key: the old client refuses it
    assert "contains a private key" in refused.stdout
    (tmp_path / "two.pub").write_text(line.replace("alice", "mallory") + "\nssh-ed25519 AAAA second\n")
    old_pdtools("import-ssh-key", str(tmp_path / "two.pub"))
    assert yaml.safe_load(old_pdtools("list-ssh-keys").stdout) == [line]
    other = yaml.safe_load(old_pdtools("list-ssh-keys", "--user", "root").stdout)
    assert other["error"]["field"] == "user"


def test_pdtools_0_13_lists_snap_interfaces_off_snapd_as_none_with_a_note(old_pdtools):
    listed = yaml.safe_load(old_pdtools("list-snap-interfaces").stdout)
    assert listed["result"] == {"plugs": [], "slots": []}
    assert "does not run under snapd" in listed["note"]
    assert old_pdtools("connect-snap-interfaces").stdout == ""  # no plug to connect


@pytest.mark.parametrize("command, env", [
    ("reboot", {}),  # allow_host_power is off by default
    ("shutdown", {"PARADROP_ALLOW_HOST_POWER": "true"}),  # on, but in a container or without a bus: still refused
])
def test_pdtools_0_13_reboot_and_shutdown_where_power_is_disallowed_say_why_and_do_nothing(
        node_process_factory, tmp_path, command, env):
    """The old client posts ParaDrop's change form to /api/v1/changes/ and follows the change: the change fails
    naming why. The bus address names no socket, so even a machine with logind could not be powered off here."""
    node = node_process_factory(PARADROP_DBUS_SYSTEM_ADDRESS=f"unix:path={tmp_path}/no-bus", **env).start()
    result = pdtools_runner(node, tmp_path)(command)
    messages = progress_messages(result)
    assert messages[0].endswith(f"queued: host-{command}"), result.stdout
    assert " failed: refused: " in messages[-1], result.stdout
    if env:
        assert "container" in messages[-1] or "no system bus" in messages[-1], messages[-1]
    else:
        assert "allow_host_power is off" in messages[-1], messages[-1]
    records = node.session().get(f"{node.url}/api/v1/audit?action=change:host-{command}", timeout=10).json()
    assert [(r["actor"], r["result"]) for r in records] == [("paradrop", "failed")]
