"""Login throttling over a sliding one-minute window, counted when an attempt starts."""
import pytest
from twisted.internet.task import Clock

from pdserver.auth.throttle import LoginThrottle, LoginThrottled


def refused(throttle, username, address="10.0.0.1") -> LoginThrottled:
    with pytest.raises(LoginThrottled) as caught:
        throttle.begin(username, address)
    return caught.value


def test_five_failures_block_until_the_oldest_ages_out():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=5, window=60)
    for _ in range(5):
        throttle.begin("paradrop", "10.0.0.1")  # a failure is an attempt that never succeeded
        clock.advance(1)
    error = refused(throttle, "paradrop")
    assert error.retry_after == 55 and error.status == 429
    assert error.headers["Retry-After"] == "56"
    throttle.begin("paradrop", "10.0.0.2")
    clock.advance(55.5)
    throttle.begin("paradrop", "10.0.0.1")


def test_attempts_in_flight_count_so_200_at_once_let_only_five_through():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=5, window=60)
    admitted, refusals = [], []
    for _ in range(200):
        try:
            admitted.append(throttle.begin("victim", "10.0.0.1"))
        except LoginThrottled as e:
            refusals.append(e)
    assert len(admitted) == 5 and len(refusals) == 195
    assert all(e.retry_after > 0 for e in refusals)
    refused(throttle, "victim")  # whatever the password: the check never runs


def test_a_right_password_takes_its_attempt_back_and_forgives_earlier_failures():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=2, window=60)
    throttle.begin("a", "10.0.0.1")
    throttle.begin("a", "10.0.0.1").succeeded()
    throttle.begin("a", "10.0.0.1")
    throttle.begin("a", "10.0.0.1")
    refused(throttle, "a")


def test_an_attempt_the_node_refused_to_check_does_not_count():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=2, window=60)
    for _ in range(10):
        throttle.begin("a", "10.0.0.1").withdraw()
    throttle.begin("a", "10.0.0.1")
    throttle.begin("a", "10.0.0.1")
    refused(throttle, "a")


def test_one_address_cannot_spray_many_usernames_but_other_addresses_can_still_log_in():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=2, window=60, address_limit=5)
    for i in range(5):
        throttle.begin(f"user{i}", "10.0.0.1")
    error = refused(throttle, "somebody-new")
    assert 59 < error.retry_after <= 60
    throttle.begin("somebody-new", "10.0.0.2")
    clock.advance(60)
    throttle.begin("somebody-new", "10.0.0.1")


def test_a_success_takes_back_only_its_own_attempt_from_the_address_budget():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=5, window=60, address_limit=3)
    throttle.begin("a", "10.0.0.1")
    throttle.begin("b", "10.0.0.1")
    throttle.begin("c", "10.0.0.1").succeeded()
    throttle.begin("d", "10.0.0.1")
    refused(throttle, "e")


def test_only_the_first_refusal_of_a_blocked_spell_is_marked_for_the_audit_log():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=1, window=60)
    throttle.begin("a", "10.0.0.1")
    assert [refused(throttle, "a").first for _ in range(3)] == [True, False, False]
    clock.advance(60)
    throttle.begin("a", "10.0.0.1")
    assert refused(throttle, "a").first


def test_memory_is_bounded_however_many_names_and_addresses_are_tried():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=2, window=60, max_keys=50)
    for i in range(1000):
        throttle.begin(f"user{i}", f"10.0.{i // 250}.{i % 250}")
    assert len(throttle._windows) <= 50
    throttle.begin("user999", "10.0.3.249")
    refused(throttle, "user999", "10.0.3.249")


def test_without_an_address_only_the_per_user_budget_applies():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=1, window=60, address_limit=1)
    throttle.begin("a", None)
    throttle.begin("b", None)
    refused(throttle, "a", None)
