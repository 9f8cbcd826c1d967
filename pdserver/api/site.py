"""The HTTP listener: a Site whose requests stop buffering a body past the size limit."""
from twisted.application.service import Service
from twisted.internet import defer, endpoints
from twisted.logger import Logger
from twisted.web.server import Request, Site


_access_log = Logger(namespace="pdserver.api.access")


UPLOAD_TYPES = (b"application/x-tar", b"application/tar", b"application/gzip", b"application/x-gzip",
                b"application/x-compressed-tar", b"application/octet-stream")


def limited_request_class(max_body_bytes: int, max_upload_bytes: int):
    class LimitedRequest(Request):
        """Drops body bytes past the limit (larger for chute archives, which go to a temporary file);
        the route then answers 413 instead of holding them."""

        body_too_large = False
        _received = 0
        _limit = max_body_bytes

        def gotLength(self, length):
            content_type = (self.requestHeaders.getRawHeaders(b"content-type") or [b""])[0]
            if content_type.split(b";")[0].strip().lower() in UPLOAD_TYPES:
                self._limit = max_upload_bytes
            if length is not None and length > self._limit:
                self.body_too_large = True
                length = 0
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self.body_too_large:
                return
            self._received += len(data)
            if self._received > self._limit:
                self.body_too_large = True
                self.content.seek(0)
                self.content.truncate()
                return
            super().handleContentChunk(data)

    return LimitedRequest


class ApiSite(Site):
    """Quiet access log: request lines go to the node log at debug level, not stdout."""

    def __init__(self, resource, max_body_bytes: int, max_upload_bytes: int, reactor=None):
        super().__init__(resource, reactor=reactor)
        self.requestFactory = limited_request_class(max_body_bytes, max_upload_bytes)
        self.displayTracebacks = False
        self.noisy = False

    def log(self, request):
        _access_log.debug("{method} {uri} {code}", method=request.method.decode(), uri=request.uri.decode(),
                       code=request.code)


class HttpService(Service):
    """Listens on host:port; ``port`` holds the bound port number once started (for port 0).

    ``listen_also(address)`` adds the same site on another local address (a chute network's
    gateway, so chutes reach the API without it listening on every interface).
    """

    log = Logger()

    def __init__(self, reactor, site: Site, host: str, port: int):
        self._reactor = reactor
        self._site = site
        self._host = host
        self._requested_port = port
        self._listening = None
        self._extra = {}
        self.port = None

    def _listen(self, host: str, port: int):
        endpoint = endpoints.TCP4ServerEndpoint(self._reactor, port, backlog=128, interface=host)
        return endpoint.listen(self._site)

    @defer.inlineCallbacks
    def startService(self):
        self._listening = yield self._listen(self._host, self._requested_port)
        self.port = self._listening.getHost().port
        super().startService()
        self.log.info("Edge API listening on http://{host}:{port}/", host=self._host, port=self.port)

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

    def stopService(self):
        super().stopService()
        ports = [p for p in self._extra.values() if p is not None]
        self._extra = {}
        if self._listening is not None:
            ports.append(self._listening)
            self._listening = None
        return defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
