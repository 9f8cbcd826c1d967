"""Failed-login throttling over a sliding one-minute window."""
from twisted.internet.task import Clock

from pdserver.auth.throttle import LoginThrottle


def test_five_failures_block_until_the_oldest_ages_out():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=5, window=60)
    key = ("paradrop", "10.0.0.1")
    for _ in range(4):
        throttle.failed(key)
        clock.advance(1)
    assert throttle.retry_after(key) == 0
    throttle.failed(key)
    assert 55 < throttle.retry_after(key) <= 60
    assert throttle.retry_after(("paradrop", "10.0.0.2")) == 0
    clock.advance(56.5)
    assert throttle.retry_after(key) == 0


def test_success_clears_failures_and_key_count_is_bounded():
    clock = Clock()
    throttle = LoginThrottle(clock.seconds, limit=2, window=60, max_keys=3)
    throttle.failed("a")
    throttle.succeeded("a")
    throttle.failed("a")
    assert throttle.retry_after("a") == 0
    for key in "bcdef":
        throttle.failed(key)
    assert len(throttle._failures) <= 3
