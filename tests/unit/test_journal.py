"""What one change record stores is bounded, whatever its parameters, messages and result hold."""
import json

import pytest

from pdserver.changes.journal import MAX_MESSAGES, MAX_PARAMS_BYTES, MAX_RESULT_BYTES, ChangeJournal
from pdserver.changes.model import ChangeFailed, ChangeState
from pdserver.errors import TooLarge
from pdserver.storage import open_database


@pytest.fixture
def journal(tmp_path):
    conn = open_database(tmp_path / "node.db")
    yield ChangeJournal(conn)
    conn.close()


def test_parameters_past_the_cap_are_refused_and_nothing_is_written(journal):
    with pytest.raises(TooLarge) as info:
        journal.create("install", "x", "u", {"description": {"command": "c" * MAX_PARAMS_BYTES}}, 0.0)
    assert info.value.status == 413 and len(info.value.message) < 200
    assert journal.count() == 0


def test_messages_are_shortened_and_their_number_is_capped_keeping_the_newest(journal):
    change = journal.create("install", "x", "u", {}, 0.0)
    journal.add_message(change.id, 1.0, "m" * 5_000_000)
    for i in range(MAX_MESSAGES + 50):
        journal.add_message(change.id, 2.0 + i, f"line {i}")
    messages = journal.messages(change.id)
    assert len(messages) == MAX_MESSAGES
    assert len(messages[0]["message"]) < 2100
    assert messages[1]["message"] == "line 0"
    assert messages[-1]["message"] == f"line {MAX_MESSAGES + 49}"


def test_a_huge_result_is_bounded_but_keeps_its_message(journal):
    change = journal.create("install", "x", "u", {}, 0.0)
    result = {"message": "failed: " + "x" * 1_000_000, "undo_errors": ["e" * 100_000] * 1000}
    journal.finish(change.id, ChangeState.FAILED, result, 1.0)
    stored = journal.get(change.id).result
    assert len(json.dumps(stored)) <= MAX_RESULT_BYTES
    assert stored["message"].startswith("failed: xxx")


def test_step_errors_and_change_failures_are_shortened(journal):
    change = journal.create("install", "x", "u", {}, 0.0)
    journal.record_plan(change.id, [{"action": "a"}])
    journal.step_state(change.id, 0, "failed", 1.0, "boom " * 1_000_000)
    assert len(journal.steps(change.id)[0]["error"]) < 2100
    assert len(ChangeFailed("e" * 10_000_000).message) < 2100
