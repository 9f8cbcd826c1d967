"""The WAMP router the controller runs by default: crossbar as a supervised child, configured from our settings.

crossbar lives in a venv of its own (it pins old versions of packages we share), so it is a child process, never
an import. Its configuration is pure data built here: one router worker, realm ``paradrop``, one websocket path.
Nodes authenticate with WAMP-CRA through the controller's dynamic authenticator and act under a dynamic
authorizer; the controller itself joins with a ticket that only this configuration holds.
"""
import json
import os
import re
import signal
from pathlib import Path
from typing import Optional, Tuple

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp.types import ComponentConfig
from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.internet.endpoints import HostnameEndpoint
from twisted.logger import Logger

from pdserver.cloud import protocol
from pdserver.controller.router_worker import paradrop_router
from pdserver.errors import Unavailable
from pdserver.sysconfig.supervisor import ChildSpec, Supervisor

REPO = Path(__file__).resolve().parent.parent.parent
CHILD_NAME = "crossbar"
WS_PATH = "ws"
BACKLOG = 4096  # connect storms: a fleet reconnecting after a router restart
AUTO_PING_INTERVAL_MS = 30000  # a node that vanished without a close is seen offline within about 40 s
AUTO_PING_TIMEOUT_MS = 10000
MAX_MESSAGE_SIZE = 1024 * 1024  # crossbar's default is 16 MiB; our largest message (a state of 1000 chutes) is ~100 KB
PROBE_TIMEOUT = 3.0  # seconds one readiness probe (connect + join) may take
PROBE_INTERVAL = 0.2
STALE_POLL = 0.05  # seconds between checks that a stale crossbar is gone
TICKET_VARIABLE = "PARADROP_CONTROLLER_TICKET"  # where a router run on its own finds the controller's ticket
WORKER_DIR = Path(paradrop_router.__file__).parent  # what the router worker imports paradrop_router from
ENV_REFERENCE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # crossbar's form of a value read from its environment

log = Logger()


def crossbar_path() -> str:
    """The crossbar executable: PARADROP_CROSSBAR, else the repository's own ``.venv-crossbar``."""
    return os.environ.get("PARADROP_CROSSBAR") or str(REPO / ".venv-crossbar" / "bin" / "crossbar")


def router_url(host: str, port: int) -> str:
    host = f"[{host}]" if ":" in host else host
    return f"ws://{host}:{port}/{WS_PATH}"


def router_config(listen_host: str, listen_port: int, controller_ticket: str, web_root: str = "../www",
                  tls: Optional[Tuple[str, str]] = None, worker_path: str = str(WORKER_DIR)) -> dict:
    """crossbar's config.json as a dict. The node role's permissions come from the controller's authorizer on
    every action: crossbar caches authorizations per (realm, role, uri, action), never per session, so a cache
    entry one node earned would let another node use it.

    ``controller_ticket`` is the ticket, or ``"${VARIABLE}"``: crossbar then reads it from its environment, and
    the config holds no secret (a router run on its own, from a file kept with the deployment's other
    configuration). ``web_root``: the directory served at ``/`` (relative to crossbar's cbdir). ``tls``: (key
    file, certificate file) to serve wss:// instead of ws://. ``worker_path``: the directory holding
    paradrop_router.py as crossbar finds it (absolute, or relative to its cbdir): the router worker runs its
    component, which sets the worker's garbage-collection policy."""
    if not isinstance(controller_ticket, str) or not (len(controller_ticket) >= 16 or
                                                      ENV_REFERENCE.fullmatch(controller_ticket)):
        raise ValueError("the controller ticket is a string of at least 16 characters or a ${VARIABLE}")
    endpoint = {"type": "tcp", "interface": listen_host, "port": listen_port, "backlog": BACKLOG}
    if tls is not None:
        endpoint["tls"] = {"key": tls[0], "certificate": tls[1]}
    everything = {"call": True, "register": True, "publish": True, "subscribe": True}
    return {
        "version": 2,
        "controller": {},
        "workers": [{
            "type": "router",
            "options": {"pythonpath": [worker_path]},
            "components": [{"type": "class", "classname": "paradrop_router.RouterWorker", "realm": protocol.REALM,
                            "role": paradrop_router.ROLE}],
            "realms": [{
                "name": protocol.REALM,
                "roles": [
                    {"name": protocol.CONTROLLER_ROLE,
                     "permissions": [{"uri": "", "match": "prefix", "allow": everything,
                                      "disclose": {"caller": False, "publisher": False}, "cache": True}]},
                    {"name": protocol.NODE_ROLE, "authorizer": protocol.AUTHORIZE},
                    {"name": paradrop_router.ROLE,
                     "permissions": [{"uri": paradrop_router.ROUTER_PREFIX, "match": "prefix",
                                      "allow": {"call": False, "register": True, "publish": False,
                                                "subscribe": False},
                                      "disclose": {"caller": False, "publisher": False}, "cache": True}]},
                ],
            }],
            "transports": [{
                "type": "web",
                "endpoint": endpoint,
                "paths": {
                    "/": {"type": "static", "directory": web_root},
                    WS_PATH: {
                        "type": "websocket",
                        "serializers": ["json", "msgpack", "cbor"],
                        "options": {"auto_ping_interval": AUTO_PING_INTERVAL_MS,
                                    "auto_ping_timeout": AUTO_PING_TIMEOUT_MS,
                                    "max_message_size": MAX_MESSAGE_SIZE, "enable_webstatus": False},
                        "auth": {
                            "wampcra": {"type": "dynamic", "authenticator": protocol.AUTHENTICATE},
                            "ticket": {"type": "static", "principals": {
                                protocol.CONTROLLER_AUTHID: {"ticket": controller_ticket,
                                                             "role": protocol.CONTROLLER_ROLE}}},
                        },
                    },
                },
            }],
        }],
    }


