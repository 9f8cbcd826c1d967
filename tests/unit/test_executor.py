"""The executor: journaled steps, reverse undo on failure, rollback after a crash."""
import pytest

from pdserver.execution.executor import Executor, RollbackFailed, StepFailed
from pdserver.chutes.naming import ChuteNames
from pdserver.execution.plans import plan_hostconfig
from pdserver.execution.steps import Step


class Journal:
    def __init__(self):
        self.events = []

    def progress(self, message):
        self.events.append(("progress", message))

    def record_plan(self, steps):
        self.events.append(("plan", len(steps)))

    def step_state(self, index, state, error=None):
        self.events.append((state, index))


def recording_actions(log, fail_on=()):
    def act(args, progress):
        if args["name"] in fail_on:
            raise RuntimeError(f"{args['name']} broke")
        log.append(args["name"])
    return {"act": act}


def step(name):
    return Step("act", {"name": name}, f"do {name}", undo=Step("act", {"name": "undo-" + name}, f"undo {name}"))


def commit_step(name):
    return Step("act", {"name": name}, f"commit {name}", commit=True)


def result_of(d):
    results = []
    d.addBoth(results.append)
    return results[0]


def test_steps_run_in_order_and_are_journaled():
    log, journal = [], Journal()
    result_of(Executor(recording_actions(log)).run([step("a"), step("b")], journal))
    assert log == ["a", "b"]
    assert journal.events[0] == ("plan", 2)
    assert ("finished", 0) in journal.events and ("finished", 1) in journal.events


def test_a_failing_step_undoes_itself_and_the_finished_steps_in_reverse():
    log, journal = [], Journal()
    failure = result_of(Executor(recording_actions(log, fail_on={"c"})).run([step("a"), step("b"), step("c")],
                                                                              journal))
    assert failure.check(StepFailed)
    assert failure.value.undo_errors == []
    assert log == ["a", "b", "undo-c", "undo-b", "undo-a"]


def test_a_failing_undo_is_reported_and_the_other_undos_still_run():
    log, journal = [], Journal()
    failure = result_of(Executor(recording_actions(log, fail_on={"c", "undo-b"})).run(
        [step("a"), step("b"), step("c")], journal))
    assert len(failure.value.undo_errors) == 1 and "do b" in failure.value.undo_errors[0]
    assert log == ["a", "b", "undo-c", "undo-a"]
    assert ("undo-failed", 1) in journal.events


def test_recovery_rolls_back_a_change_that_had_not_committed():
    log, journal = [], Journal()
    journaled = [{"index": 0, "step": step("a").to_dict(), "state": "finished"},
                 {"index": 1, "step": step("b").to_dict(), "state": "started"},
                 {"index": 2, "step": commit_step("c").to_dict(), "state": "pending"}]
    assert result_of(Executor(recording_actions(log)).recover(journaled, journal)) == ("back", 2)
    assert log == ["undo-b", "undo-a"]
    failure = result_of(Executor(recording_actions([], fail_on={"undo-a"})).recover(journaled, journal))
    assert failure.check(RollbackFailed)


def test_recovery_rolls_forward_a_change_that_had_committed():
    log, journal = [], Journal()
    journaled = [{"index": 0, "step": step("a").to_dict(), "state": "finished"},
                 {"index": 1, "step": commit_step("b").to_dict(), "state": "finished"},
                 {"index": 2, "step": step("c").to_dict(), "state": "started"},
                 {"index": 3, "step": step("d").to_dict(), "state": "pending"}]
    assert result_of(Executor(recording_actions(log)).recover(journaled, journal)) == ("forward", 2)
    assert log == ["c", "d"]


def test_a_failure_after_the_commit_step_undoes_nothing():
    log, journal = [], Journal()
    failure = result_of(Executor(recording_actions(log, fail_on={"c"})).run(
        [step("a"), commit_step("b"), step("c")], journal))
    assert failure.value.committed
    assert log == ["a", "b"]


def test_plans_naming_unknown_actions_are_refused_before_anything_runs():
    log = []
    with pytest.raises(ValueError, match="nope"):
        Executor(recording_actions(log)).check([step("a"), Step("nope", {}, "x")])


def test_after_step_hook_sees_each_finished_step():
    seen = []
    result_of(Executor(recording_actions([]), after_step=seen.append).run([step("a"), step("b")], Journal()))
    assert seen == [0, 1]


NAMES = ChuteNames("node-1")


