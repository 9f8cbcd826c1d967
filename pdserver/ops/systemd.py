"""systemd for a node installed with ``pip install``: the unit that runs it, and sd_notify.

sd_notify is one datagram to the socket systemd names in $NOTIFY_SOCKET (a leading '@' is Linux's abstract
namespace); a few lines here keep libsystemd out of our dependencies. With ``Type=notify`` systemd holds units
ordered after ours until READY=1, which the daemon sends once its API answers.
"""
import os
import socket
import sys
from pathlib import Path
from typing import Mapping, Optional, Sequence

# A fresh node's start-up (crash recovery, then reconciling every chute with the engine) comes before READY=1.
START_TIMEOUT = 300
STOP_TIMEOUT = 90
# The reactor pings every half of this; a reactor blocked this long is hung, and systemd restarts the node.
WATCHDOG_TIMEOUT = 60


def notify(message: str, environ: Mapping[str, str] = os.environ) -> bool:
    """Send ``message`` (``READY=1``, ``STOPPING=1``, ``STATUS=...``) to systemd.

    False when the process was not started by systemd or the socket cannot be reached: a node runs the same
    without a service manager, and a lost notification shows there as a start timeout, not as a crash here."""
    address = environ.get("NOTIFY_SOCKET", "")
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        return False  # unset, or a vsock address (a VM's host manager): not ours to reach
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.send(message.encode())
    except OSError:
        return False
    return True


def watchdog_interval(environ: Mapping[str, str] = os.environ, pid: Optional[int] = None) -> Optional[float]:
    """Seconds between WATCHDOG=1 pings (half the unit's WatchdogSec), or None when systemd asks for none of
    this process (WATCHDOG_PID names another one, e.g. a parent that exec'd us without passing it on)."""
    usec = environ.get("WATCHDOG_USEC", "")
    owner = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0 or (owner and owner != str(pid or os.getpid())):
        return None
    return int(usec) / 2e6


def pdserver_command(argv0: str = sys.argv[0], executable: str = sys.executable) -> list:
    """The command that starts the ``pdserver`` of this install.

    The console script being run, else the one beside the interpreter (a venv's bin/), else that interpreter
    running our module. The interpreter's path is kept as it is: resolving a venv's symlink would leave the venv."""
    if Path(argv0).name == "pdserver" and os.access(argv0, os.X_OK):
        return [os.path.abspath(argv0)]
    beside = Path(os.path.abspath(executable)).parent / "pdserver"
    if os.access(beside, os.X_OK):
        return [str(beside)]
    return [os.path.abspath(executable), "-m", "pdserver.main"]


def _quote(arg: str) -> str:
    """``arg`` as one word of a unit's command line: specifiers (%) and variables ($) escaped, quoted when needed."""
    if any(ord(c) < 32 or c == "\x7f" for c in arg):
        raise ValueError(f"a control character cannot go into a unit file: {arg!r}")
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not any(c in arg for c in " \t\"'\\;"):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unit(state_dir: Path, command: Sequence[str], config_file: Optional[Path] = None, host: Optional[str] = None,
         port: Optional[int] = None) -> str:
    """The text of ``paradrop.service`` running ``command node`` on ``state_dir`` (paths made absolute)."""
    state_dir = Path(os.path.abspath(state_dir))
    argv = list(command) + ["node", "--state-dir", str(state_dir)]
    if config_file is not None:
        argv += ["--config", os.path.abspath(config_file)]
    if host is not None:
        argv += ["--host", host]
    if port is not None:
        argv += ["--port", str(port)]
    # systemd makes a StateDirectory= (owned, mode 0700) only under /var/lib; elsewhere the node makes its own.
    relative = state_dir.relative_to("/var/lib") if state_dir.parent.is_relative_to("/var/lib") else None
    state_lines = [f"StateDirectory={_quote(str(relative))}", "StateDirectoryMode=0700"] if relative else []
    lines = [
        "# ParaDrop node as a systemd service, written by `pdserver node --print-unit`. Install it with:",
        "#   pdserver node --print-unit [--state-dir DIR] > /etc/systemd/system/paradrop.service",
        "#   systemctl daemon-reload && systemctl enable --now paradrop",
        "[Unit]",
        "Description=ParaDrop edge node",
        # Chutes are containers: the engine comes first when it is a unit here (a missing one is no error).
        "Wants=network-online.target docker.service",
        "After=network-online.target docker.service",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        "ExecStart=" + " ".join(_quote(a) for a in argv),
        "Restart=on-failure",
        f"WatchdogSec={WATCHDOG_TIMEOUT}",
        "RestartSec=5",
        f"TimeoutStartSec={START_TIMEOUT}",
        f"TimeoutStopSec={STOP_TIMEOUT}",
        # SIGTERM to the daemon alone: it stops its hostapd and dnsmasq children itself, then SIGKILL for leftovers.
        "KillMode=mixed",
        "UMask=0077",
        *state_lines,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"
