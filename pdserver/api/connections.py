"""Connection limits of the API listener: per client address and in total, shedding idle connections first.

Every socket costs a file descriptor, and a process that runs out of them can answer nobody (nor open its
database). So the listener holds at most ``max_connections`` (by default the descriptor limit less a reserve
for everything else the node opens) and at most ``per_address`` from one client address. A new connection
over either bound closes the oldest idle connection in that bound (an HTTP connection between requests; a
websocket or a request in progress is never idle) and takes its place; when none is idle it is refused with a
short JSON answer (429 from a crowded address, 503 when the node is full), or, when even those answers pile
up, closed at once. So idle sockets by the thousand, from one address or many, leave room for health and login.

Each request's head (request line and headers) must arrive within ``header_timeout`` of the connection opening
or of the first byte of that request: a client trickling one header line at a time is answered 408 and cut,
however often it sends. A periodic sweep checks this (a timer per request would cost every request).
"""
import collections
import resource

from twisted.internet import task
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory

from pdserver import errors
from pdserver.api.site import cancel, close_after_answer, raw_answer

FD_RESERVE = 512  # descriptors kept for the database, the Docker socket, logs, child processes and uploads
SHED_BATCH = 16  # idle connections closed at once when the node is full, so a storm does not scan per accept
MAX_REFUSING = 64  # refusals being answered at once; past that a connection is closed without an answer

log = Logger()


def raise_fd_limit() -> int:
    """Raise this process's descriptor limit (soft) to its hard limit; returns the soft limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as e:
            log.warn("cannot raise the file descriptor limit from {soft} to {hard}: {error}", soft=soft,
                     hard=hard, error=str(e))
    return soft


def default_max_connections() -> int:
    """The descriptor limit in force, less FD_RESERVE (but at least half of it)."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(soft // 2, soft - FD_RESERVE)


class GuardedConnection(ProtocolWrapper):
    """One accepted connection; it stays the transport's protocol when a websocket takes the connection over,
    so the guard sees every close."""

    def __init__(self, factory, wrapped, host):
        super().__init__(factory, wrapped)
        self.host = host

    @property
    def idle(self) -> bool:
        return getattr(self.wrappedProtocol, "idle", False)

    def shed(self) -> None:
        """Close an idle connection (through its HTTP channel, which lets go of the transport first)."""
        self.wrappedProtocol.loseConnection()


class Refusal(Protocol):
    """Answers one JSON error on a connection the guard would not take, then closes it."""

    def __init__(self, guard: "ConnectionGuard", error: errors.Error, call_later):
        self._guard = guard
        self._error = error
        self.callLater = call_later
        self._linger = None

    def connectionMade(self):
        self._linger = close_after_answer(self, raw_answer(self._error))

    def connectionLost(self, reason):
        cancel(self._linger)
        self._guard.refusal_done()


class ConnectionGuard(WrappingFactory):
    """Wraps the API's Site with the limits of the module docstring."""

    protocol = GuardedConnection

    def __init__(self, site, *, per_address: int, max_connections: int, header_timeout: float, reactor):
        super().__init__(site)
        self.per_address = per_address
        self.max_connections = max_connections
        self.header_timeout = header_timeout
        self._reactor = reactor
        self._open = collections.OrderedDict()  # every connection, oldest first
        self._by_host = {}  # host -> OrderedDict of its connections, oldest first
        self._refusing = 0
        self._sweeper = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    @property
    def idle_connections(self) -> int:
        return sum(p.idle for p in self._open)

    def startFactory(self):
        self._sweeper = task.LoopingCall(self._cut_late_heads)
        self._sweeper.clock = self._reactor
        self._sweeper.start(self.header_timeout / 4, now=False)

    def stopFactory(self):
        if self._sweeper is not None and self._sweeper.running:
            self._sweeper.stop()
        self._sweeper = None

    def _cut_late_heads(self):
        deadline = self._reactor.seconds() - self.header_timeout
        late = [p.wrappedProtocol for p in self._open
                if getattr(p.wrappedProtocol, "head_started", None) is not None
                and p.wrappedProtocol.head_started <= deadline]
        for channel in late:
            channel.refuse(errors.RequestTimeout(f"the request head took longer than {self.header_timeout:g} s",
                                                 field="headers"))

    def buildProtocol(self, addr):
        host = getattr(addr, "host", None)
        mine = self._by_host.get(host)
        if mine is not None and len(mine) >= self.per_address and not self._shed(mine, 1):
            return self._refuse(errors.Throttled(1.0, f"too many connections from {host}; close idle ones"))
        if len(self._open) >= self.max_connections and not self._shed(self._open, SHED_BATCH):
            return self._refuse(errors.Unavailable("the node has too many open connections; try again soon"))
        return self.protocol(self, self.wrappedFactory.buildProtocol(addr), host)

    def registerProtocol(self, p):
        self._open[p] = None
        self._by_host.setdefault(p.host, collections.OrderedDict())[p] = None

    def unregisterProtocol(self, p):
        self._forget(p)

    def refusal_done(self):
        self._refusing -= 1

    def _forget(self, p):
        self._open.pop(p, None)
        mine = self._by_host.get(p.host)
        if mine is not None:
            mine.pop(p, None)
            if not mine:
                del self._by_host[p.host]

    def _shed(self, connections, count: int) -> bool:
        """Close up to ``count`` of the oldest idle ``connections``; whether any was."""
        victims = []
        for p in connections:
            if p.idle:
                victims.append(p)
                if len(victims) == count:
                    break
        for p in victims:
            self._forget(p)
            p.shed()
        return bool(victims)

    def _refuse(self, error: errors.Error):
        if self._refusing >= MAX_REFUSING:
            return None
        self._refusing += 1
        return Refusal(self, error, self._reactor.callLater)
