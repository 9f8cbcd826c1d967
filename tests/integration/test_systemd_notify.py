"""sd_notify from a real `pdserver node`: the test plays systemd's side of $NOTIFY_SOCKET (a unix datagram socket
it binds), so ``Type=notify`` is proven without systemd: READY=1 comes when the API answers, STOPPING=1 on SIGTERM,
and WATCHDOG=1 pings when systemd asks for them."""
import os
import signal
import socket

import pytest
import requests


@pytest.fixture
def notify_socket():
    """An abstract-namespace datagram socket, as systemd names them (``@...`` in $NOTIFY_SOCKET)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    name = f"paradrop-notify-test-{os.getpid()}-{id(sock)}"
    sock.bind("\0" + name)
    sock.settimeout(30)  # bounds each wait for the daemon's next datagram; recv returns as soon as one arrives
    yield sock, "@" + name
    sock.close()


def next_message(sock) -> dict:
    """One datagram's ``KEY=VALUE`` lines."""
    return dict(line.split("=", 1) for line in sock.recv(4096).decode().splitlines())


def test_ready_comes_once_the_api_answers_and_stopping_on_sigterm(node_process_factory, notify_socket):
    sock, address = notify_socket
    node = node_process_factory(NOTIFY_SOCKET=address, WATCHDOG_USEC="").start(wait=False)
    message = next_message(sock)
    assert message.get("READY") == "1", f"the first notification was {message}, not READY=1"
    health = requests.get(node.url + "/api/v1/health", timeout=5)  # once, no retry: READY means it answers
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert message["STATUS"] == f"API at {node.url}"
    node.proc.send_signal(signal.SIGTERM)
    assert next_message(sock) == {"STOPPING": "1"}
    assert node.wait_exit() == 0


def test_watchdog_pings_follow_ready_when_systemd_asks_for_them(node_process_factory, notify_socket):
    sock, address = notify_socket
    node_process_factory(NOTIFY_SOCKET=address, WATCHDOG_USEC="200000").start(wait=False)
    assert next_message(sock).get("READY") == "1"
    assert [next_message(sock) for _ in range(3)] == [{"WATCHDOG": "1"}] * 3
