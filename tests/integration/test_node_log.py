"""``/ws/paradrop_logs`` on a real daemon with a real websocket client: the lines the node logged since it
started come first, then live ones (a failed login); only administrators may follow; followers are capped; the
passwords and tokens used meanwhile never appear in the stream."""
import contextlib
import json

import pytest
import requests
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import wait_until
from tests.integration.chute_helpers import unique


def ws_url(node_process):
    return node_process.url.replace("http://", "ws://") + "/ws/paradrop_logs"


def socket(node_process, token):
    return connect(ws_url(node_process), additional_headers={"Authorization": f"Bearer {token}"})


def read_until(ws, predicate, timeout=10):
    lines = []
    wait_until(lambda: lines.append(json.loads(ws.recv(timeout=timeout))) or predicate(lines[-1]), timeout=timeout,
               message="a log line")
    return lines


def test_the_node_log_streams_recent_then_live_lines_to_admins_only_without_secrets(node_process):
    token = node_process.token()
    session = node_process.session(token)
    with socket(node_process, token) as ws:
        kept = read_until(ws, lambda line: "listening" in line["text"].lower() or "started" in line["text"].lower())
        assert all(set(line) == {"time", "level", "namespace", "text"} for line in kept)
        user, password = unique("viewer"), "password-" + unique("secret")
        created = session.post(f"{node_process.url}/api/v1/users",
                               json={"username": user, "password": password, "role": "user"})
        assert created.status_code == 201
        user_token = node_process.token(user, password)
        intruder, guess = unique("intruder"), "guess-" + unique("secret")
        assert requests.post(f"{node_process.url}/api/v1/auth/local", json={"username": intruder, "password": guess},
                             timeout=10).status_code == 401
        live = read_until(ws, lambda line: intruder in line["text"])
    text = "\n".join(line["text"] for line in kept + live)
    for secret in (password, guess, token, user_token):
        assert secret not in text

    with pytest.raises(InvalidStatus) as refused:
        socket(node_process, user_token)
    assert refused.value.response.status_code == 403
    assert requests.get(node_process.url + "/ws/paradrop_logs", timeout=10).status_code == 401


def reachable(node_process, token):
    try:
        with socket(node_process, token):
            return True
    except InvalidStatus:
        return False


def test_followers_of_the_node_log_are_capped(node_process):
    token = node_process.token()
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket(node_process, token)) for _ in range(8)]
        with pytest.raises(InvalidStatus) as refused:
            socket(node_process, token)
        assert refused.value.response.status_code == 429
        sockets[0].close()
        wait_until(lambda: reachable(node_process, token), timeout=10, message="the place a follower freed")
