"""How a batch of writes goes to PostgreSQL: runs of one SQL text (each one executemany), ordered so that every
statement has the effect it had in the batch's order. (The runs on a real server: tests/integration/controller/
test_storage.py, every storage test on PostgreSQL too.)"""
from pdserver.controller.postgres import runs_of_one_text

DELIVERY = "UPDATE deliveries SET state = ? WHERE key = ?"
SEEN = "UPDATE nodes SET online = ?, last_seen = ? WHERE id = ?"
SEEN_WITH_STATE = "UPDATE nodes SET online = ?, last_seen = ?, version = ?, chutes = ? WHERE id = ?"
INSERT = "INSERT INTO deliveries (key) VALUES (?)"


def runs(*texts):
    return [(sql, indexes) for sql, indexes in runs_of_one_text([(sql, ()) for sql in texts])]


def test_updates_of_different_tables_interleaved_become_one_run_per_text():
    assert runs(DELIVERY, SEEN, DELIVERY, SEEN, DELIVERY) == [(DELIVERY, [0, 2, 4]), (SEEN, [1, 3])]


def test_two_texts_on_one_table_keep_their_order():
    """A node seen offline, then online with its state, then offline again: three runs, in that order."""
    assert runs(SEEN, SEEN_WITH_STATE, SEEN, DELIVERY, DELIVERY) == [
        (SEEN, [0]), (SEEN_WITH_STATE, [1]), (SEEN, [2]), (DELIVERY, [3, 4])]


def test_a_statement_that_is_no_update_is_a_barrier():
    assert runs(DELIVERY, INSERT, DELIVERY, SEEN, SEEN) == [
        (DELIVERY, [0]), (INSERT, [1]), (DELIVERY, [2]), (SEEN, [3, 4])]


def test_every_statement_is_in_exactly_one_run_and_each_run_in_batch_order():
    texts = [DELIVERY, SEEN, SEEN_WITH_STATE, DELIVERY, SEEN, INSERT, SEEN, DELIVERY, SEEN_WITH_STATE] * 3
    found = runs(*texts)
    assert sorted(i for _, indexes in found for i in indexes) == list(range(len(texts)))
    assert all(indexes == sorted(indexes) and {texts[i] for i in indexes} == {sql} for sql, indexes in found)
