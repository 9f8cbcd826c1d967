"""The edge node: its service tree, built from settings. Entry of ``pdserver node``."""
import dataclasses
import os
import signal
import socket

from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger

from pdserver.api.app import add_resources, api_listener
from pdserver.api.gateways import ChuteGateways
from pdserver.api.routing import Router
from pdserver.api.site import HttpService
from pdserver.auth.audit import AuditLog
from pdserver.auth.hashing import HashingPool
from pdserver.auth.passwords import Passwords
from pdserver.auth.service import Auth
from pdserver.auth.throttle import LoginThrottle
from pdserver.auth.tokens import TokenIssuer
from pdserver.auth.users import UserStore
from pdserver.changes.journal import ChangeJournal
from pdserver.changes.queue import ChangeQueue
from pdserver.chutes.naming import LABEL_NODE, ChuteNames
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.requests import ChuteRequests
from pdserver.chutes.store import ChuteStore
from pdserver.cloud.commands import CommandLog, RemoteCommands
from pdserver.cloud.link import CloudLink
from pdserver.cloud.provisioning import ProvisionFile
from pdserver.containers.engine import DockerEngine
from pdserver.execution.chute_actions import ChuteActions
from pdserver.execution.chute_handlers import ChuteHandlers
from pdserver.execution.executor import Executor
from pdserver.execution.handlers import HostConfigHandlers, RecoveryHandler, host_actions
from pdserver.execution.host_power import HostPowerHandlers
from pdserver.monitor.chutes import ChuteMonitor
from pdserver.monitor.deaths import DeathWatch, queue_changing
from pdserver.monitor.events import ContainerEvents
from pdserver.monitor.reattach import InterfaceReattach
from pdserver.monitor.status import StatusHub
from pdserver.monitor.telemetry import Telemetry
from pdserver.monitor.usage import ServiceUsage
from pdserver.services import SequentialMultiService
from pdserver.secretfiles import load_or_create_secret, random_password, write_secret_file
from pdserver.settings import Settings
from pdserver.ops.state_dir import known_schema, relocate_sources
from pdserver.storage import check_versions, open_database
from pdserver.chutes.networks import NetworkFacts
from pdserver.execution.network_actions import NetworkActions
from pdserver.sysconfig.docker_forward import DockerForward
from pdserver.sysconfig.host_network import HostNetwork
from pdserver.sysconfig.host_power import LogindPower
from pdserver.sysconfig.hostconfig import HostConfigStore, thd_first_start
from pdserver.sysconfig.nm_service import NetworkManagerService
from pdserver.sysconfig.supervisor import Supervisor

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
    cloud: CloudLink

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


