"""kill -9 after every step of the install, update and delete plans: the next start converges to the
old or the new state, never in between, and leaves no orphan container, network, volume or image."""
import pytest
import requests

from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, ChuteRecord
from pdserver.execution import chute_plans
from tests.conftest import free_port, wait_until
from tests.integration.chute_helpers import (act, install, objects_labelled, submit_tar, unique, wait_change,
                                             write_project)

pytestmark = pytest.mark.docker

FAST = {"PARADROP_READY_GRACE": "0.2"}


def busybox_web(name, version, port):
    return {"name": name, "version": version, "web": {"service": "main", "port": 8000},
            "services": {"main": {"type": "light", "image": "busybox",
                                  "command": "httpd -f -p 8000 -h /opt/chute/www",
                                  "requests": {"port-bindings": [{"external": port, "internal": 8000}]}}}}


def project(tmp_path, name, version, port):
    return write_project(tmp_path / f"v{version}", busybox_web(name, version, port),
                         {"www/index.html": f"version {version}\n"})


def plan_length(kind):
    spec1, spec2 = build(busybox_web("x", 1, 1)), build(busybox_web("x", 2, 1))
    record = ChuteRecord("x", "1", RUNNING, spec1.raw, 1, "/src/1", 0.0, 0.0, "paradrop-x-data")
    node = chute_plans.NodeFacts(ChuteNames("any"), NodePolicy(api_port=8080))
    return len({"install": chute_plans.plan_install(node, spec1, 2, "/src/2", 0.0),
                "update": chute_plans.plan_update(node, record, spec2, 2, "/src/2", 0.0),
                "delete": chute_plans.plan_delete(node, record)}[kind])


CASES = [(kind, step) for kind in ("install", "update", "delete") for step in range(plan_length(kind))]


def served(port):
    try:
        return requests.get(f"http://127.0.0.1:{port}/", timeout=2).text
    except requests.RequestException:
        return None


def converged_state(session, url, name, port):
    """'absent' or the version that runs, after checking nothing of any other state is left."""
    objects = objects_labelled(name)
    response = session.get(f"{url}/api/v1/chutes/{name}")
    if response.status_code == 404:
        assert objects == {"containers": [], "networks": [], "volumes": [], "images": []}, objects
        return "absent"
    chute = response.json()
    cache = session.get(f"{url}/api/v1/chutes/{name}/cache").json()
    assert sorted(objects["containers"]) == sorted(cache["containers"].values()), (objects, cache)
    assert sorted(objects["images"]) == sorted(cache["images"].values()), (objects, cache)
    assert objects["networks"] == [cache["network"]] and objects["volumes"] == [cache["volume"]]
    assert chute["state"] == "running"
    text = wait_until(lambda: served(port), timeout=15, message="the chute to serve")
    assert text == f"version {chute['version']}\n"
    return chute["version"]


@pytest.mark.parametrize("kind, step", CASES)
def test_kill_9_after_each_step_converges_to_the_old_or_the_new_state(node_process_factory, tmp_path, kind, step):
    node = node_process_factory(**FAST)
    node.start()
    session, url = node.session(), node.url
    name, port = unique("crash"), free_port()
    if kind != "install":
        assert install(session, url, project(tmp_path, name, 1, port))["state"] == "succeeded"
    node.stop()

    node.env_extra = {**FAST, "PARADROP_TEST_FAULTS": "1", "PARADROP_CRASH_AFTER_STEP": str(step)}
    node.start()
    session = node.session()
    try:
        if kind == "install":
            submit_tar(session, url, project(tmp_path, name, 1, port))
        elif kind == "update":
            submit_tar(session, url, project(tmp_path, name, 2, port), name=name)
        else:
            session.delete(f"{url}/api/v1/chutes/{name}", timeout=10)
    except requests.ConnectionError:
        pass  # killed before the answer left
    assert node.wait_exit(timeout=60) == -9

    node.env_extra = dict(FAST)
    node.start()
    session = node.session()
    changes = session.get(f"{url}/api/v1/changes").json()
    for change in changes:
        wait_change(session, url, change["id"])
    changes = session.get(f"{url}/api/v1/changes").json()
    crashed = next(c for c in changes if c["type"] == kind)
    assert crashed["state"] == "interrupted" and not crashed["needs_attention"], crashed
    reconcile = changes[0]
    assert reconcile["type"] == "reconcile" and reconcile["state"] == "succeeded", reconcile

    state = converged_state(session, url, name, port)
    expected = {"install": ("absent", "1"), "update": ("1", "2"), "delete": ("1", "absent")}[kind]
    assert state in expected
    if state != "absent":
        assert act(session, url, name, "delete")["state"] == "succeeded"
