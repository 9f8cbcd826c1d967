"""Every chute plan, failing at every step, through the real queue, executor and actions on a MemoryEngine.

Before the commit step has finished, a failure leaves the old state: the same records, engine objects and
project dirs as before the change. After it, the new records stand, the new services run, and the next
reconcile removes what the clean-up left. When the undos fail too, the change asks for attention. Whatever
a change leaves, after failing undos or an engine that stopped answering in the middle, the next reconcile
converges on the records, old or new; on a node upgraded from the release before node-scoped names, that
means every chute on the /data volume it had. The steps come from the plans as a fault-free run journals them."""
import tempfile
from pathlib import Path

import pytest

from pdserver.changes.model import ChangeState
from pdserver.containers.errors import EngineUnavailable
from tests.unit.memory_node import (NAMES, UnitNode, committed, description, expected, holding_data,
                                    previous_release_node)


def install(node, **kwargs):
    chute = description(**kwargs)
    change = node.run("install", chute["name"], description=chute, source_dir=node.upload(chute))
    assert change.state is ChangeState.SUCCEEDED, change.result


def install_stopped(node):
    install(node)
    assert node.run("stop", "hello").state is ChangeState.SUCCEEDED


def drift(node):
    """What a node can find after a power cut: a service gone, one stopped, an image gone, the objects
    and project of a chute whose record was lost (holding a host port another chute needs), and a
    project dir nothing uses."""
    install(node, port=None)
    install(node, name="spare", port=8002)
    hello, spare = node.store.get("hello"), node.store.get("spare")
    node.engine.remove_container(NAMES.container("hello", "main", hello.deployment))
    node.engine.stop_container(NAMES.container("hello", "side", hello.deployment))
    for service in ("main", "side"):
        node.engine.remove_container(NAMES.container("spare", service, spare.deployment))
    node.engine.remove_image(NAMES.image("spare", "main", "1", spare.deployment))
    install(node, name="gone", port=8002)
    node.store.delete("gone")
    (node.sources / "stray").mkdir()


def updated(node, **kwargs):
    chute = description(**kwargs)
    return "update", "hello", {"description": chute, "source_dir": node.upload(chute)}


def in_place(node):
    """A restart with new environment variables: an update to the same version from the same project."""
    record = node.store.get("hello")
    chute = {**record.description, "environment": {"GREETING": "hi"}}
    return "update", "hello", {"description": chute, "source_dir": record.source_dir, "same_version_ok": True}


# name -> (set the node up, the change to make)
SCENARIOS = {
    "install": (lambda node: None,
                lambda node: ("install", "hello", {"description": description(),
                                                   "source_dir": node.upload(description())})),
    "update-beside-the-old": (lambda node: install(node, port=None), lambda node: updated(node, version=2)),
    "update-stopping-the-old-first": (install, lambda node: updated(node, version=2)),
    "update-in-place": (install, in_place),
    "delete": (install, lambda node: ("delete", "hello", {})),
    "start": (install_stopped, lambda node: ("start", "hello", {})),
    "stop": (install, lambda node: ("stop", "hello", {})),
    "restart": (install, lambda node: ("restart", "hello", {})),
    "reconcile": (drift, lambda node: ("reconcile", None, {})),
    "reconcile-after-upgrade": (lambda node: None, lambda node: ("reconcile", None, {})),
}
# Scenarios whose node starts on an earlier state than a new one's.
NODES = {"reconcile-after-upgrade": previous_release_node}


def prepared(root: Path, scenario: str):
    """A node set up for ``scenario``, what it holds (records, objects, volumes holding data), and the change
    to submit (not yet submitted)."""
    node = NODES.get(scenario, UnitNode)(root)
    setup, change = SCENARIOS[scenario]
    setup(node)
    before = (node.store.list(), node.observed(), holding_data(node.engine))
    return node, before, change(node)


def outline(step: dict, root) -> tuple:
    """A step without its arguments; its description without the test's own directory."""
    return step["action"], step["description"].replace(str(root), "<root>"), step["commit"]


def journaled_plan(scenario: str):
    with tempfile.TemporaryDirectory() as root:
        node, _, (type_, target, params) = prepared(Path(root), scenario)
        change = node.run(type_, target, **params)
        assert change.state is ChangeState.SUCCEEDED, change.result
        return [outline(step, root) for step in node.steps(change.id)]


PLANS = {scenario: journaled_plan(scenario) for scenario in SCENARIOS}


