"""What keeps chutes apart from the node and from each other on the real engine: safer defaults
(capabilities, no-new-privileges, a memory limit) that the owner can read, the host ports the node keeps,
two nodes sharing one engine, and a build killed with the node leaving nothing behind."""
import signal

import pytest
import pytest_twisted
import treq

from pdserver.chutes.policy import DEFAULT_MEMORY
from tests.conftest import free_port, wait_until
from tests.integration.chute_helpers import submit_tar, unique, wait_change, write_project
from tests.integration.http import get_json, post_json, put_json, sleep, wait_for_change

pytestmark = pytest.mark.docker


def image_chute(name, services):
    return {"name": name, "version": 1, "services": {
        svc: {"type": "image", "image": "paradrop/busybox:latest", **extra} for svc, extra in services.items()}}


async def installed(node, token, config):
    code, body, _ = await post_json(f"{node.url}/api/v1/chutes", {"config": config}, token)
    assert code == 202, body
    return await wait_for_change(node.url, body["change_id"], token, timeout=60)


async def served(port, timeout=20.0):
    """The body served on 127.0.0.1:port once it answers."""
    waited = 0.0
    while True:
        try:
            response = await treq.get(f"http://127.0.0.1:{port}/", timeout=2, persistent=False)
            if response.code == 200:
                return await treq.text_content(response)
        except Exception:
            if waited > timeout:
                raise
        await sleep(0.1)
        waited += 0.1


SERVE_DATA = ("[ -f /data/owner ] || echo $MARK > /data/owner; mkdir -p /www; cp /data/owner /www/index.html; "
              "exec httpd -f -p 8000 -h /www")


@pytest_twisted.ensureDeferred
async def test_two_nodes_on_one_engine_keep_same_named_chutes_apart(start_node, tmp_path, engine):
    first = await start_node(state_dir=tmp_path / "first")
    second = await start_node(state_dir=tmp_path / "second")
    name, ports = unique("twin"), {}
    for node, mark in ((first, "first"), (second, "second")):
        ports[mark] = free_port()
        config = image_chute(name, {"main": {"command": ["sh", "-c", SERVE_DATA], "environment": {"MARK": mark},
                                             "requests": {"port-bindings": [{"external": ports[mark],
                                                                             "internal": 8000}]}}})
        change = await installed(node, await node.login(), config)
        assert change["state"] == "succeeded", change
    assert await served(ports["first"]) == "first\n"
    assert await served(ports["second"]) == "second\n", "each node's chute has its own /data"
    networks = engine.networks.list(filters={"label": f"org.paradrop.chute={name}"})
    volumes = engine.volumes.list(filters={"label": f"org.paradrop.chute={name}"})
    assert len({n.name for n in networks}) == 2 and len({v.name for v in volumes}) == 2

    token = await first.login()
    response = await treq.delete(f"{first.url}/api/v1/chutes/{name}", headers={"Authorization": f"Bearer {token}"})
    assert response.code == 202
    change = await wait_for_change(first.url, (await treq.json_content(response))["change_id"], token, timeout=60)
    assert change["state"] == "succeeded", change
    assert await served(ports["second"]) == "second\n", "deleting one node's chute leaves the other serving"
    second_token = await second.login()
    code, state = await get_json(f"{second.url}/api/v1/chutes/{name}", second_token)
    assert code == 200 and state["service_states"][0]["running"]
    assert len(engine.volumes.list(filters={"label": f"org.paradrop.chute={name}"})) == 1


@pytest_twisted.ensureDeferred
async def test_services_run_with_dropped_capabilities_and_a_memory_limit_that_the_owner_sees(node, engine):
    token = await node.login()
    name = unique("caps")
    config = image_chute(name, {
        "plain": {"command": ["sleep", "3600"]},
        "admin": {"command": ["sh", "-c", "ip link set lo down && echo admin-ok; exec sleep 3600"],
                  "requests": {"capabilities": ["NET_ADMIN"], "memory": "32M"}}})
    change = await installed(node, token, config)
    assert change["state"] == "succeeded", change
    code, state = await get_json(f"{node.url}/api/v1/chutes/{name}", token)
    granted = {s["name"]: (s["capabilities"], s["memory"]) for s in state["service_states"]}
    assert granted == {"plain": (["NET_BIND_SERVICE"], DEFAULT_MEMORY),
                       "admin": (["NET_ADMIN", "NET_BIND_SERVICE"], 32 * 2 ** 20)}
    plain = engine.containers.list(filters={"label": [f"org.paradrop.chute={name}", "org.paradrop.service=plain"]})
    host_config = plain[0].attrs["HostConfig"]
    assert host_config["CapDrop"] == ["ALL"] and host_config["SecurityOpt"] == ["no-new-privileges"]
    code, logs = await get_json(f"{node.url}/api/v1/chutes/{name}/logs", token)
    assert {"service": "admin", "message": "admin-ok"} in logs["lines"]


