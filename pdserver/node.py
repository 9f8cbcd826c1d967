"""The edge node: its service tree, built from settings. Entry of ``pdserver node``."""
import dataclasses
import os
import signal
import socket

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from pdserver.api.app import build_router
from pdserver.api.site import ApiSite, HttpService
from pdserver.auth.audit import AuditLog
from pdserver.auth.hashing import HashingPool
from pdserver.auth.passwords import Passwords
from pdserver.auth.service import Auth
from pdserver.auth.throttle import LoginThrottle
from pdserver.auth.tokens import TokenIssuer
from pdserver.auth.users import UserStore
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.queue import ChangeQueue
from pdserver.chutes import naming
from pdserver.chutes.naming import LABEL_NODE
from pdserver.chutes.store import ChuteStore
from pdserver.containers.engine import DockerEngine
from pdserver.execution.chute_actions import ChuteActions
from pdserver.execution.chute_handlers import ChuteHandlers
from pdserver.execution.executor import Executor
from pdserver.execution.handlers import HostConfigHandlers, RecoveryHandler, host_actions
from pdserver.monitor.chutes import ChuteMonitor
from pdserver.services import SequentialMultiService
from pdserver.secretfiles import load_or_create_secret, random_password, write_secret_file
from pdserver.settings import Settings
from pdserver.storage import open_database
from pdserver.sysconfig.hostconfig import HostConfigStore

log = Logger()


@dataclasses.dataclass
class Node:
    """Handles on the parts of a built node, for the entry point and for tests."""

    settings: Settings
    service: SequentialMultiService
    http: HttpService
    queue: ChangeQueue
    auth: Auth
    conn: object
    engine: DockerEngine
    chutes: ChuteStore

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.http.port}"


def crash_hook(settings: Settings):
    """Fault injection for crash tests: kill -9 ourselves after step N, only when test faults are on."""
    if not settings.test_faults or settings.crash_after_step is None:
        return None
    target = settings.crash_after_step

    def after_step(index: int) -> None:
        if index == target:
            log.warn("test fault: killing the daemon after step {index}", index=index)
            os.kill(os.getpid(), signal.SIGKILL)
    return after_step


def build_node(settings: Settings, reactor, handlers=None) -> Node:
    """Wire the node. ``handlers`` adds change types (tests use it for controllable changes)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    conn = open_database(settings.database_path)
    clock = reactor.seconds

    def run_in_thread(f, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    audit = AuditLog(conn, clock)
    chutes = ChuteStore(conn)

    def chute_token_valid(name: str, deployment: int) -> bool:
        """Current deployment, or the one the running change is bringing up (it may call us while starting)."""
        record = chutes.get(name)
        if record is not None and record.deployment == deployment:
            return True
        running = queue.running_change
        return running == deployment and queue.get(running).target == name

    tokens = TokenIssuer(load_or_create_secret(settings.secret_path), settings.token_ttl, clock)
    hashing = HashingPool(reactor)
    auth = Auth(UserStore(conn, clock), tokens, Passwords(), LoginThrottle(clock, settings.login_failures_per_minute, 60.0),
                audit, clock, hashing.run, chute_token_valid)
    created = auth.bootstrap_admin(settings.admin_password,
                                   lambda pw: write_secret_file(settings.initial_password_path, pw + "\n"),
                                   random_password)
    if created is not None:
        if settings.admin_password is None:
            log.warn("created user 'paradrop' (owner); its password is in {path} (mode 0600)",
                     path=str(settings.initial_password_path))
        else:
            log.info("created user 'paradrop' (owner) with the password from PARADROP_ADMIN_PASSWORD")

    hostconfig_store = HostConfigStore(settings.hostconfig_path)
    engine = DockerEngine(reactor)
    settings.chute_sources_dir.mkdir(parents=True, exist_ok=True)
    node_label = {LABEL_NODE: load_or_create_secret(settings.node_id_path, nbytes=6)}
    chute_actions = ChuteActions(engine, chutes, reactor, settings.chute_build_dir, node_label,
                                 chute_environment(settings, engine, tokens, lambda: http), settings.ready_grace,
                                 settings.ready_timeout)
    executor = Executor({**host_actions(hostconfig_store), **chute_actions.actions()},
                        after_step=crash_hook(settings))
    chute_handlers = ChuteHandlers(executor, chutes, engine, reactor, node_label, settings.chute_sources_dir,
                                   lambda: pending_sources(queue))
    change_handlers = {**HostConfigHandlers(executor, hostconfig_store).handlers(),
                       **chute_handlers.handlers(),
                       **(handlers or {})}

    def change_finished(change):
        audit.record(change.user, f"change:{change.type}", change.state.value, target=change.target,
                     detail={"change_id": change.id, **({"needs_attention": True} if change.needs_attention else {})})
        chute_handlers.finished(change)

    queue = ChangeQueue(ChangeJournal(conn), change_handlers, reactor, recover=RecoveryHandler(executor),
                        on_finished=change_finished)

    router = build_router(settings=settings, auth=auth, queue=queue, hostconfig_store=hostconfig_store,
                          chutes=chutes, monitor=ChuteMonitor(engine), run_in_thread=run_in_thread,
                          clock=reactor, started_at=reactor.seconds())
    http = HttpService(reactor, ApiSite(router.app.resource(), settings.max_body_bytes, settings.max_upload_bytes,
                                        reactor=reactor), settings.host, settings.port)

    root = SequentialMultiService()
    hashing.setServiceParent(root)
    queue.setServiceParent(root)
    http.setServiceParent(root)
    ReconcileAtStart(queue, chutes, engine, http).setServiceParent(root)
    return Node(settings, root, http, queue, auth, conn, engine, chutes)


def pending_sources(queue: ChangeQueue):
    """Project dirs that queued or running changes will still read."""
    return [c.params["source_dir"] for c in queue.unfinished() if c.params.get("source_dir")]


class ReconcileAtStart(Service):
    """After crash recovery and once the API listens: serve the API to installed chutes again and queue
    one reconcile change (chutes come back, orphans go)."""

    log = Logger()

    def __init__(self, queue: ChangeQueue, chutes: ChuteStore, engine, http: HttpService):
        self._queue = queue
        self._chutes = chutes
        self._engine = engine
        self._http = http

    @defer.inlineCallbacks
    def startService(self):
        super().startService()
        self._queue.submit("reconcile", None, None)
        for record in self._chutes.list():
            try:
                gateway = yield self._engine.network_gateway(naming.network_name(record.name))
                yield self._http.listen_also(gateway)
            except Exception as e:
                self.log.info("chute {chute} cannot reach the API yet: {error}", chute=record.name, error=str(e))


def chute_environment(settings: Settings, engine, tokens: TokenIssuer, get_http):
    """The PARADROP_* variables that depend on the node: how a chute reaches the Edge API, and its token.

    The API is served on the chute network's gateway address, so chutes reach it there.
    """
    router_id = settings.pdid or socket.gethostname()

    @defer.inlineCallbacks
    def environment(chute: str, deployment: int, network: str):
        gateway = yield engine.network_gateway(network)
        http = get_http()
        yield http.listen_also(gateway)
        base = f"http://{gateway}:{http.port}"
        return {"PARADROP_ROUTER_ID": router_id, "PARADROP_BASE_URL": base, "PARADROP_API_URL": base + "/api/v1",
                "PARADROP_WS_API_URL": f"ws://{gateway}:{http.port}/ws",
                "PARADROP_API_TOKEN": tokens.issue_chute(chute, deployment)}
    return environment
