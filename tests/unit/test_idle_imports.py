"""What an idle node keeps out of its memory: the node is built in a fresh interpreter and its sys.modules read.

pyroute2 (about 9 MB resident), txdbus, jsonschema, dockerfile_parse and psutil are imported by the first
network change, the first system bus that may be there, the first validated document, the first image build and
the first reading of the hardware or telemetry, and Twisted's HTTP client with treq by the first readiness probe
of a web chute; a top-level import anywhere in the node's wiring would bring them
back at start, and this test names the package.
"""
import json
import subprocess
import sys

from tests.conftest import REPO

LAZY = ("pyroute2", "txdbus", "jsonschema", "dockerfile_parse", "psutil", "autobahn")
# Modules of packages an idle node does use: Twisted's HTTP client is for readiness probes of web chutes.
LAZY_MODULES = ("twisted.web.client", "treq")

# argv: the state dir. Starts logging and builds the node as `pdserver node` does (nothing started: that needs
# Docker), then asks for NetworkManager on a bus address whose socket does not exist; prints the modules and the
# answer.
BUILD_IDLE_NODE = r"""
import json, sys
from pathlib import Path

from twisted.internet import reactor

import pdserver.logs
import pdserver.main
from pdserver import settings as settings_module
from pdserver.node import build_node
from pdserver.sysconfig.networkmanager import NetworkManagerClient

state = Path(sys.argv[1])
pdserver.logs.start_logging(state / "log", stdout=sys.stderr)
node = build_node(settings_module.load(None, environ={}, state_dir=state, port=0, admin_password="idle-pass-123"),
                  reactor)
node.conn.close()
answers = []
NetworkManagerClient.connect(reactor, f"unix:path={state}/no-bus").addCallback(answers.append)
print(json.dumps({"modules": sorted(sys.modules), "networkmanager": answers}))
"""


def test_an_idle_node_imports_none_of_the_packages_only_changes_need(tmp_path):
    out = subprocess.run([sys.executable, "-c", BUILD_IDLE_NODE, str(tmp_path / "state")], capture_output=True,
                         text=True, timeout=60, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    modules = seen["modules"]
    assert "pdserver.node" in modules and "docker" in modules  # the node was really built
    loaded = sorted({m.split(".")[0] for m in modules} & set(LAZY))
    assert loaded == [], f"an idle node imported {loaded}"
    assert sorted(set(modules) & set(LAZY_MODULES)) == []
    assert seen["networkmanager"] == [None]  # no bus: no NetworkManager, answered at once


def test_asking_for_networkmanager_on_a_bus_that_may_be_there_imports_txdbus(tmp_path):
    """The other side of the check above: the bus test cannot pass because txdbus is never imported at all."""
    (tmp_path / "bus").touch()
    probe = ("import sys; from twisted.internet import reactor\n"
             "from pdserver.sysconfig.networkmanager import NetworkManagerClient\n"
             f"NetworkManagerClient.connect(reactor, 'unix:path={tmp_path}/bus', timeout=0.1)\n"
             "print('txdbus' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=str(REPO))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "True"
