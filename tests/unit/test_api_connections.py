"""The connection guard and the API channel on an injected clock: deadlines, idle timeout and shedding, with
time advanced by the test (the integration tests do the same over real sockets)."""
import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

from pdserver.api.connections import ConnectionGuard
from pdserver.api.dispatch import ApiResource
from pdserver.api.routing import PUBLIC, RouteTable, Router
from pdserver.api.site import LINGER, ApiSite


class Health:
    routes = RouteTable("t")

    @routes.route("/health", "GET", permission=PUBLIC, summary="health")
    def health(self, call):
        return {"status": "ok"}


class Transport(StringTransport):
    """A StringTransport that can half-close, as TCP can."""

    write_closed = False

    def loseWriteConnection(self):
        self.write_closed = True


def guard(**limits):
    clock = MemoryReactorClock()
    router = Router(auth=None, max_body_bytes=1024, max_upload_bytes=2048)
    router.add(Health(), Health.routes)
    site = ApiSite(ApiResource(router, None, None), router, idle_timeout=limits.pop("idle_timeout", 60.0), reactor=clock)
    factory = ConnectionGuard(site, reactor=clock, **{"per_address": 10, "max_connections": 10,
                                                      "header_timeout": 5.0, **limits})
    factory.doStart()
    return factory, clock


def connect(factory, host="127.0.0.1"):
    protocol = factory.buildProtocol(IPv4Address("TCP", host, 40000))
    transport = Transport(peerAddress=IPv4Address("TCP", host, 40000))
    protocol.makeConnection(transport)
    return protocol, transport


def answer(transport):
    head, _, body = transport.value().partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_head_is_cut_at_its_deadline_however_often_lines_arrive():
    factory, clock = guard()
    protocol, transport = connect(factory)
    protocol.dataReceived(b"GET /health HTTP/1.1\r\n")
    for i in range(9):
        clock.advance(0.5)
        protocol.dataReceived(b"X-Trickle-%d: 1\r\n" % i)
    assert transport.value() == b""
    clock.advance(2.0)
    status, body = answer(transport)
    assert status == 408 and body["error"] == {"code": "request_timeout", "field": "headers",
                                                "message": "the request head took longer than 5 s"}
    assert transport.write_closed and not transport.disconnecting
    clock.advance(LINGER)
    assert transport.disconnecting


def test_between_requests_the_idle_timeout_applies_not_the_head_deadline():
    factory, clock = guard(idle_timeout=60.0)
    protocol, transport = connect(factory)
    protocol.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b'"status": "ok"' in transport.value()
    transport.clear()
    clock.advance(30.0)
    assert transport.value() == b"" and not transport.disconnecting
    clock.advance(31.0)
    assert transport.value() == b"" and transport.disconnecting


def test_a_crowded_address_sheds_its_oldest_idle_connection_and_refuses_when_none_is_idle():
    factory, clock = guard(per_address=2)
    (_, first_t), (second, second_t) = connect(factory), connect(factory)
    third, third_t = connect(factory)
    assert first_t.disconnecting and not second_t.disconnecting and not third_t.disconnecting
    for protocol in (second, third):
        protocol.dataReceived(b"GET /health HTTP/1.1\r\n")
    refused, refused_t = connect(factory)
    status, body = answer(refused_t)
    assert status == 429 and body["error"]["code"] == "too_many_requests"
    assert b"Retry-After: 2" in refused_t.value() and refused_t.write_closed
    other, other_t = connect(factory, "127.0.0.2")
    other.dataReceived(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"200 OK" in other_t.value()
