"""Small async HTTP helpers over treq for tests against an in-process node."""
import treq
from twisted.internet import reactor, task


def _headers(token=None, headers=None):
    out = dict(headers or {})
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


async def post_json(url, body, token=None, headers=None):
    response = await treq.post(url, json=body, headers=_headers(token, headers))
    return response.code, await treq.json_content(response), response


async def put_json(url, body, token=None):
    response = await treq.put(url, json=body, headers=_headers(token))
    return response.code, await treq.json_content(response)


async def get_json(url, token=None, headers=None):
    response = await treq.get(url, headers=_headers(token, headers))
    return response.code, await treq.json_content(response)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


async def wait_for_change(node_url, change_id, token, states=("succeeded", "failed", "cancelled", "interrupted"),
                          timeout=10.0):
    """Poll a change until it reaches one of ``states``; returns the change."""
    waited = 0.0
    while waited < timeout:
        code, change = await get_json(f"{node_url}/api/v1/changes/{change_id}", token)
        assert code == 200, change
        if change["state"] in states:
            return change
        await sleep(0.01)
        waited += 0.01
    raise AssertionError(f"change {change_id} stayed {change['state']}")


async def wait_for(predicate, timeout=10.0, interval=0.005):
    """Yield to the reactor until ``predicate()`` holds."""
    waited = 0.0
    while not predicate():
        if waited > timeout:
            raise AssertionError("timed out waiting for a condition")
        await sleep(interval)
        waited += interval
