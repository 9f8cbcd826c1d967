"""The snap: what can be checked without snapd (snapcraft and snapd cannot run on this machine).

snap/snapcraft.yaml parses, is strictly confined on a base whose Python satisfies setup.py, and every app's command
exists and parses; the configure hook runs as snapd would run it (a subprocess with $SNAP, $SNAP_COMMON and a
stand-in `snapctl` on PATH, the one stand-in: snapd cannot run here) and writes a settings file the node's loader
accepts, or fails with a message naming the key."""
import ast
import importlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

from pdserver import settings as settings_module
from pdserver.main import cli
from pdserver.ops import snap_configure

REPO = Path(__file__).resolve().parents[2]
SNAP_DIR = REPO / "snap"

# The python3 each base's root file system carries (Ubuntu 20.04, 22.04, 24.04); core26 has none.
BASE_PYTHON = {"core20": "3.8", "core22": "3.10", "core24": "3.12"}

# snapd's `snapctl` as far as the hook uses it: get -d KEYS (set keys only, as snapd), services, restart.
STUB_SNAPCTL = """#!{python}
import json, os, sys
args = sys.argv[1:]
config = json.loads(open(os.environ["STUB_CONFIG"]).read())
if args[:2] == ["get", "-d"]:
    print(json.dumps({{k: config[k] for k in args[2:] if k in config}}, indent="\\t"))
elif args[0] == "services":
    print("Service  Startup  Current  Notes")
    print(args[1] + "  enabled  " + os.environ["STUB_DAEMON_STATE"] + "  -")
elif args[0] == "restart":
    open(os.environ["STUB_RESTARTS"], "a").write(" ".join(args) + "\\n")
else:
    sys.exit("snapctl stand-in: unexpected " + repr(args))
"""

# A valid value, unlike the default, for each setting `snap set` may give (None defaults need one here).
SAMPLES = {"host": "0.0.0.0", "port": 8081, "log_level": "debug", "token_ttl": 3600, "max_connections": 2000,
           "pdid": "kitchen-router", "dbus_system_address": "unix:path=/run/dbus/system_bus_socket",
           "chute_default_memory": 128 * 1024 * 1024, "ssh_authorized_keys_path": "/home/ubuntu/.ssh/authorized_keys",
           "snapd_socket": "/run/snapd.socket"}


def snapcraft() -> dict:
    return yaml.safe_load((SNAP_DIR / "snapcraft.yaml").read_text())


def setup_keywords() -> dict:
    """The literal keyword arguments of setup.py's setup() call."""
    tree = ast.parse((REPO / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    out = {}
    for keyword in call.keywords:
        try:
            out[keyword.arg] = ast.literal_eval(keyword.value)
        except ValueError:
            continue
    return out


def base_python_satisfies(base: str) -> bool:
    assert base in BASE_PYTHON, f"base {base!r}: add the Python its root file system carries to BASE_PYTHON"
    return BASE_PYTHON[base] in SpecifierSet(setup_keywords()["python_requires"])


def console_scripts() -> dict:
    entries = setup_keywords()["entry_points"]["console_scripts"]
    return dict((name.strip(), target.strip()) for name, target in (e.split("=", 1) for e in entries))


def test_the_snapcraft_yaml_parses_strictly_confined_with_a_python_that_runs_us():
    project = snapcraft()
    assert project["name"] == "paradrop-daemon"
    assert project["confinement"] == "strict"
    assert base_python_satisfies(project["base"])
    assert not base_python_satisfies("core22"), "the check must refuse the old base's Python 3.10"
    assert project["version"] == setup_keywords()["version"]
    assert project["parts"]["paradrop"]["plugin"] == "python"
    assert {"dnsmasq-base", "hostapd", "iproute2", "nftables"} <= set(project["parts"]["paradrop"]["stage-packages"])


def test_every_app_names_a_console_script_of_setup_py_that_imports():
    scripts = console_scripts()
    for name, app in snapcraft()["apps"].items():
        program = app["command"].split()[0]
        assert program.startswith("bin/"), f"app {name}: {program} is not a script the python plugin installs"
        target = scripts.get(program[len("bin/"):])
        assert target is not None, f"app {name}: {program} is no console script of setup.py"
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))


def test_the_daemon_runs_the_node_on_the_state_and_settings_file_of_the_hook(tmp_path):
    app = snapcraft()["apps"][snap_configure.DAEMON_APP]
    assert app["daemon"] == "simple"
    words = app["command"].replace("$SNAP_COMMON", str(tmp_path)).split()
    assert words[:2] == ["bin/pdserver", "node"]
    (tmp_path / snap_configure.SETTINGS_FILE).write_text("")
    context = cli.commands["node"].make_context("node", words[2:])
    assert context.params["state_dir"] == tmp_path
    assert context.params["config_file"] == tmp_path / snap_configure.SETTINGS_FILE


def test_the_hooks_are_known_to_snapd_and_executable():
    hooks = {p.name: p for p in (SNAP_DIR / "hooks").iterdir()}
    assert set(hooks) == {"configure", "install"}
    for hook in hooks.values():
        assert hook.stat().st_mode & stat.S_IXUSR
        assert hook.read_text().rstrip().endswith('exec "$SNAP/bin/python3" -m pdserver.ops.snap_configure')


