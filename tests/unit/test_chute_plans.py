"""Chute plans are pure: the same inputs give the same steps, each reversible before the commit."""
import dataclasses

import pytest

from pdserver.chutes.naming import ChuteNames, node_key
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.spec import build
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord
from pdserver.execution import chute_plans as plans

NODE = plans.NodeFacts(ChuteNames("unit-node"), NodePolicy(api_port=8080, default_memory=128 * 2 ** 20))
K = node_key("unit-node")


def spec(version=1, port=8001, image_service=False):
    services = {"main": {"type": "light", "image": "python3", "command": "python3 -m http.server 8000",
                         "requests": {"port-bindings": [{"external": port, "internal": 8000}]} if port else {}}}
    if image_service:
        services["side"] = {"type": "image", "image": "paradrop/busybox:latest", "command": ["sleep", "9999"]}
    return build({"name": "hello", "version": version, "web": {"service": "main", "port": 8000},
                  "services": services})


def record(s, deployment=5, state=RUNNING, source="/state/src/5"):
    return ChuteRecord(s.name, s.version, state, s.raw, deployment, source, 1.0, 1.0, NODE.names.volume(s.name))


def actions(steps):
    return [s.action for s in steps]


def test_install_builds_then_networks_then_starts_then_commits_last():
    steps = plans.plan_install(NODE, spec(image_service=True), 7, "/state/src/7", 10.0)
    assert actions(steps) == ["check_source", "build_image", "ensure_image", "create_network", "create_volume",
                              "create_container", "create_container", "start_container", "start_container",
                              "wait_ready", "wait_ready", "save_chute"]
    assert [s.commit for s in steps].count(True) == 1 and steps[-1].commit
    assert all(s.undo is not None for s in steps if s.action in ("build_image", "create_network", "create_volume",
                                                                    "create_container", "start_container"))
    create = next(s for s in steps if s.action == "create_container")
    assert create.args["name"] == f"paradrop-{K}-hello-main-7"
    assert create.args["labels"]["org.paradrop.chute"] == "hello"
    assert create.args["environment"]["PARADROP_DATA_DIR"] == "/data"
    assert create.args["port_bindings"] == [[8001, 8000, "tcp"]]
    assert "PARADROP_API_TOKEN" not in create.args["environment"]
    wait = [s for s in steps if s.action == "wait_ready"]
    assert {s.args["name"]: s.args["web_port"] for s in wait} == {f"paradrop-{K}-hello-main-7": 8000,
                                                                  f"paradrop-{K}-hello-side-7": None}
    assert plans.plan_install(NODE, spec(), 7, None, 10.0) == plans.plan_install(NODE, spec(), 7, None, 10.0)


def test_update_with_a_shared_port_stops_the_old_version_first_and_can_restart_it():
    old = record(spec(1))
    steps = plans.plan_update(NODE, old, spec(2), 9, "/state/src/9", 20.0)
    names = [(s.action, s.args.get("name")) for s in steps]
    stop_old = names.index(("stop_container", f"paradrop-{K}-hello-main-5"))
    create_new = names.index(("create_container", f"paradrop-{K}-hello-main-9"))
    start_new = names.index(("start_container", f"paradrop-{K}-hello-main-9"))
    commit = next(i for i, s in enumerate(steps) if s.commit)
    # the new container exists before the old one stops: the gap holds only the stop and the start
    assert create_new < stop_old < start_new < commit
    assert "drain_old" not in actions(steps)
    assert steps[stop_old].undo.action == "start_container"
    after = actions(steps[commit + 1:])
    assert after == ["remove_container", "remove_image", "remove_source"]
    assert steps[commit].args["record"]["deployment"] == 9 and steps[commit].args["record"]["version"] == "2"


@pytest.mark.parametrize("old_port, new_port", [(None, None), (8001, 8002), (8001, None)])
def test_update_without_a_shared_host_port_runs_both_versions_until_the_commit(old_port, new_port):
    steps = plans.plan_update(NODE, record(spec(1, port=old_port)), spec(2, port=new_port), 9, None, 20.0)
    commit = next(i for i, s in enumerate(steps) if s.commit)
    assert ("stop_container", f"paradrop-{K}-hello-main-5") in [(s.action, s.args.get("name")) for s in steps[commit:]]
    assert all(s.args.get("name") != f"paradrop-{K}-hello-main-5" for s in steps[:commit])
    # the old one drains right after the commit, before it stops
    assert actions(steps[commit + 1:commit + 3]) == ["drain_old", "stop_container"]


