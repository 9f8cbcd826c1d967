"""The systemd unit of `pdserver node --print-unit` and sd_notify's datagram (real unix sockets)."""
import configparser
import os
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pdserver.ops import systemd

REPO = Path(__file__).resolve().parents[2]


def print_unit(*args: str, cwd=None) -> str:
    """`pdserver node --print-unit ARGS` run by this install's interpreter, as an operator would."""
    done = subprocess.run([sys.executable, "-m", "pdserver.main", "node", "--print-unit", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def parse(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read_string(text)
    return parser


def exec_start(unit: configparser.ConfigParser) -> list:
    """ExecStart's words as systemd reads them (our quoting is a subset shlex shares; %% and $$ are escapes)."""
    return [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(unit["Service"]["ExecStart"])]


def test_the_unit_runs_this_installs_pdserver_as_a_notify_service_after_docker():
    unit = parse(print_unit())
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    service = unit["Service"]
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert service["Restart"] == "on-failure"
    assert int(service["WatchdogSec"]) > 0
    for key in ("After", "Wants"):
        assert {"docker.service", "network-online.target"} <= set(unit["Unit"][key].split())
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    argv = exec_start(unit)
    assert argv[0] == str(Path(sys.executable).parent / "pdserver")
    assert argv[1:] == ["node", "--state-dir", "/var/lib/paradrop"]
    assert service["StateDirectory"] == "paradrop" and service["StateDirectoryMode"] == "0700"
    assert subprocess.run([argv[0], "node", "--help"], capture_output=True, timeout=60).returncode == 0


def test_the_state_dir_and_the_other_options_are_honoured(tmp_path):
    config = tmp_path / "node settings.yaml"
    config.write_text("log_level: debug\n")
    unit = parse(print_unit("--state-dir", "/var/lib/pd/node-a", "--config", str(config), "--port", "8181",
                            "--host", "0.0.0.0"))
    assert exec_start(unit)[1:] == ["node", "--state-dir", "/var/lib/pd/node-a", "--config", str(config),
                                    "--host", "0.0.0.0", "--port", "8181"]
    assert unit["Service"]["StateDirectory"] == "pd/node-a"


def test_a_state_dir_outside_var_lib_is_used_as_given_made_absolute(tmp_path):
    odd = tmp_path / "state 100% $HOME"
    unit = parse(print_unit("--state-dir", odd.name, cwd=tmp_path))
    assert exec_start(unit)[1:] == ["node", "--state-dir", str(odd)]
    assert "StateDirectory" not in unit["Service"]


def test_the_command_is_the_running_script_else_the_one_beside_the_interpreter_else_the_module(tmp_path):
    script = tmp_path / "venv" / "bin" / "pdserver"
    script.parent.mkdir(parents=True)
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert systemd.pdserver_command(str(script), "/usr/bin/python3") == [str(script)]
    assert systemd.pdserver_command("/x/main.py", str(script.parent / "python")) == [str(script)]
    assert systemd.pdserver_command("/x/main.py", "/nowhere/python3") == ["/nowhere/python3", "-m", "pdserver.main"]


def test_a_control_character_cannot_reach_the_unit_file():
    with pytest.raises(ValueError, match="control character"):
        systemd.unit(Path("/var/lib/a\nExecStartPre=/bin/evil"), ["/usr/bin/pdserver"])


def test_systemd_analyze_verify_accepts_the_unit(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed on this machine: only the parsed checks above ran")
    unit_file = tmp_path / "paradrop.service"
    unit_file.write_text(print_unit("--state-dir", str(tmp_path / "state with space")))
    done = subprocess.run([analyze, "verify", str(unit_file)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "paradrop.service" not in done.stdout + done.stderr, done.stdout + done.stderr
    broken = tmp_path / "broken.service"
    broken.write_text(unit_file.read_text().replace("Type=notify", "Type=notfy"))
    done = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert "notfy" in done.stderr, "systemd-analyze no longer reports a bad line: this check proves nothing"


@pytest.fixture
def listener():
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.settimeout(5)
    yield sock
    sock.close()


def test_notify_sends_one_datagram_to_a_socket_path(listener, tmp_path):
    path = tmp_path / "notify"
    listener.bind(str(path))
    assert systemd.notify("READY=1\nSTATUS=up", {"NOTIFY_SOCKET": str(path)})
    assert listener.recv(4096) == b"READY=1\nSTATUS=up"


def test_notify_reaches_an_abstract_socket_named_with_an_at_sign(listener):
    name = f"paradrop-test-{os.getpid()}-{id(listener)}"
    listener.bind("\0" + name)
    assert systemd.notify("STOPPING=1", {"NOTIFY_SOCKET": "@" + name})
    assert listener.recv(4096) == b"STOPPING=1"


def test_notify_without_systemd_or_its_socket_is_a_quiet_no(tmp_path):
    assert systemd.notify("READY=1", {}) is False
    assert systemd.notify("READY=1", {"NOTIFY_SOCKET": "vsock:2:1234"}) is False
    assert systemd.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")}) is False


def test_the_watchdog_pings_at_half_the_timeout_systemd_gives_this_process_only():
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "60000000"}, pid=42) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, pid=42) == 30.0
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"}, pid=42) is None
    assert systemd.watchdog_interval({}, pid=42) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "0"}, pid=42) is None
    assert systemd.watchdog_interval({"WATCHDOG_USEC": "soon"}, pid=42) is None
