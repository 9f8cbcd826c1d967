"""An idle node as it really runs: the daemon on a fresh state dir (so its first start lists the links), one
login and one authenticated GET, then its sys.modules, read through a wrapper that writes them on SIGUSR1.
pyroute2 stays in the child that listed the links; txdbus is never imported without a system bus; neither a
Dockerfile parser nor psutil before a build or a hardware or telemetry reading."""
import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from pdserver.errors import Unavailable
from pdserver.sysconfig import device_list, netlink
from tests import netns
from tests.conftest import ADMIN_PASSWORD, REPO, free_port, remove_docker_objects, wait_until
from tests.netns import ip

lab = netns.lab  # the fixture

NOT_AT_IDLE = ("pyroute2", "txdbus", "dockerfile_parse", "psutil")

# argv: the file for the module list, then pdserver's own arguments; SIGUSR1 writes the list (tools/bench/rss.py).
DAEMON_WRAPPER = r"""
import json, os, runpy, signal, sys
modules_file = sys.argv.pop(1)

def dump(signum, frame):
    with open(modules_file + ".tmp", "w") as f:
        json.dump(sorted(sys.modules), f)
    os.replace(modules_file + ".tmp", modules_file)

signal.signal(signal.SIGUSR1, dump)
sys.argv[0] = "pdserver"
runpy.run_module("pdserver.main", run_name="__main__", alter_sys=True)
"""


@pytest.fixture
def idle_daemon(tmp_path):
    """The wrapped daemon, fresh state, no system bus; killed and its Docker objects removed whatever happens."""
    state, port, modules_file = tmp_path / "state", free_port(), tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    env.update(PARADROP_ADMIN_PASSWORD=ADMIN_PASSWORD, PARADROP_DBUS_SYSTEM_ADDRESS=f"unix:path={tmp_path}/no-bus")
    with open(tmp_path / "daemon.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", DAEMON_WRAPPER, str(modules_file), "node", "--state-dir",
                                 str(state), "--port", str(port)], env=env, cwd=str(REPO), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}", state, modules_file
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_docker_objects(state)


def healthy(proc, url, log):
    if proc.poll() is not None:
        raise AssertionError(f"the daemon exited with {proc.returncode}:\n{log.read_text()}")
    try:
        return requests.get(url + "/api/v1/health", timeout=1).status_code == 200
    except requests.ConnectionError:
        return False


def test_an_idle_node_after_its_first_start_holds_none_of_the_packages_only_changes_need(idle_daemon, tmp_path):
    proc, url, state, modules_file = idle_daemon
    wait_until(lambda: healthy(proc, url, tmp_path / "daemon.log"), 30, message="the node API")
    login = requests.post(url + "/api/v1/auth/local", json={"username": "paradrop", "password": ADMIN_PASSWORD},
                          timeout=10)
    login.raise_for_status()
    auth = {"Authorization": f"Bearer {login.json()['token']}"}
    assert requests.get(url + "/api/v1/changes", headers=auth, timeout=10).status_code == 200
    assert (state / "hostconfig.yaml").exists()  # the first start listed the links (in its child)

    proc.send_signal(signal.SIGUSR1)
    modules = json.loads(wait_until(lambda: modules_file.exists() and modules_file.read_text(), 10,
                                    message="the daemon's module list"))
    assert "pdserver.node" in modules and "docker" in modules
    loaded = sorted({m.split(".")[0] for m in modules} & set(NOT_AT_IDLE))
    assert loaded == [], f"the idle daemon imported {loaded}"


def test_the_child_lists_the_links_netlink_lists(lab):
    host, far = lab.netns("host"), lab.netns("far")
    used, _ = lab.veth("used", peer_netns=far, host_netns=host)
    ip("addr", "add", "192.0.2.10/24", "dev", used, netns=host)
    ip("route", "add", "default", "via", "192.0.2.1", netns=host)
    listed = device_list.thd_devices(host)
    assert [d["name"] for d in listed] == ["lo", used]
    assert listed == netlink.thd_devices(host)
    assert next(d for d in listed if d["name"] == used)["default_route"] is True


def test_a_child_that_fails_is_unavailable_with_its_reason(lab):
    with pytest.raises(Unavailable, match=f"no network namespace pdt-gone-{lab.tag}"):
        device_list.thd_devices(f"pdt-gone-{lab.tag}")