def test_an_update_of_a_stopped_chute_has_nothing_to_drain():
    steps = plans.plan_update(NODE, record(spec(1), state=STOPPED), spec(2, port=8002), 9, None, 20.0)
    assert "drain_old" not in actions(steps)


def test_delete_commits_right_after_stopping_and_then_removes_everything():
    steps = plans.plan_delete(NODE, record(spec(1)))
    assert actions(steps) == ["stop_container", "forget_chute", "remove_container", "remove_image", "remove_source",
                              "remove_network", "remove_volume"]
    assert steps[1].commit


def test_stop_start_restart_record_the_state():
    old = record(spec(1))
    assert plans.plan_stop(NODE, old, 3.0)[-1].args["record"]["state"] == STOPPED
    assert plans.plan_start(NODE, record(spec(1), state=STOPPED), 3.0)[-1].args["record"]["state"] == RUNNING
    assert actions(plans.plan_restart(NODE, old, 3.0))[:2] == ["stop_container", "start_container"]


def test_an_update_from_the_installed_project_does_not_remove_it_when_rolled_back():
    old = record(spec(1), source="/state/src/5")
    steps = plans.plan_update(NODE, old, spec(1), 9, "/state/src/5", 20.0)
    assert steps[0].action == "check_source" and steps[0].undo is None
    assert "remove_source" not in actions(steps)
    uploaded = plans.plan_update(NODE, old, spec(2), 9, "/state/src/9", 20.0)
    assert uploaded[0].undo.args == {"path": "/state/src/9"}


def test_reconcile_recreates_missing_objects_starts_stopped_ones_and_removes_orphans():
    rec = record(spec(1))
    observed = {"containers": {f"paradrop-{K}-hello-main-5": {"running": False}, f"paradrop-{K}-gone-main-1": {"running": True}},
                "networks": {f"paradrop-{K}-gone": {}}, "volumes": {f"paradrop-{K}-hello-data": {}},
                "images": {f"paradrop-chute/{K}-hello-main:1-5": {}, f"paradrop-chute/{K}-gone-main:1-1": {}}}
    steps = plans.plan_reconcile(NODE, [rec], observed)
    got = [(s.action, s.args.get("name") or s.args.get("image")) for s in steps]
    assert got == [("create_network", f"paradrop-{K}-hello"), ("remove_container", f"paradrop-{K}-gone-main-1"),
                   ("start_containers", None), ("remove_image", f"paradrop-chute/{K}-gone-main:1-1"),
                   ("remove_network", f"paradrop-{K}-gone")]
    assert steps[2].args["names"] == [f"paradrop-{K}-hello-main-5"]
    assert all(s.commit for s in steps)
    settled = {"containers": {f"paradrop-{K}-hello-main-5": {"running": True}}, "networks": {f"paradrop-{K}-hello": {}},
               "volumes": {f"paradrop-{K}-hello-data": {}}, "images": {f"paradrop-chute/{K}-hello-main:1-5": {}}}
    assert plans.plan_reconcile(NODE, [rec], settled) == []


def test_reconcile_stops_the_services_of_a_stopped_chute():
    steps = plans.plan_reconcile(NODE, [record(spec(1), state=STOPPED)], {
        "containers": {f"paradrop-{K}-hello-main-5": {"running": True}}, "networks": {f"paradrop-{K}-hello": {}},
        "volumes": {f"paradrop-{K}-hello-data": {}}, "images": {f"paradrop-chute/{K}-hello-main:1-5": {}}})
    assert [(s.action, s.args["name"]) for s in steps] == [("stop_container", f"paradrop-{K}-hello-main-5")]


def test_reconcile_removes_unpacked_projects_that_nothing_uses():
    rec = record(spec(1), source="/state/src/5")
    settled = {"containers": {f"paradrop-{K}-hello-main-5": {"running": True}}, "networks": {f"paradrop-{K}-hello": {}},
               "volumes": {f"paradrop-{K}-hello-data": {}}, "images": {f"paradrop-chute/{K}-hello-main:1-5": {}}}
    steps = plans.plan_reconcile(NODE, [rec], settled, (["/state/src/5", "/state/src/6", "/state/src/7"], ["/state/src/7"]))
    assert [(s.action, s.args["path"]) for s in steps] == [("remove_source", "/state/src/6")]


def test_two_nodes_name_every_object_of_a_same_named_chute_apart():
    other = plans.NodeFacts(ChuteNames("other-node"), NODE.policy)

    def objects(node):
        steps = plans.plan_install(node, spec(), 7, "/state/src/7", 10.0)
        return {s.args.get("name") or s.args.get("tag") for s in steps if s.action != "check_source"} - {None}
    mine, theirs = objects(NODE), objects(other)
    assert len(mine) == 4 and not mine & theirs  # image, network, volume, container