def build_node(settings: Settings, reactor, handlers=None, host_power=None) -> Node:
    """Wire the node, part by part. ``handlers`` adds change types (tests use it for controllable changes);
    ``host_power`` replaces logind on the system bus (tests give it a bus of their own)."""
    prepare_state_dir(settings)
    conn = open_database(settings.database_path)
    check_versions(conn, known_schema())  # before any store migrates its part
    clock = reactor.seconds
    audit = AuditLog(conn, clock)
    chutes = ChuteStore(conn)
    relocate_sources(chutes, settings.chute_sources_dir)
    hostconfig = HostConfigStore(settings.hostconfig_path)
    names = ChuteNames(load_or_create_secret(settings.node_id_path, nbytes=6))
    queue = ChangeQueue(ChangeJournal(conn), {}, reactor)

    hashing = HashingPool(reactor)
    tokens = TokenIssuer(load_or_create_secret(settings.secret_path), settings.token_ttl, clock)
    auth = Auth(UserStore(conn, clock), tokens, Passwords(),
                LoginThrottle(clock, settings.login_failures_per_minute, 60.0), audit, clock, hashing.run,
                LiveDeployments(chutes, queue).token_valid)
    bootstrap_admin(settings, auth)

    engine = DockerEngine(reactor, owner_label=LABEL_NODE)
    in_thread = run_in_thread(reactor)
    router = Router(auth, settings.max_body_bytes, settings.max_upload_bytes)
    http = HttpService(reactor, api_listener(settings, router, auth, reactor, in_thread), settings.host,
                       settings.port)
    gateways = ChuteGateways(http, engine.network_gateway, lambda: [names.network(r.name) for r in chutes.list()])
    policy = ChutePolicySource(hostconfig, http, settings)

    chute_actions = ChuteActions(engine, chutes, reactor, settings.chute_build_dir, names.node_labels(),
                                 chute_environment(settings, gateways, tokens), settings.ready_grace,
                                 settings.ready_timeout, update_drain=settings.update_drain)
    supervisor = Supervisor(reactor, settings.state_dir / "run" / "children",
                            on_event=ChildEvents(audit).event)
    network_manager = NetworkManagerService(reactor, settings.dbus_system_address)
    docker_forward = DockerForward(reactor, settings.network_netns)
    network = HostNetwork(reactor, in_thread, supervisor, settings.state_dir, settings.network_netns,
                          network_manager, docker_forward)
    network_facts = lambda: NetworkFacts.from_hostconfig(hostconfig.load())  # noqa: E731
    executor = Executor({**host_actions(hostconfig), **chute_actions.actions(),
                         **NetworkActions(network, engine).actions()}, after_step=crash_hook(settings))
    chute_handlers = ChuteHandlers(executor, chutes, engine, reactor, names, policy.current,
                                   settings.chute_sources_dir, lambda: pending_sources(queue), network_facts)
    chute_requests = ChuteRequests(queue, chutes, policy.current, settings.chute_sources_dir,
                                   settings.max_upload_bytes, in_thread, network_facts)
    telemetry = Telemetry(in_thread, reactor)
    events = ContainerEvents(reactor, engine, f"{LABEL_NODE}={names.node_id}")
    deaths = DeathWatch(events, chutes, queue_changing(queue), audit.record)
    monitor = ChuteMonitor(engine, names, reactor, events, deaths, ServiceUsage(in_thread, reactor))
    cloud = CloudLink(reactor, ProvisionFile(settings.provision_path), settings.cloud_retry,
                      RemoteCommands(chute_requests, queue, chutes, CommandLog(conn), audit, reactor), queue, chutes,
                      telemetry, lambda: hostconfig.load().get("telemetry", {}), audit, events=events,
                      monitor=monitor)
    host_power = host_power or LogindPower(reactor, settings.allow_host_power, settings.dbus_system_address)
    queue.plug({**HostConfigHandlers(executor, hostconfig, names, chutes).handlers(), **chute_handlers.handlers(),
                **HostPowerHandlers(host_power, reactor, audit.record).handlers(), **(handlers or {})},
               recover=RecoveryHandler(executor),
               on_finished=AfterChange(audit, gateways, chute_handlers.finished, monitor.forget,
                                       cloud.change_finished).finished)

    add_resources(router, settings=settings, auth=auth, queue=queue, hostconfig_store=hostconfig, chutes=chutes,
                  monitor=monitor, chute_requests=chute_requests, cloud_link=cloud,
                  run_in_thread=in_thread, clock=reactor, started_at=reactor.seconds(), names=names, network=network,
                  telemetry=telemetry,
                  status_hub=StatusHub(events, deaths, telemetry, reactor, lambda: monitor.usage(chutes.list())),
                  network_facts=network_facts, host_power=host_power)

    root = SequentialMultiService()
    first_start = FirstStart(in_thread, hostconfig, settings.network_netns)
    reattach = InterfaceReattach(engine, events, network, chutes, names, network_facts)
    for part in (hashing, engine, events, network_manager, docker_forward, first_start, supervisor, queue, http,
                 gateways, ReconcileAtStart(queue), reattach, cloud):
        part.setServiceParent(root)
    return Node(settings, root, http, queue, auth, conn, engine, chutes, cloud)


def prepare_state_dir(settings: Settings) -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(settings.state_dir, 0o700)
    settings.chute_sources_dir.mkdir(parents=True, exist_ok=True)
    (settings.state_dir / "run" / "children").mkdir(parents=True, exist_ok=True)


class ChildEvents:
    """Child-process events worth an audit record: a crash loop starts or ends (others go to the log)."""

    def __init__(self, audit: AuditLog):
        self._audit = audit

    def event(self, name: str, event: str, details: dict) -> None:
        if event in ("crash_loop", "recovered"):
            self._audit.record("node", f"child_{event}", "failed" if event == "crash_loop" else "ok",
                               target=name, detail=details)


def run_in_thread(reactor):
    def run(f, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)
    return run