def test_hostconfig_plan_is_pure_and_undoable():
    old, new = {"wan": {"proto": "dhcp"}}, {"wan": {"proto": "static"}}
    steps = plan_hostconfig(NAMES, old, new)
    assert [s.action for s in steps] == ["write_hostconfig"]
    assert steps[0].undo.args == {"config": old}
    assert Step.from_dict(steps[0].to_dict()) == steps[0]
    assert plan_hostconfig(NAMES, old, dict(old)) == []
    assert old == {"wan": {"proto": "dhcp"}}


def test_a_hostconfig_lan_is_bridged_addressed_and_served_and_a_change_puts_the_old_one_back_on_rollback():
    lan = {"interfaces": ["eth1", "eth2"], "ipaddr": "192.168.1.1", "netmask": "255.255.255.0",
           "dhcp": {"start": 100, "limit": 50, "leasetime": "12h"}}
    steps = plan_hostconfig(NAMES, {}, {"lan": lan})
    assert [s.action for s in steps] == ["ensure_bridge", "set_master", "set_master", "start_dhcp",
                                         "write_hostconfig"]
    assert steps[0].args["address"] == "192.168.1.1/24" and all(s.undo for s in steps)
    moved = plan_hostconfig(NAMES, {"lan": lan}, {"lan": {**lan, "interfaces": ["eth2"], "ipaddr": "192.168.9.1"}})
    actions = [s.action for s in moved]
    assert actions == ["stop_dhcp", "set_master", "set_master", "remove_link", "ensure_bridge", "set_master",
                       "start_dhcp", "write_hostconfig"]
    assert moved[0].undo.action == "start_dhcp" and moved[3].undo.args["address"] == "192.168.1.1/24"
    assert [s.action for s in plan_hostconfig(NAMES, {"lan": lan}, {"lan": {"interfaces": []}})] == [
        "stop_dhcp", "set_master", "set_master", "remove_link", "write_hostconfig"]


class BrokenReports(Journal):
    """A journal whose progress reports and undo records fail, as a closed websocket's observer would."""

    def progress(self, message):
        raise ConnectionError("observer went away")

    def step_state(self, index, state, error=None):
        if state in ("failed", "undone", "undo-failed"):
            raise ConnectionError("cannot record")
        super().step_state(index, state, error)


def test_failing_progress_reports_neither_fail_a_change_nor_stop_its_rollback():
    log = []
    executor = Executor(recording_actions(log))
    assert result_of(executor.run([step("a"), step("b")], BrokenReports())) is None
    assert log == ["a", "b"]

    log.clear()
    executor = Executor(recording_actions(log, fail_on={"c"}))
    failure = result_of(executor.run([step("a"), step("b"), step("c")], BrokenReports()))
    assert failure.check(StepFailed) and failure.value.index == 2
    assert log == ["a", "b", "undo-c", "undo-b", "undo-a"]


def test_steps_marked_together_run_at_once_and_the_next_step_waits_for_all_of_them():
    from twisted.internet import defer
    pending, log = {}, []

    def slow(args, progress):
        log.append("start " + args["name"])
        pending[args["name"]] = defer.Deferred()
        return pending[args["name"]]
    together = [Step("slow", {"name": n}, f"do {n}", together=True) for n in ("net", "vol")]
    done = Executor({"slow": slow}).run(together + [Step("slow", {"name": "after"}, "do after")], Journal())
    assert log == ["start net", "start vol"]  # the second began before the first ended
    pending["vol"].callback(None)
    assert log == ["start net", "start vol"]
    pending["net"].callback(None)
    assert log == ["start net", "start vol", "start after"]
    pending["after"].callback(None)
    assert result_of(done) is None


def test_a_failure_among_steps_run_together_undoes_all_of_them_in_reverse():
    log = []
    steps = [step("a"), Step("act", {"name": "b"}, "do b", undo=Step("act", {"name": "undo-b"}, "undo b"),
                             together=True),
             Step("act", {"name": "c"}, "do c", undo=Step("act", {"name": "undo-c"}, "undo c"), together=True)]
    failure = result_of(Executor(recording_actions(log, fail_on={"b"})).run(steps, Journal()))
    assert failure.check(StepFailed) and failure.value.step.description == "do b"
    assert log == ["a", "c", "undo-c", "undo-b", "undo-a"]


def test_a_commit_step_run_together_with_others_is_refused_before_anything_runs():
    log = []
    steps = [step("a"), Step("act", {"name": "b"}, "commit b", commit=True, together=True)]
    with pytest.raises(ValueError, match="must run alone"):
        Executor(recording_actions(log)).check(steps)
    assert log == []
