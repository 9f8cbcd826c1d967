"""Builds the controller's service tree: database, accounts, the WAMP side (embedded router, backend session,
fleet), and the HTTP API, started in that order and stopped in reverse."""
import dataclasses
import os
import secrets
from pathlib import Path
from typing import Optional

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from pdserver.api.connections import default_max_connections
from pdserver.api.site import HttpService
from pdserver.auth.hashing import HashingPool
from pdserver.auth.passwords import Passwords
from pdserver.auth.throttle import LoginThrottle
from pdserver.controller.accounts import ADMIN_USERNAME, Accounts, Tokens, thd_token_secret
from pdserver.controller.api.app import api_listener, build_router
from pdserver.controller.audit import Audit
from pdserver.controller.deployments import Deployments
from pdserver.controller.nodes import Nodes
from pdserver.controller.storage import DEFAULT_POOL_SIZE, ControllerStore, Database, database_location
from pdserver.controller.store import ChuteStore
from pdserver.secretfiles import random_password, write_secret_file
from pdserver.services import SequentialMultiService

log = Logger()
ADMIN_PASSWORD_ENV = "PARADROP_CONTROLLER_ADMIN_PASSWORD"


@dataclasses.dataclass
class ControllerSettings:
    state_dir: Path
    host: str = "127.0.0.1"
    port: int = 8000
    router_url: Optional[str] = None  # join this router instead of starting one
    router_ticket_file: Optional[Path] = None  # the controller's ticket on that router
    wamp_host: str = "127.0.0.1"
    wamp_port: int = 9086
    # What nodes and people are told to use, when the listen addresses are not that (0.0.0.0, a proxy, TLS in
    # front): the HTTP API's base URL (node provisioning, chute archive URLs) and the router's URL.
    public_url: Optional[str] = None
    public_wamp_url: Optional[str] = None
    db: Optional[str] = None  # a --db URL: sqlite: (the default, in the state dir) or postgresql://
    db_pool_size: int = DEFAULT_POOL_SIZE  # PostgreSQL connections of this backend
    allow_registration: bool = False
    admin_password: Optional[str] = None
    token_ttl: int = 24 * 3600
    login_failures_per_minute: int = 5
    # Provision attempts in flight or failed per client address and minute: nodes booting together behind one
    # NAT share an address, and a key is 32 random bytes, so this only has to stop a flood.
    provision_failures_per_minute: int = 30
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 256 * 1024 * 1024
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    max_connections_per_address: int = 256
    max_connections: int = dataclasses.field(default_factory=default_max_connections)

    @property
    def initial_password_path(self) -> Path:
        return self.state_dir / "initial-admin-password"

    @property
    def wamp_url(self) -> str:
        return self.router_url or f"ws://{self.wamp_host}:{self.wamp_port}/ws"

    @classmethod
    def from_environment(cls, **values) -> "ControllerSettings":
        return cls(admin_password=os.environ.get(ADMIN_PASSWORD_ENV) or None, **values)


@dataclasses.dataclass
class Controller:
    """Handles on the parts of a built controller, for the entry point and tests."""

    settings: ControllerSettings
    service: SequentialMultiService
    http: HttpService
    db: Database
    fleet_store: ControllerStore
    accounts: Accounts
    fleet: object

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.http.port}"


class Bootstrap(Service):
    """Once the database is open: the token secret, the first admin when there are no users, and, with an
    embedded router (no node can be connected before it starts), every node offline until it joins."""

    name = "bootstrap"

    def __init__(self, db: Database, tokens: Tokens, accounts: Accounts, settings: ControllerSettings):
        self._db, self._tokens, self._accounts, self._settings = db, tokens, accounts, settings

    @defer.inlineCallbacks
    def startService(self):
        self._tokens.secret = yield self._db.interaction(thd_token_secret)
        if self._settings.router_url is None:
            yield self._db.execute("UPDATE nodes SET online = ? WHERE online = ?", (False, True))
        path = self._settings.initial_password_path
        created = yield self._accounts.bootstrap_admin(self._settings.admin_password,
                                                       lambda pw: write_secret_file(path, pw + "\n"), random_password,
                                                       lambda: path.unlink(missing_ok=True))
        if created and self._settings.admin_password is None:
            log.warn("created controller admin {user}; its password is in {path} (mode 0600)", user=ADMIN_USERNAME,
                     path=str(path))
        elif created:
            log.info("created controller admin {user} with the password from {env}", user=ADMIN_USERNAME,
                     env=ADMIN_PASSWORD_ENV)
        super().startService()