def bootstrap_admin(settings: Settings, auth: Auth) -> None:
    created = auth.bootstrap_admin(settings.admin_password,
                                   lambda pw: write_secret_file(settings.initial_password_path, pw + "\n"),
                                   random_password)
    if created is None:
        return
    if settings.admin_password is None:
        log.warn("created user 'paradrop' (owner); its password is in {path} (mode 0600)",
                 path=str(settings.initial_password_path))
    else:
        log.info("created user 'paradrop' (owner) with the password from PARADROP_ADMIN_PASSWORD")


class LiveDeployments:
    """Which deployments of a chute are live: the installed one, and the one its running change is bringing
    up (a starting chute may call the API already). A chute's token is valid for those only."""

    def __init__(self, chutes: ChuteStore, queue: ChangeQueue):
        self._chutes = chutes
        self._queue = queue

    def token_valid(self, chute: str, deployment: int) -> bool:
        record = self._chutes.get(chute)
        if record is not None and record.deployment == deployment:
            return True
        running = self._queue.running_change
        return running == deployment and self._queue.get(running).target == chute


class ChutePolicySource:
    """The node's chute policy as it stands: the host config's switches and the port the API really uses."""

    def __init__(self, hostconfig: HostConfigStore, http: HttpService, settings: Settings):
        self._hostconfig = hostconfig
        self._http = http
        self._settings = settings

    def current(self) -> NodePolicy:
        return NodePolicy.from_config(self._hostconfig.load(), self._http.port or self._settings.port,
                                      self._settings.chute_default_memory)


class AfterChange:
    """What follows every change: its audit record, the removal of an upload a failed change leaves, and the
    API's listeners following the chutes' networks, fresh container states for the status routes, and the
    controller told (the cloud link)."""

    def __init__(self, audit: AuditLog, gateways: ChuteGateways, discard_upload, forget_states, report):
        self._audit = audit
        self._gateways = gateways
        self._discard_upload = discard_upload
        self._forget_states = forget_states
        self._report = report

    def finished(self, change) -> None:
        detail = {"change_id": change.id, **({"needs_attention": True} if change.needs_attention else {})}
        self._audit.record(change.user, f"change:{change.type}", change.state.value, target=change.target,
                           detail=detail)
        self._discard_upload(change)
        self._gateways.sync()
        self._forget_states()
        self._report(change)


def pending_sources(queue: ChangeQueue):
    """Project dirs that queued or running changes will still read."""
    return [c.params["source_dir"] for c in queue.unfinished() if c.params.get("source_dir")]


class FirstStart(Service):
    """Before any change runs: without a host config, write the first one from the interfaces present; it
    claims none that carries an address or the default route (hostconfig.new_config)."""

    def __init__(self, in_thread, hostconfig: HostConfigStore, netns):
        self._in_thread = in_thread
        self._hostconfig = hostconfig
        self._netns = netns

    def startService(self):
        super().startService()
        d = self._in_thread(thd_first_start, self._hostconfig, self._netns)
        d.addCallback(lambda written: written and log.info(
            "first start: wrote {path} from the interfaces present (WAN {wan}, LAN {lan})",
            path=str(self._hostconfig.path), wan=written["wan"].get("interface"),
            lan=written["lan"]["interfaces"]))
        d.addErrback(lambda f: log.failure("first start: could not write a host config; the defaults apply", f))
        return d


class ReconcileAtStart(Service):
    """After crash recovery and once the API listens: queue one reconcile change (chutes come back, orphans
    go)."""

    def __init__(self, queue: ChangeQueue):
        self._queue = queue

    def startService(self):
        super().startService()
        self._queue.submit("reconcile", None, None)


def chute_environment(settings: Settings, gateways: ChuteGateways, tokens: TokenIssuer):
    """The PARADROP_* variables that depend on the node: how a chute reaches the Edge API (on its network's
    gateway, where the gateways service makes the API listen), and its token."""
    router_id = settings.pdid or socket.gethostname()

    @defer.inlineCallbacks
    def environment(chute: str, deployment: int, network: str):
        gateway = yield gateways.serve(network)
        base = f"http://{gateway}:{gateways.api_port}"
        return {"PARADROP_ROUTER_ID": router_id, "PARADROP_BASE_URL": base, "PARADROP_API_URL": base + "/api/v1",
                "PARADROP_WS_API_URL": f"ws://{gateway}:{gateways.api_port}/ws",
                "PARADROP_API_TOKEN": tokens.issue_chute(chute, deployment)}
    return environment
