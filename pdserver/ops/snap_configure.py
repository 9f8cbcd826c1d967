"""The snap's configure and install hooks: ``snap set paradrop-daemon KEY=VALUE`` becomes the node's settings file.

snapd keeps the values; this reads them with ``snapctl get``, has the node's own settings loader check them (the
hook and the daemon cannot disagree about what is valid), writes $SNAP_COMMON/settings.yaml, which the daemon is
started with (``--config``), and restarts the daemon when the file changed. A value the loader rejects fails the
hook, so snapd refuses the ``snap set`` with our message and keeps the previous values. The install hook runs the
same, because on a first install snapd starts the services before the configure hook.

Keys are the loader's setting names with dashes (snapd allows lower case letters, digits and dashes):
``snap set paradrop-daemon port=8081 log-level=debug``. ``snapctl get`` answers only for keys it is asked about,
so the hook asks for every setting the loader knows; a key that is no setting at all cannot be listed from a hook.
"""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping

import yaml

from pdserver import settings as settings_module

SETTINGS_FILE = "settings.yaml"
DAEMON_APP = "pdserver"

# Settings the snap does not take from ``snap set``, and why (the message the operator sees).
NOT_SETTABLE = {
    "state_dir": "the snap keeps the node's state in $SNAP_COMMON",
    "admin_password": "a password does not belong in snapd's configuration; the first start writes a random one "
                      "to $SNAP_COMMON/initial-admin-password",
    "test_faults": "it is for the test suite only",
    "crash_after_step": "it is for the test suite only",
    "network_netns": "it is for the test suite only",
}

Snapctl = Callable[..., str]


class ConfigureError(Exception):
    """A ``snap set`` value the node cannot use; the message names the key as the operator typed it."""


def snap_key(name: str) -> str:
    return name.replace("_", "-")


def run_snapctl(*args: str) -> str:
    """``snapctl ARGS`` (snapd's tool inside a hook); its output."""
    done = subprocess.run(["snapctl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise ConfigureError(f"snapctl {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def read_values(snapctl: Snapctl) -> dict:
    """Settings name -> value of every setting key set with ``snap set`` (snapd leaves unset ones out)."""
    names = [f.name for f in dataclasses.fields(settings_module.Settings)]
    document = json.loads(snapctl("get", "-d", *[snap_key(n) for n in names]) or "{}")
    values = {}
    for name in names:
        key = snap_key(name)
        if key not in document:
            continue
        if name in NOT_SETTABLE:
            raise ConfigureError(f"{key} cannot be set with snap set: {NOT_SETTABLE[name]} "
                                 f"(snap unset paradrop-daemon {key})")
        value = document[key]
        if isinstance(value, (dict, list)):
            raise ConfigureError(f"{key}: must be a single value, not {json.dumps(value)}")
        values[name] = value
    return values


def write_settings(common: Path, values: Mapping) -> bool:
    """Check ``values`` with the node's loader (as the daemon will start: state in ``common``), then write the
    settings file in one step; True when its content changed."""
    target = common / SETTINGS_FILE
    text = "# Written by the snap's hooks from `snap set paradrop-daemon KEY=VALUE`; edits here are replaced.\n"
    text += yaml.safe_dump(dict(values), default_flow_style=False, sort_keys=True) if values else ""
    candidate = common / (SETTINGS_FILE + ".new")
    fd = os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    try:
        settings_module.load(candidate, environ={}, state_dir=common)
    except settings_module.SettingsError as e:
        candidate.unlink()
        message = str(e).split(": ", 1)[1].replace(str(candidate), "snap set")
        raise ConfigureError(f"{snap_key(e.name)}: {message}") from None
    changed = not target.exists() or target.read_text() != text
    os.replace(candidate, target)
    return changed


def daemon_active(snapctl: Snapctl, snap_name: str) -> bool:
    """Whether the daemon runs now (``snapctl services``: Service, Startup, Current, Notes)."""
    for line in snapctl("services", f"{snap_name}.{DAEMON_APP}").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 3 and fields[0] == f"{snap_name}.{DAEMON_APP}":
            return fields[2] == "active"
    return False


def configure(environ: Mapping[str, str], snapctl: Snapctl = run_snapctl) -> None:
    common = Path(environ["SNAP_COMMON"])
    snap_name = environ.get("SNAP_INSTANCE_NAME") or environ["SNAP_NAME"]
    if write_settings(common, read_values(snapctl)) and daemon_active(snapctl, snap_name):
        snapctl("restart", f"{snap_name}.{DAEMON_APP}")


def main() -> int:
    try:
        configure(os.environ)
    except ConfigureError as e:
        print(f"paradrop-daemon: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
