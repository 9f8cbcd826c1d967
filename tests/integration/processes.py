"""Processes for the tests of the production shape (a crossbar router run on its own, controllers joining it with
--router): each in a session of its own with its output in a log under the test's tmp_path, stopped (TERM, then
KILL) at teardown even when the test failed."""
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from pdserver.controller.router import TICKET_VARIABLE, crossbar_path
from tests.conftest import REPO, free_port

ROUTER_DIR = REPO / "tools" / "crossbar"

needs_crossbar = pytest.mark.skipif(not os.path.exists(crossbar_path()), reason="crossbar is not installed "
                                                                                "(make crossbar)")


def clean_env(**extra) -> dict:
    """This environment without PARADROP_ settings (but where crossbar is), the repository importable, and
    ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARADROP_")}
    if os.environ.get("PARADROP_CROSSBAR"):
        env["PARADROP_CROSSBAR"] = os.environ["PARADROP_CROSSBAR"]
    return {**env, "PYTHONPATH": str(REPO), **extra}


def stop(proc) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        except ProcessLookupError:
            proc.wait(10)


def alive(*procs) -> None:
    """Fail with a process's last output when it has exited."""
    for proc in procs:
        if proc.poll() is not None:
            raise AssertionError(f"{proc.name} exited with {proc.returncode}:\n{proc.err.read_text()[-3000:]}")


@pytest.fixture
def spawn(tmp_path):
    """``start(name, args, env, separate_stderr=False)``: a process whose stdout goes to ``<name>.log`` under
    tmp_path and its stderr there too, or to ``<name>.err``; ``proc.name`` is what failures call it."""
    started = []

    def start(name, args, env, separate_stderr=False):
        log = tmp_path / f"{name}.log"
        err = tmp_path / f"{name}.err" if separate_stderr else log
        with open(log, "ab") as out, open(err, "ab") as errors:
            proc = subprocess.Popen(args, stdout=out, stderr=errors if separate_stderr else subprocess.STDOUT,
                                    env=env, cwd=str(tmp_path), start_new_session=True)
        proc.name, proc.log, proc.err = name, log, err
        started.append(proc)
        return proc

    yield start
    for proc in reversed(started):
        stop(proc)


def start_router(spawn, cbdir: Path, ticket: str):
    """crossbar from the committed tools/crossbar config (only its listen address moved to a free loopback port),
    the controller's ticket in its environment: (the process, its ws:// URL)."""
    port = free_port()
    shutil.copytree(ROUTER_DIR, cbdir)
    config = json.loads((cbdir / "config.json").read_text())
    config["workers"][0]["transports"][0]["endpoint"].update(interface="127.0.0.1", port=port)
    (cbdir / "config.json").write_text(json.dumps(config))
    router = spawn("crossbar", [crossbar_path(), "start", "--cbdir", str(cbdir)],
                   clean_env(**{TICKET_VARIABLE: ticket}))
    return router, f"ws://127.0.0.1:{port}/ws"


def ticket_file(path: Path, ticket: str) -> Path:
    path.write_text(ticket + "\n")
    path.chmod(0o600)
    return path
