"""The HTTP listener: a Site whose channel admits each request from its head, before reading its body.

When a request's headers are complete the router decides (route, method, token, content type, declared size).
A request that announces a body and is refused gets its error at once, without a byte of the body being read
(an ``Expect: 100-continue`` client never sends it), and the connection closes: the answer is written, our
side half-closed, and whatever the client still sends is discarded for a moment before the socket goes, so
the client reads the answer instead of a reset. A chunked body is counted as it arrives and refused the same
way past the route's limit. Between requests the idle timeout applies; the deadline of a request's head is the
connection guard's (pdserver.api.connections), which refuses the late ones through ``refuse`` too.
"""
from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.http import RESPONSES, HTTPChannel, datetimeToString
from twisted.web.server import Request, Site

from pdserver import errors
from pdserver.api.routing import JSON_HEADERS, encode

_access_log = Logger(namespace="pdserver.api.access")
LINGER = 2.0  # seconds a refused connection keeps reading (and dropping) what the client still sends
LISTEN_BACKLOG = 1024  # connect storms: the kernel queues this many before we accept them


def raw_answer(error: errors.Error) -> bytes:
    """A whole HTTP/1.1 response carrying ``error`` and closing the connection, for answers written before
    (or instead of) a request object."""
    body = encode(error.body())
    headers = [(b"Date", datetimeToString()), (b"Connection", b"close"), (b"Content-Length", b"%d" % len(body))]
    headers += list(JSON_HEADERS.items())
    headers += [(name.encode("latin-1"), str(value).encode("latin-1")) for name, value in error.headers.items()]
    head = [b"HTTP/1.1 %d %s" % (error.status, RESPONSES.get(error.status, b"Error"))]
    head += [b"%s: %s" % pair for pair in headers]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def _ignore(*args):
    return None


def close_after_answer(protocol, answer: bytes):
    """Write ``answer``, half-close, drop further input, and close once the client does or after LINGER s;
    returns the delayed close, for ``connectionLost`` to cancel."""
    transport = protocol.transport
    protocol.dataReceived = _ignore
    transport.write(answer)
    transport.loseWriteConnection()
    return protocol.callLater(LINGER, transport.loseConnection)


def cancel(delayed_call) -> None:
    if delayed_call is not None and delayed_call.active():
        delayed_call.cancel()


class ApiRequest(Request):
    """Counts a body as it arrives and has the channel refuse it past the admitted limit."""

    admission = None
    _received = 0

    def handleContentChunk(self, data):
        if self.content is None:
            return
        self._received += len(data)
        if self.admission is not None and self._received > self.admission.limit:
            self.channel.refuse(errors.TooLarge(f"request body exceeds {self.admission.limit} bytes",
                                                field="body"))
            return
        self.content.write(data)


class ApiChannel(HTTPChannel):
    """See the module docstring. For the connection guard (pdserver.api.connections): ``idle`` says it may
    shed this connection, ``head_started`` since when a request head is being awaited (None: it is not)."""

    head_started = None
    _linger = None
    _between_requests = False
    _refused = False

    @property
    def idle(self) -> bool:
        return not self.requests and not self._refused

    def connectionMade(self):
        super().connectionMade()
        self.head_started = self.site.reactor.seconds()

    def dataReceived(self, data):
        if self._between_requests:  # the first bytes of the next request on a kept-alive connection
            self._between_requests = False
            self.head_started = self.site.reactor.seconds()
        super().dataReceived(data)

    def allHeadersReceived(self):
        self.head_started = None
        request = self.requests[-1]
        admission = self.site.router.admit(self._command, self._path.split(b"?", 1)[0], request.requestHeaders,
                                           self.length)
        request.admission = admission
        if admission.error is not None and self.length != 0:
            self.refuse(admission.error)
            return
        super().allHeadersReceived()

    def requestDone(self, request):
        self._between_requests = True
        super().requestDone(request)

    def refuse(self, error: errors.Error) -> None:
        """Answer ``error`` now, read no more of this request, and close (module docstring)."""
        if self._refused:
            return
        self._refused = True
        self.head_started = None
        self.setTimeout(None)
        for request in self.requests:
            if request.content is not None:
                request.content.close()
                request.content = None
        del self.requests[:]
        self.lineReceived = self.rawDataReceived = self.allContentReceived = _ignore
        self._networkProducer.unregisterProducer()
        self.site.log_refused(self, error)
        self._linger = close_after_answer(self, raw_answer(error))

    def _respondToBadRequestAndDisconnect(self):
        """Twisted's answer to a request it cannot parse (a malformed request line or header, a bad chunk) is a
        bare 400; ours is the API's JSON error like every other answer."""
        self.refuse(errors.InvalidInput("malformed HTTP request", field="request", code="malformed_request"))

    def connectionLost(self, reason):
        self.head_started = None
        cancel(self._linger)
        super().connectionLost(reason)


class ApiSite(Site):
    """Site of the Edge API; its access log (debug level) is written only when that level is on."""

    protocol = ApiChannel
    requestFactory = ApiRequest
    displayTracebacks = False
    noisy = False

    def __init__(self, resource, router, *, idle_timeout: float, reactor, access_log: bool = False):
        super().__init__(resource, timeout=idle_timeout, reactor=reactor)
        self.router = router
        self._access_log = access_log

    def log(self, request):
        if self._access_log:
            _access_log.debug("{method} {uri} {code}", method=request.method.decode("latin-1"),
                              uri=request.uri.decode("latin-1"), code=request.code)

    def log_refused(self, channel, error: errors.Error):
        if self._access_log:
            _access_log.debug("refused {peer} before its body: {code}", peer=str(channel.transport.getPeer()),
                              code=error.status)


class HttpService(Service):
    """Listens on host:port; ``port`` holds the bound port number once started (for port 0).

    ``listen_also(address)`` adds the same listener on another local address (a chute network's
    gateway, so chutes reach the API without it listening on every interface).
    """

    log = Logger()

    def __init__(self, reactor, factory, host: str, port: int, title: str = "Edge API"):
        self._title = title
        self._reactor = reactor
        self.factory = factory
        self._host = host
        self._requested_port = port
        self._listening = None
        self._extra = {}
        self.port = None

    def _listen(self, host: str, port: int):
        endpoint = endpoints.TCP4ServerEndpoint(self._reactor, port, backlog=LISTEN_BACKLOG, interface=host)
        return endpoint.listen(self.factory)

    @defer.inlineCallbacks
    def startService(self):
        self._listening = yield self._listen(self._host, self._requested_port)
        self.port = self._listening.getHost().port
        super().startService()
        self.log.info("{title} listening on http://{host}:{port}/", title=self._title, host=self._host,
                      port=self.port)

    @defer.inlineCallbacks
    def listen_also(self, address: str):
        if not self.running or address in self._extra or self._host in ("0.0.0.0", address):
            return
        self._extra[address] = None
        try:
            self._extra[address] = yield self._listen(address, self.port)
        except Exception:
            del self._extra[address]
            raise
        self.log.info("Edge API also listening on http://{host}:{port}/ for chutes", host=address, port=self.port)

    def stop_listening_on(self, address: str):
        """Close the listener ``listen_also`` opened on ``address`` (nothing if there is none)."""
        port = self._extra.pop(address, None)
        if port is None:
            return defer.succeed(None)
        self.log.info("Edge API no longer listening on {host}", host=address)
        return defer.maybeDeferred(port.stopListening)

    def stopService(self):
        super().stopService()
        ports = [p for p in self._extra.values() if p is not None]
        self._extra = {}
        if self._listening is not None:
            ports.append(self._listening)
            self._listening = None
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
