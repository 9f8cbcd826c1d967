"""A controller in the test process: real SQLite, real HTTP on loopback, the fleet double (no router)."""
import pytest
import pytest_twisted

from tests.fleet_double import FleetDouble
from tests.integration.controller.helpers import ADMIN_PASSWORD, Clock, Running


@pytest.fixture
def start_controller(tmp_path):
    """Start controllers on the test reactor (a Deferred of Running); all are stopped at teardown."""
    from twisted.internet import reactor

    from pdserver.controller.service import ControllerSettings, build_controller
    started = []

    def start(state_dir=None, **overrides):
        values = dict(port=0, admin_password=ADMIN_PASSWORD, max_connections=1000)
        values.update(overrides)
        settings = ControllerSettings(state_dir or tmp_path / "controller", **values)
        clock, fleet = Clock(), FleetDouble()
        built = build_controller(settings, reactor, fleet=fleet, clock=clock)
        started.append(built)
        return built.service.startService().addCallback(lambda _: Running(built, fleet, clock))

    yield start
    for built in reversed(started):
        if built.service.running:
            pytest_twisted.blockon(built.service.stopService())


@pytest.fixture
def controller(start_controller):
    return pytest_twisted.blockon(start_controller(allow_registration=True))
