"""Following a chute's output over real websockets, with the chute's own token: sockets that come and go
(dropped, closed, gone before their follower opened) leave no thread or fd behind, all sockets of a chute
share one reader, the caps answer 429, and a failure is logged once, not once per socket."""
import threading

import docker
import psutil
import pytest
import pytest_twisted
import treq
from twisted.logger import globalLogPublisher

from tests.integration.chute_helpers import unique
from tests.integration.http import get_json, post_json, wait_for, wait_for_change
from tests.integration.ws import open_stream

pytestmark = pytest.mark.docker

TICKER = "i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.1; done"


async def install_ticker(node, token):
    name = unique("logs")
    config = {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": ["sh", "-c", TICKER]}}}
    code, body, _ = await post_json(f"{node.url}/api/v1/chutes", {"config": config}, token)
    assert code == 202, body
    change = await wait_for_change(node.url, body["change_id"], token, timeout=60)
    assert change["state"] == "succeeded", change
    return name


def chute_token(name):
    client = docker.from_env()
    try:
        [container] = client.containers.list(filters={"label": f"org.paradrop.chute={name}"})
        return dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])["PARADROP_API_TOKEN"]
    finally:
        client.close()


def readers():
    return [t for t in threading.enumerate() if t.name.startswith("pd-logs-")]


def counts():
    return threading.active_count(), psutil.Process().num_fds()


def logs_url(node, name, path="/ws/chute_logs/"):
    return node.url.replace("http://", "ws://") + path + name


@pytest_twisted.ensureDeferred
async def test_sockets_that_come_and_go_leave_no_thread_or_fd_and_share_one_reader(node):
    token = await node.login()
    name = await install_ticker(node, token)
    own = chute_token(name)
    warm = open_stream(logs_url(node, name), own)
    await warm.wait_messages(1)
    await warm.drop()
    await wait_for(lambda: not readers())
    threads_before, fds_before = counts()

    for round_ in range(10):  # 10 rounds of 8 sockets (the cap per token): 80 sockets opened and dropped
        streams = [open_stream(logs_url(node, name, "/sockjs/logs/" if i % 2 else "/ws/chute_logs/"), own)
                   for i in range(8)]
        early = streams[:2]  # gone at once, before their follower has delivered anything
        for stream in early:
            await stream.wait_open()
            await stream.drop()
        for stream in streams[2:]:
            frames = await stream.wait_messages(2)
            assert {f["service"] for f in frames} == {"main"} and frames[0]["message"].startswith("tick")
        assert len(readers()) == 1, "all sockets of a chute share one reader"
        for i, stream in enumerate(streams[2:]):
            if i % 2:
                await stream.drop()
            else:
                stream.protocol.sendClose(1000)
                await stream.done

    for _ in range(20):  # alone, and gone before its reader has opened
        stream = open_stream(logs_url(node, name), own)
        await stream.wait_open()
        await stream.drop()

    def back_to_before():
        threads, fds = counts()
        return not readers() and threads <= threads_before and fds <= fds_before
    try:
        await wait_for(back_to_before, timeout=15)
    finally:
        print(f"\nbefore: {threads_before} threads, {fds_before} fds; after: {counts()}, readers {readers()}")


@pytest_twisted.ensureDeferred
async def test_a_late_socket_gets_the_kept_lines_then_live_ones_without_a_gap(node):
    token = await node.login()
    name = await install_ticker(node, token)
    first = open_stream(logs_url(node, name), token)
    await first.wait_messages(5)
    second = open_stream(logs_url(node, name), token)
    frames = await second.wait_messages(len(first.messages) + 3)
    ticks = [int(f["message"][4:]) for f in frames]
    assert ticks == list(range(ticks[0], ticks[0] + len(ticks))), "in order, none lost, none repeated"
    assert len(readers()) == 1
    await first.drop()
    await second.drop()


async def upgrade(node, name, token):
    """A websocket upgrade request; the answer when the node refuses it before upgrading."""
    response = await treq.get(logs_url(node, name).replace("ws://", "http://"), headers={
        "Authorization": f"Bearer {token}", "Connection": "Upgrade", "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13", "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    return response.code, await treq.json_content(response)


@pytest_twisted.ensureDeferred
async def test_followers_are_capped_per_token_and_per_chute_with_a_429_naming_the_cap(node):
    token = await node.login()
    name = await install_ticker(node, token)
    own = chute_token(name)
    streams = [open_stream(logs_url(node, name), own) for _ in range(8)]
    for stream in streams:
        await stream.wait_open()
    code, body = await upgrade(node, name, own)
    assert code == 429 and body["error"]["field"] == "token" and "8 log streams" in body["error"]["message"]
    for _ in range(3):
        other = await node.login()
        streams += [open_stream(logs_url(node, name), other) for _ in range(8)]
    for stream in streams:
        await stream.wait_open()
    code, body = await upgrade(node, name, await node.login())
    assert code == 429 and body["error"]["field"] == "chute" and name in body["error"]["message"]
    await streams[0].drop()
    late = open_stream(logs_url(node, name), own)
    await late.wait_messages(1)  # a freed place can be taken again
    for stream in streams[1:] + [late]:
        await stream.drop()
    await wait_for(lambda: not readers())


@pytest_twisted.ensureDeferred
async def test_a_missing_container_is_said_on_every_socket_and_logged_once(node):
    token = await node.login()
    name = await install_ticker(node, token)
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": f"org.paradrop.chute={name}"}):
            container.remove(force=True)
    finally:
        client.close()
    logged = []

    def observe(event):
        if "following the output of" in (event.get("log_format") or ""):
            logged.append(event)
    globalLogPublisher.addObserver(observe)
    try:
        streams = []
        for _ in range(5):
            stream = open_stream(logs_url(node, name), token)
            [frame] = await stream.wait_messages(1)
            assert frame["message"].startswith("[logs unavailable:") and "No such container" in frame["message"]
            streams.append(stream)
    finally:
        globalLogPublisher.removeObserver(observe)
    assert len(logged) == 1
    code, state = await get_json(f"{node.url}/api/v1/chutes/{name}", token)
    assert code == 200 and state["service_states"][0]["status"] == "missing"
    for stream in streams:
        await stream.drop()
    assert not readers()
