"""A websocket client on the test reactor that collects JSON messages until the server closes."""
import json

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol, connectWS
from twisted.internet import defer


class _Collector(WebSocketClientProtocol):
    def onMessage(self, payload, isBinary):
        self.factory.stream.received(json.loads(payload))

    def onClose(self, wasClean, code, reason):
        self.factory.stream.closed(wasClean, code, reason)


class Stream:
    def __init__(self):
        self.messages = []
        self.close_info = None
        self.done = defer.Deferred()
        self._waiters = []

    def received(self, message):
        self.messages.append(message)
        for count, d in list(self._waiters):
            if len(self.messages) >= count:
                self._waiters.remove((count, d))
                d.callback(list(self.messages))

    def closed(self, was_clean, code, reason):
        self.close_info = (was_clean, code, reason)
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
