"""A node upgraded from the release before node-scoped Docker names keeps every chute's /data: its store
migrates to name each chute's legacy volume, and the first reconcile moves the chutes onto objects under
the new names that still mount it, removing only the old objects that hold no data."""
from pdserver.changes.model import ChangeState
from pdserver.chutes.naming import legacy_volume
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord, ChuteStore
from tests import previous_release
from tests.unit.memory_node import (NAMES, PULLED_IMAGE, description, expected, holding_data, memory_database,
                                    previous_release_node)

LEGACY = {previous_release.volume("hello"), previous_release.volume("spare")}


def test_the_previous_store_migrates_to_name_each_chutes_legacy_volume_and_keeps_new_names():
    conn = memory_database()
    previous_release.write_store(conn, [(description("hello"), RUNNING, 7, "/state/src/7")])
    store = ChuteStore(conn)
    [hello] = store.list()
    assert (hello.name, hello.deployment, hello.volume) == ("hello", 7, previous_release.volume("hello"))
    assert legacy_volume("hello") == previous_release.volume("hello")
    new = ChuteRecord("new", "1", STOPPED, description("new"), 9, None, 2.0, 2.0, NAMES.volume("new"))
    store.save(new)
    assert ChuteStore(conn).list() == [hello, new]


def test_a_record_journaled_by_the_previous_release_names_the_legacy_volume():
    journaled = {"name": "hello", "version": "1", "state": RUNNING, "description": description(), "deployment": 7,
                 "source_dir": None, "installed": 1.0, "updated": 1.0}
    assert ChuteRecord.from_dict(journaled).volume == previous_release.volume("hello")


def created_volumes(node, change_id) -> dict:
    """container -> the volumes it mounts, of the containers a change created."""
    return {step["args"]["name"]: step["args"]["volumes"] for step in node.steps(change_id)
            if step["action"] == "create_container"}


def test_the_first_reconcile_runs_the_chutes_on_their_legacy_volumes_and_removes_only_dataless_objects(tmp_path):
    node = previous_release_node(tmp_path)
    assert holding_data(node.engine) == LEGACY
    change = node.run("reconcile")
    assert change.state is ChangeState.SUCCEEDED, change.result
    records = node.store.list()
    assert node.observed() == expected(records)  # no old container, network or image is left
    assert {r.name: (r.state, r.volume) for r in records} == {
        "hello": (RUNNING, previous_release.volume("hello")), "spare": (STOPPED, previous_release.volume("spare"))}
    assert node.observed()["containers"] == {NAMES.container("hello", "main", 7): True,
                                             NAMES.container("hello", "side", 7): True,
                                             NAMES.container("spare", "main", 8): False,
                                             NAMES.container("spare", "side", 8): False}
    assert created_volumes(node, change.id) == {
        NAMES.container(chute, service, deployment): {previous_release.volume(chute): "/data"}
        for chute, deployment in (("hello", 7), ("spare", 8)) for service in ("main", "side")}
    assert holding_data(node.engine) == LEGACY
    assert node.observed()["volumes"] == LEGACY and PULLED_IMAGE in node.engine.objects()["images"]
    assert node.run("reconcile").result["steps"] == 0


def test_an_upgraded_chute_keeps_its_volume_through_an_update_and_loses_it_only_when_deleted(tmp_path):
    node = previous_release_node(tmp_path)
    assert node.run("reconcile").state is ChangeState.SUCCEEDED
    chute = description(version=2)
    update = node.run("update", "hello", description=chute, source_dir=node.upload(chute))
    assert update.state is ChangeState.SUCCEEDED, update.result
    mounts = created_volumes(node, update.id)
    assert len(mounts) == 2 and all(m == {previous_release.volume("hello"): "/data"} for m in mounts.values())
    assert node.store.get("hello").volume == previous_release.volume("hello")
    assert holding_data(node.engine) == LEGACY
    assert node.run("delete", "hello").state is ChangeState.SUCCEEDED
    assert holding_data(node.engine) == {previous_release.volume("spare")}
    reinstalled = description()
    install = node.run("install", "hello", description=reinstalled, source_dir=node.upload(reinstalled))
    assert install.state is ChangeState.SUCCEEDED, install.result
    assert node.store.get("hello").volume == NAMES.volume("hello")
    assert node.observed() == expected(node.store.list())
