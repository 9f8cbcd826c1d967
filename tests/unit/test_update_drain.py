"""An updated chute's old version keeps serving for the drain time after the commit, timed by the node's clock."""
from pathlib import Path

from twisted.internet.task import Clock

from pdserver.execution.chute_actions import ChuteActions


def actions(clock, drain):
    return ChuteActions(engine=None, store=None, reactor=clock, build_dir=Path("/nonexistent"), node_labels={},
                        chute_environment=lambda *args: {}, ready_grace=0.0, ready_timeout=1.0, update_drain=drain)


def test_the_drain_ends_after_the_configured_time_and_not_before():
    clock, ended = Clock(), []
    actions(clock, 1.5).drain_old({"chute": "web"}, lambda message: None).addCallback(ended.append)
    clock.advance(1.4)
    assert ended == []
    clock.advance(0.1)
    assert ended == [None]


def test_no_drain_ends_at_the_next_turn():
    clock, ended = Clock(), []
    actions(clock, 0.0).drain_old({"chute": "web"}, lambda message: None).addCallback(ended.append)
    clock.advance(0)
    assert ended == [None]