def cases(engine_gone=False):
    """Every step failing before it acts, and the commit step also after it acted: elsewhere that is the
    same as the next step failing before it acts, but there the change still rolls back."""
    params = []
    for scenario, plan in PLANS.items():
        commit = next(i for i, (_, _, is_commit) in enumerate(plan) if is_commit)
        for index, (action, _, _) in enumerate(plan):
            modes = ("engine-gone",) if engine_gone else ("before", "after") if index == commit else ("before",)
            params += [pytest.param(scenario, index, mode, id=f"{scenario}-{index}-{action}-{mode}") for mode in modes]
    return params


def fail_at(tmp_path, scenario, index, mode, undos=False):
    """Run the scenario's change with step ``index`` failing ``before`` it acts or ``after``, or with the
    engine refusing every call from that step on (``engine-gone``, back when the change has ended);
    ``undos`` fail them all too. The node, the records and objects before, the change, its journaled
    plan and the index of its commit step."""
    node, before, (type_, target, params) = prepared(tmp_path, scenario)
    back = []
    if mode == "engine-gone":
        node.faults.arm(index, hook=lambda: back.append(node.engine.fail_when(
            lambda method, args: True, EngineUnavailable("connection refused"))))
    else:
        node.faults.arm(index, mode, undos)
    change = node.run(type_, target, **params)
    node.faults.disarm()
    for remove in back:
        remove()
    plan = node.steps(change.id)
    assert [outline(step, tmp_path) for step in plan] == PLANS[scenario]
    assert not (change.result["message"] or "").startswith("internal error"), change.result
    return node, before, change, plan, next(i for i, step in enumerate(plan) if step["commit"])


def reconcile_converges(node, held):
    """The next reconcile converges on the records, and no volume that held data has lost it (none of the
    scenarios deletes one)."""
    change = node.run("reconcile")
    assert change.state is ChangeState.SUCCEEDED, change.result
    assert node.observed() == expected(node.store.list())
    assert holding_data(node.engine) == held


@pytest.mark.parametrize("scenario, index, when", cases())
def test_a_failing_step_leaves_the_old_state_or_after_the_commit_the_new_one(tmp_path, scenario, index, when):
    node, (records, objects, held), change, plan, commit = fail_at(tmp_path, scenario, index, when)
    assert change.state is ChangeState.FAILED
    if index <= commit:
        assert "rolled back" in change.result["message"] and not change.needs_attention
        assert node.store.list() == records
        if when == "after" and plan[index]["commit"] and not plan[index]["undo"]:
            reconcile_converges(node, held)  # reconcile's steps only go forward: what one did stays done
        else:
            assert node.observed() == objects and holding_data(node.engine) == held
        return
    assert change.needs_attention and change.result["failed_step"] == plan[index]["description"]
    assert node.store.list() == committed(records, plan[commit])
    if not scenario.startswith("reconcile"):  # the new services run; leftovers of the old may remain
        wanted = expected(node.store.list())["containers"]
        assert {name: node.observed()["containers"].get(name) for name in wanted} == wanted
    reconcile_converges(node, held)


def batch_end(plan, index: int) -> int:
    """The last step that ran with step ``index``: steps marked together run at once, so all of them are undone."""
    end = index
    while plan[index]["together"] and end + 1 < len(plan) and plan[end + 1]["together"]:
        end += 1
    return end


@pytest.mark.parametrize("scenario, index, when", cases())
def test_failing_undos_ask_for_attention_and_the_next_reconcile_converges(tmp_path, scenario, index, when):
    node, (records, _, held), change, plan, commit = fail_at(tmp_path, scenario, index, when, undos=True)
    assert change.state is ChangeState.FAILED
    undone = [(i, step) for i, step in enumerate(plan[:batch_end(plan, index) + 1]) if step["undo"]
              ] if index <= commit else []
    assert change.needs_attention == (bool(undone) or index > commit)
    if undone:
        assert change.result["message"].startswith(f"step {index + 1} ({plan[index]['description']}) failed")
        assert change.result["undo_errors"] == [
            f"undo of step {i + 1} ({step['description']}) failed: injected failure of an undo"
            for i, step in reversed(undone)]
    assert node.store.list() in (records, committed(records, plan[commit]))
    reconcile_converges(node, held)


@pytest.mark.parametrize("scenario, index, mode", cases(engine_gone=True))
def test_an_engine_that_stops_answering_mid_change_leaves_a_state_reconcile_repairs(tmp_path, scenario, index, mode):
    node, (records, _, held), change, plan, commit = fail_at(tmp_path, scenario, index, mode)
    after = committed(records, plan[commit])
    if change.state is ChangeState.SUCCEEDED:  # what was left needed only the records
        assert node.store.list() == after
    else:
        assert node.store.list() in (records, after)
    reconcile_converges(node, held)