def test_containers_get_the_policy_grants_default_memory_and_asked_capabilities():
    description = {"name": "caps", "version": 1, "services": {
        "plain": {"type": "image", "image": "x"},
        "admin": {"type": "image", "image": "x", "requests": {"capabilities": ["NET_ADMIN"], "memory": "64M"}}}}
    steps = plans.plan_install(NODE, build(description), 3, None, 1.0)
    creates = {s.args["aliases"][0]: s.args for s in steps if s.action == "create_container"}
    assert (creates["plain"]["capabilities"], creates["plain"]["memory"]) == (["NET_BIND_SERVICE"], 128 * 2 ** 20)
    assert (creates["admin"]["capabilities"], creates["admin"]["memory"]) == (
        ["NET_ADMIN", "NET_BIND_SERVICE"], 64 * 2 ** 20)


def legacy_record(state=RUNNING):
    """A chute the release before node-scoped names installed: its record names that release's volume."""
    return dataclasses.replace(record(spec(1), state=state), volume="paradrop-hello-data")


def test_install_records_the_node_scoped_volume_and_update_and_delete_use_the_recorded_one():
    install = plans.plan_install(NODE, spec(), 7, None, 10.0)
    assert install[-1].args["record"]["volume"] == f"paradrop-{K}-hello-data"
    update = plans.plan_update(NODE, legacy_record(), spec(2), 9, None, 20.0)
    assert [s.args["volumes"] for s in update if s.action == "create_container"] == [{"paradrop-hello-data": "/data"}]
    assert {s.args["name"] for s in update if s.action == "create_volume"} == {"paradrop-hello-data"}
    assert next(s for s in update if s.commit).args["record"]["volume"] == "paradrop-hello-data"
    delete = plans.plan_delete(NODE, legacy_record())
    assert [s.args["name"] for s in delete if s.action == "remove_volume"] == ["paradrop-hello-data"]


def test_reconcile_replaces_legacy_objects_once_the_new_ones_exist_and_keeps_the_recorded_volume():
    legacy = {"containers": {"paradrop-hello-main-5": {"running": True}}, "networks": {"paradrop-hello": {}},
              "volumes": {"paradrop-hello-data": {}}, "images": {"paradrop-chute/hello-main:1-5": {}}}
    steps = plans.plan_reconcile(NODE, [legacy_record()], legacy)
    got = [(s.action, s.args.get("name") or s.args.get("image") or s.args.get("tag")) for s in steps]
    assert got == [("create_network", f"paradrop-{K}-hello"), ("build_image", f"paradrop-chute/{K}-hello-main:1-5"),
                   ("create_container", f"paradrop-{K}-hello-main-5"), ("remove_container", "paradrop-hello-main-5"),
                   ("start_containers", None), ("remove_image", "paradrop-chute/hello-main:1-5"),
                   ("remove_network", "paradrop-hello")]
    assert steps[2].args["volumes"] == {"paradrop-hello-data": "/data"}
    assert steps[2].args["network"] == f"paradrop-{K}-hello"


def test_reconcile_keeps_both_the_recorded_volume_and_the_chutes_node_scoped_one():
    """A volume under the chute's new name may hold its data too (a node that ran a build between the
    renaming and recorded volume names): nothing says which one, so neither goes."""
    settled = {"containers": {f"paradrop-{K}-hello-main-5": {"running": True}}, "networks": {f"paradrop-{K}-hello": {}},
               "volumes": {"paradrop-hello-data": {}, f"paradrop-{K}-hello-data": {}, f"paradrop-{K}-gone-data": {}},
               "images": {f"paradrop-chute/{K}-hello-main:1-5": {}}}
    steps = plans.plan_reconcile(NODE, [legacy_record()], settled)
    assert [(s.action, s.args["name"]) for s in steps] == [("remove_volume", f"paradrop-{K}-gone-data")]


def test_containers_get_the_name_servers_their_service_asks_for():
    description = {"name": "dns", "version": 1, "services": {
        "plain": {"type": "image", "image": "x"},
        "resolver": {"type": "image", "image": "x", "dns": ["9.9.9.9", "2620:fe::fe"]}}}
    steps = plans.plan_install(NODE, build(description), 3, None, 1.0)
    creates = {s.args["aliases"][0]: s.args for s in steps if s.action == "create_container"}
    assert (creates["plain"]["dns"], creates["resolver"]["dns"]) == ([], ["9.9.9.9", "2620:fe::fe"])