def _started(pid: int, proc: Path) -> Optional[float]:
    """When process ``pid`` started (seconds since the epoch), None when it is gone or a zombie."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
        boot = next(int(line.split()[1]) for line in (proc / "stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, ValueError, StopIteration):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def stale_crossbar(cbdir: Path, proc: Path = Path("/proc")) -> Optional[tuple]:
    """(pid, start time) of a crossbar that a previous run (a controller killed with -9) left running on ``cbdir``:
    the process its node.pid names, alive, a crossbar, and started before node.pid was written (not a later process
    that got the same pid). crossbar renames its processes, so the supervisor's own pid files cannot know it."""
    path = cbdir / "node.pid"
    try:
        pid = int(json.loads(path.read_text())["pid"])
        written = path.stat().st_mtime
        cmdline = (proc / str(pid) / "cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    started = _started(pid, proc)
    if started is None or b"crossbar" not in cmdline or started > written + 1.0:
        return None
    return pid, started


class _Probe(ApplicationSession):
    """Joins as the controller and leaves at once: the router runs and accepts our configuration."""

    def onConnect(self):
        self.join(self.config.realm, authmethods=["ticket"], authid=protocol.CONTROLLER_AUTHID)

    def onChallenge(self, challenge):
        return self.config.extra["ticket"]

    def onJoin(self, details):
        self.config.extra["joined"] = True
        self.leave()

    def onLeave(self, details):
        if not self.config.extra.get("joined"):
            self.config.extra["reason"] = details.reason
        self.disconnect()

    def onDisconnect(self):
        done = self.config.extra["done"]
        if not done.called:
            done.callback(self.config.extra.get("joined", False))


def probe(reactor, host: str, port: int, ticket: str, timeout: float = PROBE_TIMEOUT) -> defer.Deferred:
    """Fires True when a controller session could join the router at host:port, False otherwise."""
    done = defer.Deferred()
    extra = {"ticket": ticket, "done": done}
    factory = WampWebSocketClientFactory(lambda: _Probe(ComponentConfig(protocol.REALM, extra)),
                                         url=router_url(host, port))
    connected = []
    connecting = HostnameEndpoint(reactor, host, port, timeout=timeout).connect(factory)
    connecting.addCallbacks(connected.append, lambda _: done.called or done.callback(False))
    timer = reactor.callLater(timeout, lambda: done.called or done.callback(False))

    def finish(joined):
        if timer.active():
            timer.cancel()
        if not connecting.called:
            connecting.cancel()
        for proto in connected:
            proto.transport.loseConnection()
        return joined
    return done.addCallback(finish)


class EmbeddedRouter(Service):
    """crossbar under our supervisor: restarted when it dies, its output in our log, stopped with us.

    Its directory is ``<state>/router``: ``.crossbar/config.json`` (0600: it holds the controller's ticket),
    ``www`` (the web root crossbar wants), ``run`` (the supervisor's pid file)."""

    def __init__(self, reactor, state_dir: Path, listen_host: str, listen_port: int, controller_ticket: str,
                 crossbar: Optional[str] = None, stop_timeout: float = 10.0, loglevel: str = "warn"):
        self._reactor = reactor
        self.dir = Path(state_dir) / "router"
        self.host = listen_host
        self.port = listen_port
        self._ticket = controller_ticket
        self._crossbar = crossbar or crossbar_path()
        self._loglevel = loglevel  # crossbar logs every session's join and leave at info: a fleet's worth of lines
        self._stop_timeout = stop_timeout
        self._supervisor = Supervisor(reactor, self.dir / "run", stable_after=30.0, stop_timeout=stop_timeout)
        self._starting = defer.succeed(None)

    @property
    def local_host(self) -> str:
        """Where this machine reaches the router (a wildcard listen address is reached on loopback)."""
        return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(self.host, self.host)

    @property
    def url(self) -> str:
        """The URL the controller's own session joins."""
        return router_url(self.local_host, self.port)

    @property
    def cbdir(self) -> Path:
        return self.dir / ".crossbar"

    def write_config(self) -> Path:
        config = router_config(self.host, self.port, self._ticket)
        self.cbdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        (self.dir / "www").mkdir(exist_ok=True)
        os.chmod(self.cbdir, 0o700)
        path = self.cbdir / "config.json"
        tmp = self.cbdir / ".config.json.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(config, f, indent=2)
        tmp.replace(path)
        return path

    def spec(self) -> ChildSpec:
        argv = (self._crossbar, "start", "--cbdir", str(self.cbdir), "--config", "config.json",
                "--color", "false", "--logformat", "standard", "--loglevel", self._loglevel)
        env = {"HOME": str(self.dir), "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}
        return ChildSpec(CHILD_NAME, argv, env)

    def startService(self):
        super().startService()
        self.write_config()
        self._starting = self._stop_stale()
        self._starting.addCallback(lambda _: self._start_child())

    def _start_child(self):
        if not self.running:
            return
        self._supervisor.ensure(self.spec()).addErrback(
            lambda f: log.error("could not start crossbar: {error}", error=f.getErrorMessage()))
        self._supervisor.startService()
        log.info("starting the WAMP router at {url}", url=self.url)

    @defer.inlineCallbacks
    def _stop_stale(self):
        stale = stale_crossbar(self.cbdir)
        if stale is None:
            return
        pid, started = stale
        log.warn("stopping crossbar (pid {pid}) left running by a previous controller", pid=pid)
        os.kill(pid, signal.SIGTERM)
        deadline = self._reactor.seconds() + self._stop_timeout
        while _started(pid, Path("/proc")) == started:
            if deadline is not None and self._reactor.seconds() >= deadline:
                log.warn("crossbar (pid {pid}) ignored TERM; killing it", pid=pid)
                os.kill(pid, signal.SIGKILL)
                deadline = None
            yield task.deferLater(self._reactor, STALE_POLL, lambda: None)

    @defer.inlineCallbacks
    def stopService(self):
        """Fires when crossbar (and with it its workers) has exited."""
        super().stopService()
        yield self._starting
        yield self._supervisor.stopService()

    def status(self):
        return self._supervisor.children().get(CHILD_NAME)

    @defer.inlineCallbacks
    def when_ready(self, timeout: float = 60.0):
        """Fires once a controller session can join; Unavailable after ``timeout`` seconds."""
        deadline = self._reactor.seconds() + timeout
        while self.running:
            if (yield probe(self._reactor, self.local_host, self.port, self._ticket)):
                return self.url
            if self._reactor.seconds() >= deadline:
                break
            yield task.deferLater(self._reactor, PROBE_INTERVAL, lambda: None)
        raise Unavailable(f"the WAMP router at {self.url} did not become ready", field="router")
