"""Readiness of a started container: still running after a grace period, Docker health check healthy,
and (optionally) an HTTP answer from its web port on its own address.

Time passes only through the injected reactor. The HTTP probe goes to the container's address on its
network, never through a published port: a connection through docker-proxy before the container's veth
is up loses the first ARP lookup and costs a one-second kernel retry (DESIGN.md section 9).
"""
from typing import Callable, Optional

from twisted.internet import defer, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from pdserver.containers.errors import NotReady
from pdserver.containers.spec import ContainerState

FIRST_POLL = 0.005  # a container that is ready at once is seen at once; the interval doubles from here...
POLL_INTERVAL = 0.1  # ...up to this
PROBE_TIMEOUT = 1.0
_EPSILON = 1e-6  # clocks add floats: 10 x 0.1 s is a hair under 1 s

# probe(reactor, url, timeout) -> Deferred that fires on any HTTP answer and fails otherwise
Probe = Callable[[object, str, float], defer.Deferred]


def wait_ready(engine, name: str, network: Optional[str], reactor, grace: float = 1.0, timeout: float = 30.0,
               web_port: Optional[int] = None, service: Optional[str] = None,
               probe: Optional[Probe] = None) -> defer.Deferred:
    """Fires with the container's ContainerState once it is ready, or fails with NotReady(reason).

    Ready means: observed running (not restarted since the first look) ``grace`` seconds after the call,
    its health check (if it has one) "healthy", and, when ``web_port`` is given, any HTTP answer from
    http://<its address on ``network``>:<web_port>/. An exit, a restart or an unhealthy check fails at
    once; otherwise the wait ends after ``timeout`` seconds. ``service`` names the container in reasons."""
    who = f"service {service}" if service else f"container {name}"
    return defer.ensureDeferred(_Wait(engine, name, network, reactor, grace, timeout, web_port, who,
                                      probe or http_probe).run())


class _Wait:
    def __init__(self, engine, name, network, reactor, grace, timeout, web_port, who, probe):
        self.engine = engine
        self.name = name
        self.network = network
        self.reactor = reactor
        self.grace = grace
        self.timeout = timeout
        self.web_port = web_port
        self.who = who
        self.probe = probe
        self.first: Optional[ContainerState] = None
        self.answered = web_port is None
        self.http_error = "no address yet"

    async def run(self) -> ContainerState:
        start = self.reactor.seconds()
        deadline = start + self.timeout
        interval = FIRST_POLL
        while True:
            state = await self.engine.inspect_container(self.name)
            self._check(state)
            healthy = state.health is None or state.health == "healthy"
            if healthy and not self.answered:
                await self._try_http(state, deadline)
            now = self.reactor.seconds()
            if healthy and self.answered and now >= start + self.grace - _EPSILON:
                return state
            if now >= deadline - _EPSILON:
                raise NotReady(self._timeout_reason(state))
            # poll, and look again exactly when the grace period or the time allowed ends
            milestones = [t - now for t in (start + self.grace, deadline) if t - now > _EPSILON]
            await task.deferLater(self.reactor, min([interval] + milestones), lambda: None)
            interval = min(interval * 2, POLL_INTERVAL)

    def _check(self, state: Optional[ContainerState]) -> None:
        """Raise NotReady for the states that do not get better by waiting."""
        if state is None:
            raise NotReady(f"{self.who} does not exist")
        if self.first is None:
            self.first = state
        if state.status in ("exited", "dead", "restarting"):
            raise NotReady(f"{self.who} exited with code {state.exit_code}")
        if state.restart_count != self.first.restart_count or state.started_at != self.first.started_at:
            raise NotReady(f"{self.who} exited and was restarted (restart count {state.restart_count})")
        if not state.running:
            raise NotReady(f"{self.who} is not running (status {state.status})")
        if state.health == "unhealthy":
            detail = f": {state.health_output}" if state.health_output else ""
            raise NotReady(f"{self.who}: health check unhealthy{detail}")

    async def _try_http(self, state: ContainerState, deadline: float) -> None:
        address = state.addresses.get(self.network) if self.network else next(iter(state.addresses.values()), None)
        if not address:
            self.http_error = f"no address on network {self.network}"
            return
        remaining = deadline - self.reactor.seconds()
        try:
            await self.probe(self.reactor, f"http://{address}:{self.web_port}/",
                             max(min(PROBE_TIMEOUT, remaining), 0.05))
        except defer.CancelledError:
            raise  # our caller gave up
        except Exception as exc:
            self.http_error = str(exc) or exc.__class__.__name__
        else:
            self.answered = True

    def _timeout_reason(self, state: ContainerState) -> str:
        if state.health == "starting":
            return f"{self.who}: health check still starting after {self.timeout:g} s"
        if not self.answered:
            return f"{self.who}: no HTTP answer on port {self.web_port} within {self.timeout:g} s ({self.http_error})"
        return f"{self.who} not ready within {self.timeout:g} s"


class _Hangup(Protocol):
    """Takes a response body by closing the connection: the answer itself is all we wanted."""

    def makeConnection(self, transport):
        transport.stopProducing()


class ProbeTimeout(Exception):
    pass


@implementer(IAgentEndpointFactory)
class _AddressEndpoints:
    """Plain TCP to the IP address in the URL. (Agent's default HostnameEndpoint reports a refused
    connection only at its next 0.3 s attempt tick, which would make every early probe cost 0.3 s.)"""

    def __init__(self, reactor, timeout: float):
        self._reactor = reactor
        self._timeout = timeout

    def endpointForURI(self, uri):
        return TCP4ClientEndpoint(self._reactor, uri.host.decode("ascii"), uri.port, timeout=self._timeout)


def http_probe(reactor, url: str, timeout: float) -> defer.Deferred:
    """GET url; fires with the status code of any HTTP answer, fails on no answer within ``timeout``."""
    # imported here: only a node that waits for web services pays for treq and Twisted's HTTP client
    import treq.client
    from twisted.web.client import Agent, HTTPConnectionPool

    agent = Agent.usingEndpointFactory(reactor, _AddressEndpoints(reactor, timeout),
                                       pool=HTTPConnectionPool(reactor, persistent=False))
    requested = treq.client.HTTPClient(agent).request("GET", url, allow_redirects=False, unbuffered=True)

    def timed_out(result, seconds):
        raise ProbeTimeout(f"no answer within {seconds:g} s")

    def answered(response):
        response.deliverBody(_Hangup())
        return response.code
    return requested.addTimeout(timeout, reactor, onTimeoutCancel=timed_out).addCallback(answered)