@pytest_twisted.ensureDeferred
async def test_the_api_refuses_a_chute_outside_the_nodes_policy_before_queueing_it(node):
    token = await node.login()
    before = len((await get_json(f"{node.url}/api/v1/changes", token))[1])
    for requests, field in (({"port-bindings": [{"external": 22, "internal": 80}]},
                             "services.main.requests.port-bindings[0].external"),
                            ({"memory": "0"}, "services.main.requests.memory")):
        config = image_chute(unique("policy"), {"main": {"command": ["sleep", "3600"], "requests": requests}})
        code, body, _ = await post_json(f"{node.url}/api/v1/chutes", {"config": config}, token)
        assert code == 400 and body["error"]["field"] == field, body
    assert len((await get_json(f"{node.url}/api/v1/changes", token))[1]) == before


async def failed_install(node, description):
    """Submit an install the API has not checked, so the change handler's own check is what answers."""
    change = node.queue.submit("install", description["name"], "paradrop", {"description": description})
    token = await node.login()
    return await wait_for_change(node.url, change.id, token, timeout=30)


@pytest_twisted.ensureDeferred
async def test_the_change_handler_keeps_the_nodes_ports_and_privileged_ports_follow_the_switch(node, engine):
    token = await node.login()
    api_port = int(node.url.rsplit(":", 1)[1])
    for port, protocol in ((22, "tcp"), (53, "udp"), (67, "udp"), (api_port, "tcp")):
        config = image_chute(unique("port"), {"main": {"command": ["sleep", "3600"], "requests": {"port-bindings": [
            {"external": free_port(), "internal": 80}, {"external": port, "internal": 80, "protocol": protocol}]}}})
        change = await failed_install(node, config)
        assert change["state"] == "failed" and str(port) in change["result"]["message"]
        assert change["result"]["field"] == "services.main.requests.port-bindings[1].external"
    change = await failed_install(node, image_chute(unique("mem"), {"main": {"requests": {"memory": "0"}}}))
    assert change["state"] == "failed" and change["result"]["field"] == "services.main.requests.memory"

    web = {"command": ["sh", "-c", "mkdir -p /www && echo low-port > /www/index.html && exec httpd -f -p 80 -h /www"],
           "requests": {"port-bindings": [{"external": 81, "internal": 80}]}}
    name = unique("low")
    change = await installed(node, token, image_chute(name, {"main": web}))
    assert change["state"] == "succeeded", change
    assert await served(81) == "low-port\n"

    code, config = await get_json(f"{node.url}/api/v1/config/hostconfig", token)
    config["system"]["chutePrivilegedPorts"] = False
    code, body = await put_json(f"{node.url}/api/v1/config/hostconfig", config, token)
    assert (await wait_for_change(node.url, body["change_id"], token))["state"] == "succeeded"
    refused = image_chute(unique("low"), {"main": {**web, "requests": {"port-bindings": [
        {"external": 82, "internal": 80}]}}})
    change = await failed_install(node, refused)
    assert change["state"] == "failed" and "chutePrivilegedPorts" in change["result"]["message"]
    assert change["result"]["field"] == "services.main.requests.port-bindings[0].external"


def test_a_build_killed_with_the_node_leaves_only_labelled_layers_and_reconcile_removes_them(
        node_process, tmp_path, engine):
    session, url = node_process.session(), node_process.url
    node_label = f"org.paradrop.node={(node_process.state_dir / 'node-id').read_text().strip()}"
    description = {"name": unique("killed"), "version": 1, "services": {"main": {"type": "normal"}}}
    files = {"Dockerfile": "FROM paradrop/busybox:latest\nRUN echo layer > /layer\nRUN sleep 60\n"}
    response = submit_tar(session, url, write_project(tmp_path / "p", description, files))
    assert response.status_code == 202, response.text
    change_id = response.json()["change_id"]

    def sleeping():
        change = session.get(f"{url}/api/v1/changes/{change_id}", timeout=10).json()
        return any("RUN sleep 60" in m["message"] for m in change["messages"])
    wait_until(sleeping, timeout=60, message="the build to reach its long step")
    # sparse: no inspect of each container listed, which fails when the build removes a step's container between
    # the list and the inspect
    labelled = lambda: engine.containers.list(all=True, sparse=True, filters={"label": node_label})  # noqa: E731
    wait_until(labelled, timeout=10, message="the builder's container, labelled with the node")
    node_process.stop(signal.SIGKILL)
    wait_until(lambda: not labelled(), timeout=30, message="the engine to end the build of a client that is gone")
    left = engine.images.list(filters={"label": node_label, "dangling": True})
    assert left, "the killed build's last layer is left, and it carries the node label"

    node_process.start()
    session = node_process.session()
    reconcile = next(c for c in session.get(f"{url}/api/v1/changes").json() if c["type"] == "reconcile")
    assert wait_change(session, url, reconcile["id"])["state"] == "succeeded"
    assert engine.images.list(all=True, filters={"label": node_label}) == []
    assert labelled() == []
