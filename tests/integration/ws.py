"""A websocket client on the test reactor that collects JSON messages until the server closes."""
import json

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer


class _Collector(WebSocketClientProtocol):
    def onOpen(self):
        self.factory.stream.opened(self)

    def onMessage(self, payload, isBinary):
        self.factory.stream.received(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        self.factory.stream.closed(wasClean, code, reason)


class Stream:
    def __init__(self):
        self.messages = []
        self.close_info = None
        self.protocol = None
        self.done = defer.Deferred()
        self._waiters = []
        self._open_waiters = []

    def opened(self, protocol):
        self.protocol = protocol
        waiters, self._open_waiters = self._open_waiters, []
        for d in waiters:
            d.callback(self)

    def wait_open(self):
        """Fires once the handshake is done; fails if the socket closes first."""
        if self.protocol is not None:
            return defer.succeed(self)
        if self.close_info is not None:
            return defer.fail(ConnectionError(f"the websocket did not open: {self.close_info[2]}"))
        d = defer.Deferred()
        self._open_waiters.append(d)
        return d

    def drop(self):
        """Close the TCP connection without a closing handshake, as a client that vanishes does."""
        self.protocol.transport.abortConnection()
        return self.done

    def received(self, message):
        self.messages.append(message)
        for count, d in list(self._waiters):
            if len(self.messages) >= count:
                self._waiters.remove((count, d))
                d.callback(list(self.messages))

    def closed(self, was_clean, code, reason):
        self.close_info = (was_clean, code, reason)
        waiters, self._open_waiters = self._open_waiters, []
        for d in waiters:
            d.errback(ConnectionError(f"the websocket did not open: {reason}"))
        if not self.done.called:
            self.done.callback(self.close_info)

    def wait_messages(self, count):
        d = defer.Deferred()
        if len(self.messages) >= count:
            d.callback(list(self.messages))
        else:
            self._waiters.append((count, d))
        return d


def open_stream(url, token=None) -> Stream:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    factory = WebSocketClientFactory(url, headers=headers)
    factory.protocol = _Collector
    factory.stream = Stream()
    connectWS(factory)
    return factory.stream
