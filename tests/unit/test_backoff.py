"""The backoff policy shared by the supervisor, the engine's event stream and the fleet's retries."""
import pytest

from pdserver.backoff import backoff


def test_backoff_doubles_from_half_a_second_to_a_thirty_second_cap():
    assert [backoff(n, jitter=0) for n in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]


def test_backoff_jitter_spreads_by_the_fraction_and_never_passes_the_cap():
    assert backoff(2, rand=lambda: 0.0) == pytest.approx(1.8)
    assert backoff(2, rand=lambda: 1.0) == pytest.approx(2.2)
    assert backoff(20, rand=lambda: 1.0) == 30.0
    assert backoff(20, rand=lambda: 0.0) == pytest.approx(27.0)


def test_backoff_of_a_huge_attempt_is_the_cap_not_an_overflow():
    assert backoff(10 ** 6, jitter=0) == 30.0
    assert backoff(5000, factor=2.5, jitter=0) == 30.0
