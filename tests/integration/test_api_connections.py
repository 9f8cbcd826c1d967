"""Connection limits (issue 6 item 5): per client address, in total, the deadline of a request's head and the
idle timeout, over real sockets from several loopback addresses. The limits are settings; these tests use
small ones (the 20,000-socket case is measured by tools/bench/connections.py)."""
import resource
import select
import socket

import pytest_twisted
from twisted.internet import threads

from tests.integration import rawhttp
from tests.integration.http import wait_for

LONG = 3600.0  # a deadline these tests never reach, so only the limit under test acts


def still_open(sock) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except ConnectionResetError:
        return False
    finally:
        sock.setblocking(True)
        sock.settimeout(rawhttp.TIMEOUT)


def open_idle(port, sources):
    return [rawhttp.connect(port, source) for source in sources]


def open_busy(port, sources):
    """Connections in the middle of a request head (a request line, no headers yet)."""
    socks = open_idle(port, sources)
    for sock in socks:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\n")
    return socks


def close_all(socks):
    for sock in socks:
        sock.close()


async def settled(guard, total, idle):
    """Wait until the node has accepted (and read) what the test sent."""
    await wait_for(lambda: (guard.open_connections, guard.idle_connections) == (total, idle))


@pytest_twisted.ensureDeferred
async def test_a_crowded_address_sheds_its_oldest_idle_connection_then_gets_429(start_node):
    node = await start_node(max_connections_per_address=5, header_timeout=LONG)
    port, guard = node.node.http.port, node.node.http.factory
    idle = await threads.deferToThread(open_idle, port, ["127.0.0.1"] * 5)
    try:
        await settled(guard, 5, 5)
        answer = await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health")
        assert answer.status == 200
        assert await threads.deferToThread(rawhttp.closed_by_server, idle[0])
        assert all(still_open(sock) for sock in idle[1:])
    finally:
        close_all(idle)
    await settled(guard, 0, 0)
    busy = await threads.deferToThread(open_busy, port, ["127.0.0.1"] * 5)
    try:
        await settled(guard, 5, 0)
        answer = await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health")
        assert answer.status == 429 and answer.error["code"] == "too_many_requests"
        assert answer.headers["retry-after"] == "2" and answer.headers["connection"] == "close"
        answer = await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health", None, b"",
                                             "127.0.0.2")
        assert answer.status == 200
    finally:
        close_all(busy)


@pytest_twisted.ensureDeferred
async def test_a_full_node_sheds_the_oldest_idle_connection_then_answers_503(start_node):
    node = await start_node(max_connections=10, header_timeout=LONG)
    port, guard = node.node.http.port, node.node.http.factory
    sources = [f"127.0.0.{i}" for i in range(2, 12)]
    idle = await threads.deferToThread(open_idle, port, sources)
    try:
        await settled(guard, 10, 10)
        answer = await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health")
        assert answer.status == 200
        assert await threads.deferToThread(rawhttp.closed_by_server, idle[0])
    finally:
        close_all(idle)
    await settled(guard, 0, 0)
    busy = await threads.deferToThread(open_busy, port, sources)
    try:
        await settled(guard, 10, 0)
        answer = await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health")
        assert answer.status == 503 and answer.error["code"] == "service_unavailable"
    finally:
        close_all(busy)


@pytest_twisted.ensureDeferred
async def test_hundreds_of_idle_sockets_from_many_addresses_leave_health_and_login_answering(start_node):
    node = await start_node(max_connections=100, max_connections_per_address=10, header_timeout=LONG)
    port, guard = node.node.http.port, node.node.http.factory
    sources = [f"127.0.1.{i}" for i in range(1, 31) for _ in range(10)]
    idle = await threads.deferToThread(open_idle, port, sources)
    try:
        await wait_for(lambda: guard.open_connections <= 100 and guard.idle_connections == guard.open_connections)
        assert (await threads.deferToThread(rawhttp.request, port, "GET", "/api/v1/health")).status == 200
        login = await threads.deferToThread(
            rawhttp.request, port, "POST", "/api/v1/auth/local", {"Content-Type": "application/json"},
            b'{"username": "paradrop", "password": "admin-password-for-tests"}', "127.0.1.5")
        assert login.status == 200 and login.body["token"]
        closed = await threads.deferToThread(lambda: sum(not still_open(s) for s in idle))
        assert closed >= 200
    finally:
        close_all(idle)


@pytest_twisted.ensureDeferred
async def test_a_head_trickled_line_by_line_is_cut_with_408_whatever_the_idle_timeout(start_node):
    node = await start_node(header_timeout=0.5, idle_timeout=LONG)

    def trickle(port):
        """One header line every 0.1 s (each resets the idle timeout) until the node answers."""
        with rawhttp.connect(port) as sock:
            sock.sendall(b"GET /api/v1/health HTTP/1.1\r\n")
            for lines in range(1, 600):
                if select.select([sock], [], [], 0.1)[0]:
                    break
                sock.sendall(b"X-Trickle-%d: 1\r\n" % lines)
            return rawhttp.read_answer(sock), lines
    answer, lines = await threads.deferToThread(trickle, node.node.http.port)
    assert answer.status == 408 and answer.error["code"] == "request_timeout" and answer.error["field"] == "headers"
    assert answer.headers["connection"] == "close"
    assert lines < 599


@pytest_twisted.ensureDeferred
async def test_a_connection_that_sends_nothing_gets_408(start_node):
    node = await start_node(header_timeout=0.5, idle_timeout=LONG)

    def silent(port):
        with rawhttp.connect(port) as sock:
            return rawhttp.read_answer(sock), rawhttp.closed_by_server(sock)
    answer, closed = await threads.deferToThread(silent, node.node.http.port)
    assert answer.status == 408 and answer.error["code"] == "request_timeout" and closed


@pytest_twisted.ensureDeferred
async def test_a_kept_alive_connection_is_closed_after_the_idle_timeout(start_node):
    node = await start_node(header_timeout=LONG, idle_timeout=0.5)

    def kept_alive(port):
        with rawhttp.connect(port) as sock:
            sock.sendall(rawhttp.head("GET", "/api/v1/health"))
            answer = rawhttp.read_answer(sock)
            return answer, rawhttp.closed_by_server(sock)
    answer, closed = await threads.deferToThread(kept_alive, node.node.http.port)
    assert answer.status == 200 and closed


def test_the_daemon_raises_its_descriptor_limit_to_the_hard_limit(node_process_factory):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 1024, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        proc = node_process_factory().start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    with open(f"/proc/{proc.proc.pid}/limits") as limits:
        line = next(line for line in limits if line.startswith("Max open files"))
    assert lowered < hard and line.split()[3:5] == [str(hard), str(hard)], line
