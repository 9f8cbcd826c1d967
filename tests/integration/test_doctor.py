"""`pdserver doctor` run for real on this machine: with the engine up it passes (exit 0, the engine's version);
without dnsmasq on PATH, or with DOCKER_HOST at a dead socket, it exits non-zero and names the fix; a
world-writable state dir is reported; the API port held by this state dir's running node passes, held by
another process fails."""
import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from tests.conftest import REPO, free_port


def run_doctor(tmp_path, *args, env=None, state_dir=None, port=None):
    config = tmp_path / "doctor-settings.yaml"
    config.write_text(f"port: {port or free_port()}\n")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    environ.update({"COLUMNS": "250", **(env or {})})
    argv = [sys.executable, "-m", "pdserver.main", "doctor", "--state-dir", str(state_dir or tmp_path / "state"),
            "--config", str(config), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=environ, cwd=str(REPO))


def checks_of(done):
    document = json.loads(done.stdout)
    return document, {check["name"]: check for check in document["checks"]}


def test_on_this_machine_the_node_can_run_and_the_engine_answers(tmp_path, docker_client):
    done = run_doctor(tmp_path, "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    document, checks = checks_of(done)
    assert document["ok"] is True
    engine = checks["Docker engine"]
    assert engine["status"] == "ok" and docker_client.version()["Version"] in engine["detail"]
    assert checks["dnsmasq"]["status"] == "ok" and checks["settings"]["status"] == "ok"
    assert checks["NetworkManager"]["status"] == "ok"
    table = run_doctor(tmp_path)
    assert table.returncode == 0
    assert "Docker engine" in table.stdout and "The node can run here" in table.stdout


@pytest.fixture
def path_without_dnsmasq(tmp_path):
    """A PATH with the node's other programs but no dnsmasq."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("nft", "ip", "hostapd"):
        (bin_dir / name).symlink_to(shutil.which(name))
    path = os.pathsep.join([str(bin_dir), "/usr/bin", "/bin"])
    assert shutil.which("dnsmasq", path=path) is None
    return path


def test_without_dnsmasq_the_node_cannot_run_and_the_fix_is_named(tmp_path, path_without_dnsmasq):
    done = run_doctor(tmp_path, env={"PATH": path_without_dnsmasq})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "apt-get install dnsmasq" in done.stdout and "The node cannot run here" in done.stdout
    document, checks = checks_of(run_doctor(tmp_path, "--json", env={"PATH": path_without_dnsmasq}))
    assert document["ok"] is False and checks["dnsmasq"]["status"] == "fail"
    assert [name for name, check in checks.items() if check["status"] == "fail"] == ["dnsmasq"]


def test_an_unreachable_engine_fails_with_the_way_to_start_it_and_a_dead_bus_is_no_failure(tmp_path):
    dead = tmp_path / "dead.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(dead))  # the socket file stays, nothing listens
    done = run_doctor(tmp_path, "--json", env={"DOCKER_HOST": f"unix://{dead}",
                                                "DBUS_SYSTEM_BUS_ADDRESS": f"unix:path={dead}"})
    assert done.returncode == 1, done.stdout + done.stderr
    document, checks = checks_of(done)
    assert checks["Docker engine"]["status"] == "fail" and str(dead) in checks["Docker engine"]["detail"]
    assert "start the Docker engine" in checks["Docker engine"]["fix"]
    assert checks["base images"]["status"] == "skip"
    assert [name for name, check in checks.items() if check["status"] == "fail"] == ["Docker engine"]
    networkmanager = checks["NetworkManager"]
    assert networkmanager["status"] == "ok" and str(dead) in networkmanager["detail"]
    assert "not found on the system bus" in networkmanager["detail"] and "works without it" in networkmanager["detail"]


def test_a_world_writable_state_dir_is_reported_with_the_fix(tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    os.chmod(state, 0o777)
    done = run_doctor(tmp_path, "--json", state_dir=state)
    document, checks = checks_of(done)
    assert checks["state dir"]["status"] == "warn" and "world-writable" in checks["state dir"]["detail"]
    assert f"chmod 700 {state}" in checks["state dir"]["fix"]


def test_the_api_port_of_this_state_dirs_running_node_passes_anothers_fails(tmp_path, node_process):
    document, checks = checks_of(run_doctor(tmp_path, "--json", state_dir=node_process.state_dir,
                                            port=node_process.port))
    assert checks["API port"]["status"] == "ok" and "running node of this state dir" in checks["API port"]["detail"]
    done = run_doctor(tmp_path, "--json", state_dir=tmp_path / "other", port=node_process.port)
    assert done.returncode == 1
    document, checks = checks_of(done)
    assert checks["API port"]["status"] == "fail" and f"pid {node_process.proc.pid}" in checks["API port"]["detail"]
