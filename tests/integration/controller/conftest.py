"""A controller in the test process: real SQLite or PostgreSQL (every test runs on both), real HTTP on loopback,
the fleet double (no router)."""
import pytest
import pytest_twisted

from tests import postgres
from tests.fleet_double import FleetDouble
from tests.integration.controller.helpers import ADMIN_PASSWORD, Clock, Running

# the PostgreSQL fixtures, for every test here
db_backend, postgres_cluster, postgres_database = postgres.db_backend, postgres.postgres_cluster, \
    postgres.postgres_database


@pytest.fixture
def database_url(db_backend, request):
    """``url(state_dir)``: the ``--db`` of a controller with that state dir: None (SQLite in the state dir) or a
    PostgreSQL database of its own, made on first use, dropped after the test."""
    if db_backend == "sqlite":
        yield lambda state_dir: None
        return
    cluster = request.getfixturevalue("postgres_cluster")
    made = {}

    def url(state_dir):
        if state_dir not in made:
            made[state_dir] = cluster.create_database()
        return cluster.url(made[state_dir])
    yield url
    for name in made.values():
        cluster.drop_database(name)


@pytest.fixture
def start_controller(tmp_path, database_url):
    """Start controllers on the test reactor (a Deferred of Running); all are stopped at teardown."""
    from twisted.internet import reactor

    from pdserver.controller.service import ControllerSettings, build_controller
    started = []

    def start(state_dir=None, **overrides):
        state_dir = state_dir or tmp_path / "controller"
        values = dict(port=0, admin_password=ADMIN_PASSWORD, max_connections=1000, db=database_url(state_dir))
        values.update(overrides)
        settings = ControllerSettings(state_dir, **values)
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
