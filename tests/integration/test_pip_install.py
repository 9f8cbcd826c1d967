"""`pip install .` into a clean venv gives a working pdserver and pdtools, with their package data.

The pinned requirements are made into wheels once, in .cache/wheels (the first run downloads them, or takes them
from pip's cache); the install itself then runs offline from those wheels (--no-index), the way an operator
installs from a wheelhouse, and takes seconds rather than minutes."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.conftest import ADMIN_PASSWORD, REPO, free_port, remove_docker_objects, wait_until

WHEELHOUSE = REPO / ".cache" / "wheels"
STAMP = WHEELHOUSE / "requirements.txt"  # the requirements the wheels were made for


def ensure_wheelhouse() -> None:
    requirements = (REPO / "requirements.txt").read_text()
    if STAMP.exists() and STAMP.read_text() == requirements:
        return
    building = WHEELHOUSE.with_name(f"wheels.{os.getpid()}")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-r", str(REPO / "requirements.txt"), "setuptools",
                    "wheel", "-w", str(building)], check=True, timeout=900)
    (building / STAMP.name).write_text(requirements)
    shutil.rmtree(WHEELHOUSE, ignore_errors=True)
    os.replace(building, WHEELHOUSE)


def copy_source(target: Path) -> Path:
    """What `pip install .` needs of the worktree, copied: the build leaves nothing in the worktree."""
    target.mkdir()
    for name in ("setup.py", "requirements.txt"):
        shutil.copy(REPO / name, target / name)
    for package in ("pdserver", "pdtools"):
        shutil.copytree(REPO / package, target / package, ignore=shutil.ignore_patterns("__pycache__"))
    return target


def data_files(source: Path) -> set:
    """The packages' files that are not Python modules (the portal, the dashboard, schemas), relative paths."""
    return {str(p.relative_to(source)) for package in ("pdserver", "pdtools") for p in (source / package).rglob("*")
            if p.is_file() and p.suffix != ".py"}


def clean_environment() -> dict:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith(("PARADROP_", "VIRTUAL_"))}


def test_pip_install_gives_working_commands_and_a_node_that_serves_its_api_and_portal(tmp_path):
    ensure_wheelhouse()
    source = copy_source(tmp_path / "source")
    venv = tmp_path / "venv"
    env = clean_environment()
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-index", "--find-links", str(WHEELHOUSE),
                    str(source)], check=True, timeout=600, env=env, cwd=tmp_path)
    print(f"python -m venv + pip install (offline, from the wheelhouse): {time.monotonic() - started:.1f} s")

    def run(*argv):
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)

    pdserver, pdtools = str(venv / "bin" / "pdserver"), str(venv / "bin" / "pdtools")
    done = run(pdserver, "--help")
    assert done.returncode == 0 and "node" in done.stdout and "controller" in done.stdout, done.stderr
    done = run(pdtools, "--help")
    assert done.returncode == 0 and "chute" in done.stdout and "node" in done.stdout, done.stderr

    site = Path(run(str(venv / "bin" / "python"), "-c", "import pdserver, os; print(os.path.dirname("
                    "os.path.dirname(pdserver.__file__)))").stdout.strip())
    assert site.is_relative_to(venv), f"pdserver was imported from {site}, not from the new venv"
    expected = data_files(source)
    assert "pdserver/web/index.html" in expected
    assert expected <= data_files(site), f"missing from the install: {sorted(expected - data_files(site))}"

    unit = run(pdserver, "node", "--print-unit").stdout
    assert f"ExecStart={pdserver} node --state-dir /var/lib/paradrop" in unit

    state = tmp_path / "state"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    output = tmp_path / "node-output.log"
    with open(output, "wb") as out:
        proc = subprocess.Popen([pdserver, "node", "--state-dir", str(state), "--port", str(port)],
                                env={**env, "PARADROP_ADMIN_PASSWORD": ADMIN_PASSWORD}, cwd=tmp_path, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        def healthy():
            assert proc.poll() is None, f"pdserver exited with {proc.returncode}: {output.read_text()}"
            try:
                return requests.get(url + "/api/v1/health", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False
        wait_until(healthy, 30, message="the installed node's API")
        portal = requests.get(url + "/", timeout=5)
        assert portal.status_code == 200 and "<html" in portal.text.lower()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        remove_docker_objects(state)