def controller_ticket(settings: ControllerSettings) -> str:
    """The ticket the backend joins the router with: from --router-ticket-file, else made for the embedded router
    at each start (it is written only into that router's config)."""
    if settings.router_ticket_file is not None:
        return settings.router_ticket_file.read_text().strip()
    return secrets.token_urlsafe(32)


def _wamp_services(settings: ControllerSettings, reactor, store: ControllerStore):
    """The WAMP side (pdserver.controller.router, wamp, fleet): (fleet, services to start before the API)."""
    from pdserver.controller.fleet import Fleet
    from pdserver.controller.router import EmbeddedRouter
    from pdserver.controller.wamp import ControllerSession

    ticket = controller_ticket(settings)
    services = []
    if settings.router_url is None:
        services.append(EmbeddedRouter(reactor, settings.state_dir, settings.wamp_host, settings.wamp_port, ticket))
    fleet = Fleet(store, reactor)
    fleet.caller = ControllerSession(reactor, settings.wamp_url, ticket, store, fleet)
    return fleet, services + [fleet.caller]


def build_controller(settings: ControllerSettings, reactor, fleet=None, clock=None) -> Controller:
    """Wire the controller. ``fleet`` replaces the whole WAMP side (tests of the HTTP API pass a double);
    ``clock`` (unix seconds) is the reactor's unless given."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    clock = clock or reactor.seconds
    db = Database(database_location(settings.db, settings.state_dir, settings.db_pool_size), reactor)
    store = ControllerStore(db)
    audit = Audit(db, clock)
    hashing = HashingPool(reactor)
    tokens = Tokens(None, settings.token_ttl, clock)
    accounts = Accounts(db, audit, tokens, Passwords(), LoginThrottle(clock, settings.login_failures_per_minute, 60.0),
                        hashing.run, settings.allow_registration)
    wamp = []
    if fleet is None:
        fleet, wamp = _wamp_services(settings, reactor, store)

    def run_in_thread(f, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    http = None

    def controller_url() -> str:
        return settings.public_url or f"http://{settings.host}:{http.port}"

    def links() -> dict:
        return {"wamp_router": settings.public_wamp_url or settings.wamp_url, "controller": controller_url()}

    provision_throttle = LoginThrottle(clock, settings.provision_failures_per_minute, 60.0,
                                       address_limit=settings.provision_failures_per_minute)
    nodes = Nodes(db, audit, links, provision_throttle)
    chute_store = ChuteStore(db, audit, settings.state_dir / "store", run_in_thread, settings.max_upload_bytes)
    deployments = Deployments(db, audit, accounts, nodes, chute_store, fleet)
    if wamp:
        fleet.base_url = controller_url
    router = build_router(settings, accounts=accounts, nodes=nodes, store=chute_store, deployments=deployments,
                          audit=audit, events=fleet.events, node_events=fleet.node_events, links=links,
                          run_in_thread=run_in_thread, reactor=reactor,
                          router_joined=(lambda: fleet.caller.joined) if wamp else (lambda: None))
    http = HttpService(reactor, api_listener(settings, router, accounts, reactor, run_in_thread), settings.host,
                       settings.port, title="Controller API")
    service = SequentialMultiService()
    for child in (db, hashing, Bootstrap(db, tokens, accounts, settings), *wamp, http):
        child.setServiceParent(service)
    return Controller(settings, service, http, db, store, accounts, fleet)
