"""The change progress websocket: history first, then live messages, then the result and a clean close."""
import pytest_twisted
from twisted.internet import defer

from tests.integration.http import get_json, post_json, sleep, wait_for, wait_for_change
from tests.integration.ws import open_stream


class GatedChange:
    """A change type whose end the test decides, to observe a change while it runs."""

    def __init__(self):
        self.contexts = []
        self.gates = []

    def __call__(self, context):
        context.progress("preparing")
        gate = defer.Deferred()
        self.contexts.append(context)
        self.gates.append(gate)
        return gate


def ws_url(node, change_id):
    return node.url.replace("http://", "ws://") + f"/ws/changes/{change_id}/stream"


@pytest_twisted.ensureDeferred
async def test_stream_sends_history_then_live_messages_then_closes_with_the_result(start_node):
    gated = GatedChange()
    node = await start_node(handlers={"gated": gated})
    token = await node.login()
    change = node.queue.submit("gated", "demo", "paradrop")
    await wait_for(lambda: gated.contexts)
    stream = open_stream(ws_url(node, change.id), token)
    history = await stream.wait_messages(3)
    assert [m["message"] for m in history] == [f"change {change.id} queued: gated demo",
                                               f"change {change.id} started", "preparing"]
    assert all(isinstance(m["time"], float) for m in history)

    gated.contexts[0].progress("half way")
    gated.gates[0].callback({"message": "all done"})
    was_clean, code, _ = await stream.done
    assert was_clean and code == 1000
    live = stream.messages[3:]
    assert live[0]["message"] == "half way"
    assert live[-1]["state"] == "succeeded"
    assert live[-1]["result"] == {"message": "all done"}
    assert "state" not in live[0]


@pytest_twisted.ensureDeferred
async def test_stream_of_a_finished_change_replays_and_closes(start_node):
    gated = GatedChange()
    node = await start_node(handlers={"gated": gated})
    token = await node.login()
    change = node.queue.submit("gated", None, "paradrop")
    await wait_for(lambda: gated.contexts)
    gated.gates[0].errback(RuntimeError("disk on fire"))
    stream = open_stream(ws_url(node, change.id), token)
    was_clean, code, _ = await stream.done
    assert was_clean and code == 1000
    assert stream.messages[-1]["state"] == "failed"
    assert "disk on fire" in stream.messages[-1]["message"]
    assert [m["message"] for m in stream.messages[:3]][1:] == [f"change {change.id} started", "preparing"]


@pytest_twisted.ensureDeferred
async def test_a_queued_change_waits_for_the_running_one_and_can_be_cancelled(start_node):
    gated = GatedChange()
    node = await start_node(handlers={"gated": gated})
    token = await node.login()
    first = node.queue.submit("gated", "one", "paradrop")
    second = node.queue.submit("gated", "two", "paradrop")
    third = node.queue.submit("gated", "three", "paradrop")
    await wait_for(lambda: gated.contexts)
    await sleep(0.05)
    assert len(gated.contexts) == 1
    code, body, _ = await post_json(f"{node.url}/api/v1/changes/{first.id}/cancel", {}, token)
    assert code == 409 and body["error"]["code"] == "not_cancellable"
    code, body, _ = await post_json(f"{node.url}/api/v1/changes/{second.id}/cancel", {}, token)
    assert code == 200 and body["state"] == "cancelled"
    gated.gates[0].callback(None)
    await wait_for(lambda: len(gated.contexts) == 2)
    assert gated.contexts[1].change.id == third.id
    gated.gates[1].callback(None)
    done = await wait_for_change(node.url, third.id, token)
    assert done["state"] == "succeeded"
    code, listed = await get_json(node.url + "/api/v1/changes?state=cancelled", token)
    assert [c["id"] for c in listed] == [second.id]


@pytest_twisted.ensureDeferred
async def test_stream_refuses_missing_tokens_and_unknown_changes(node):
    token = await node.login()
    stream = open_stream(ws_url(node, 1), None)
    was_clean, _, reason = await stream.done
    assert not was_clean and "401" in str(reason)
    stream = open_stream(ws_url(node, 999), token)
    was_clean, _, reason = await stream.done
    assert not was_clean and "404" in str(reason)
