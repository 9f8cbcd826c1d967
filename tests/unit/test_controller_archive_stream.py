"""An archive kept in the controller's database goes out a chunk at a time, only as fast as the client reads, and
stops when the client leaves (real twisted.web request double, the store's reads fired by the test)."""
from twisted.internet import defer
from twisted.web.test import requesthelper

from pdserver.controller.api.store import DatabaseArchiveResource


class DummyRequest(requesthelper.DummyRequest):
    """twisted's request double, holding a push producer as a real request does (its own runs pull producers)."""

    def registerProducer(self, producer, streaming):
        assert streaming
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


class Chunks:
    """archive_chunk whose answers the test gives, in order."""

    def __init__(self):
        self.asked = []

    def archive_chunk(self, chute, version, seq):
        self.asked.append((chute, version, seq, defer.Deferred()))
        return self.asked[-1][3]

    def answer(self, data):
        self.asked[-1][3].callback(data)


def test_chunks_follow_the_clients_pace_and_the_response_ends_at_the_recorded_size():
    store, request = Chunks(), DummyRequest([b""])
    resource = DatabaseArchiveResource(store, "hello", "1", 7)
    resource.render(request)
    assert request.responseHeaders.getRawHeaders(b"content-length") == [b"7"]
    assert [a[:3] for a in store.asked] == [("hello", "1", 0)]
    store.answer(b"abc")
    assert request.written == [b"abc"] and len(store.asked) == 2
    resource.pauseProducing()  # the client's socket is full
    store.answer(b"de")
    assert len(store.asked) == 2  # no read while paused: one chunk in memory at most
    resource.resumeProducing()
    assert len(store.asked) == 3
    store.answer(b"fg")
    assert b"".join(request.written) == b"abcdefg" and request.finished == 1


def test_a_client_that_leaves_stops_the_reads_and_a_short_archive_breaks_the_transfer():
    store, request = Chunks(), DummyRequest([b""])
    resource = DatabaseArchiveResource(store, "hello", "1", 10)
    resource.render(request)
    store.answer(b"abc")
    request.processingFailed(Exception("the client left"))
    store.answer(b"def")
    assert request.written == [b"abc"] and len(store.asked) == 2

    store, request = Chunks(), DummyRequest([b""])
    request.loseConnection = lambda: lost.append(True)
    lost = []
    DatabaseArchiveResource(store, "hello", "1", 10).render(request)
    store.answer(b"abc")
    store.answer(b"")  # fewer bytes than recorded: not a complete response
    assert lost == [True] and request.finished == 0