class Snapd:
    """What snapd gives a hook here: $SNAP with the snap's python3, $SNAP_COMMON, and `snapctl` on PATH."""

    def __init__(self, root: Path):
        self.snap = root / "snap"
        self.common = root / "common"
        self.common.mkdir()
        (self.snap / "bin").mkdir(parents=True)
        stubs = root / "stubs"
        stubs.mkdir()
        # the interpreter of the snap's environment: here the test's, with its packages
        self._script(self.snap / "bin" / "python3", f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
        self._script(stubs / "snapctl", STUB_SNAPCTL.format(python=sys.executable))
        self.config = root / "config.json"
        self.restarts = root / "restarts"
        self.env = {"PATH": f"{stubs}:{os.environ['PATH']}", "SNAP": str(self.snap), "SNAP_COMMON": str(self.common),
                    "SNAP_NAME": "paradrop-daemon", "SNAP_INSTANCE_NAME": "paradrop-daemon", "PYTHONPATH": str(REPO),
                    "STUB_CONFIG": str(self.config), "STUB_RESTARTS": str(self.restarts)}

    @staticmethod
    def _script(path: Path, text: str) -> None:
        path.write_text(text)
        path.chmod(0o755)

    def snap_set(self, config: dict, daemon: str = "inactive", hook: str = "configure") -> subprocess.CompletedProcess:
        """`snap set paradrop-daemon KEY=VALUE ...` as snapd does it: store the values, run the configure hook."""
        self.config.write_text(json.dumps(config))
        return subprocess.run([str(SNAP_DIR / "hooks" / hook)], env={**self.env, "STUB_DAEMON_STATE": daemon},
                              capture_output=True, text=True, timeout=60)

    @property
    def settings_file(self) -> Path:
        return self.common / snap_configure.SETTINGS_FILE

    def restarted(self) -> list:
        return self.restarts.read_text().splitlines() if self.restarts.exists() else []


@pytest.fixture
def snapd(tmp_path):
    return Snapd(tmp_path)


def settable():
    return [f for f in settings_module.Settings.__dataclass_fields__.values()
            if f.name not in snap_configure.NOT_SETTABLE]


def test_every_setting_snap_set_gives_reaches_the_node_through_the_settings_file(snapd):
    config = {}
    for field in settable():
        value = SAMPLES.get(field.name, field.default)
        assert value is not None, f"setting {field.name}: add a valid value to SAMPLES"
        config[field.name.replace("_", "-")] = value
    done = snapd.snap_set(config)
    assert done.returncode == 0, done.stderr
    written = yaml.safe_load(snapd.settings_file.read_text())
    assert set(written) == {f.name for f in settable()}
    loaded = settings_module.load(snapd.settings_file, environ={}, state_dir=snapd.common)
    for field in settable():
        value = getattr(loaded, field.name)
        assert (str(value) if isinstance(value, Path) else value) == config[field.name.replace("_", "-")], field.name
    assert stat.S_IMODE(snapd.settings_file.stat().st_mode) == 0o600
    assert not list(snapd.common.glob("*.new"))


def test_the_install_hook_writes_the_settings_file_the_service_starts_with_before_any_snap_set(snapd):
    done = snapd.snap_set({}, hook="install")
    assert done.returncode == 0, done.stderr
    assert settings_module.load(snapd.settings_file, environ={}) == settings_module.load(None, environ={})


def test_a_change_restarts_a_running_daemon_and_nothing_else_does(snapd):
    assert snapd.snap_set({"port": 8081}, daemon="active").returncode == 0
    assert snapd.restarted() == ["restart paradrop-daemon.pdserver"]
    assert snapd.snap_set({"port": 8081}, daemon="active").returncode == 0
    assert snapd.restarted() == ["restart paradrop-daemon.pdserver"], "unchanged settings restarted the daemon"
    assert snapd.snap_set({"port": 8082}, daemon="inactive").returncode == 0
    assert len(snapd.restarted()) == 1, "a stopped daemon was started by snap set"


@pytest.mark.parametrize("key, value", [
    ("port", 70000), ("port", "eighty"), ("log-level", "loud"), ("token-ttl", 0), ("max-body-bytes", 10),
    ("dbus-system-address", "/run/dbus/socket"), ("cloud-retry-initial", -1),
])
def test_a_value_the_node_loader_rejects_fails_the_hook_naming_the_key(snapd, tmp_path, key, value):
    rejected = tmp_path / "direct.yaml"
    rejected.write_text(yaml.safe_dump({key: value}))
    with pytest.raises(settings_module.SettingsError):
        settings_module.load(rejected, environ={})
    assert snapd.snap_set({"host": "0.0.0.0"}).returncode == 0
    before = snapd.settings_file.read_text()
    done = snapd.snap_set({"host": "10.0.0.1", key: value})
    assert done.returncode != 0
    assert done.stderr.startswith(f"paradrop-daemon: {key}: "), done.stderr
    assert "Traceback" not in done.stderr and str(snapd.common) not in done.stderr
    assert snapd.settings_file.read_text() == before, "a refused snap set changed the settings"
    assert not list(snapd.common.glob("*.new"))


@pytest.mark.parametrize("key", ["admin-password", "state-dir", "test-faults", "network-netns"])
def test_settings_the_snap_does_not_take_are_refused_with_the_reason(snapd, key):
    done = snapd.snap_set({key: "something-long-enough"})
    assert done.returncode != 0
    assert f"{key} cannot be set with snap set" in done.stderr
    assert f"snap unset paradrop-daemon {key}" in done.stderr
    assert not snapd.settings_file.exists()


def test_a_nested_value_is_refused_rather_than_turned_into_a_string(snapd):
    done = snapd.snap_set({"host": {"address": "0.0.0.0"}})
    assert done.returncode != 0
    assert "host: must be a single value" in done.stderr
