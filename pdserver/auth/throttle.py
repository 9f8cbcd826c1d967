"""Login throttling that holds under concurrency: an attempt is counted when it starts, before its
password check, so attempts still in flight use up the budget exactly as failed ones do.

Two budgets per sliding window: one per (username, client address), so one client cannot guess one
user's password fast, and a larger one per address across usernames, so it cannot spray many names
either. An attempt that turns out right is taken back (and forgives that user's earlier failures from
that address); every other one stays counted until it ages out of the window. Memory is bounded: at
most ``max_keys`` keys, the least recently used go first.
"""
import collections
from typing import Callable, Deque, Hashable, List, Optional

from pdserver import errors

ADDRESS_BUDGET_FACTOR = 4  # a client address may fail this many times the per-user budget, across names


class LoginThrottled(errors.Throttled):
    """``first`` marks the first refusal of a blocked spell: the one worth an audit record."""

    def __init__(self, retry_after: float, first: bool):
        super().__init__(retry_after, f"too many failed logins; retry in {int(retry_after) + 1} s")
        self.first = first


class _Window:
    __slots__ = ("times", "reported")

    def __init__(self):
        self.times: Deque[float] = collections.deque()
        self.reported = False


class Attempt:
    """One admitted login attempt, already counted."""

    def __init__(self, throttle: "LoginThrottle", keys: List[Hashable], started: float):
        self._throttle = throttle
        self._keys = keys
        self._started = started

    def succeeded(self) -> None:
        """The password was right: forget the user's failures from this address and this attempt."""
        self._throttle._forget(self._keys[0])
        self.withdraw()

    def withdraw(self) -> None:
        """The password was never checked (the node refused the work): the attempt does not count."""
        for key in self._keys:
            self._throttle._take_back(key, self._started)


class LoginThrottle:
    def __init__(self, clock: Callable[[], float], limit: int = 5, window: float = 60.0,
                 address_limit: Optional[int] = None, max_keys: int = 10000):
        self._clock = clock
        self._limit = limit
        self._address_limit = address_limit or limit * ADDRESS_BUDGET_FACTOR
        self._window = window
        self._max_keys = max_keys
        self._windows: "collections.OrderedDict[Hashable, _Window]" = collections.OrderedDict()

    def begin(self, username: str, address: Optional[str]) -> Attempt:
        """Count an attempt now, or raise LoginThrottled (nothing counted) when a budget is spent."""
        now = self._clock()
        budgets = [(("user", username, address), self._limit)]
        if address is not None:
            budgets.append((("address", address), self._address_limit))
        waits = [(self._wait(key, limit, now), key) for key, limit in budgets]
        wait, key = max(waits, key=lambda pair: pair[0])
        if wait:
            window = self._touch(key)
            first, window.reported = not window.reported, True
            raise LoginThrottled(wait, first)
        for key, _ in budgets:
            window = self._touch(key)
            window.times.append(now)
            window.reported = False
        return Attempt(self, [key for key, _ in budgets], now)

    def _wait(self, key: Hashable, limit: int, now: float) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        window = self._windows.get(key)
        if window is None:
            return 0.0
        while window.times and window.times[0] <= now - self._window:
            window.times.popleft()
        if not window.times:
            del self._windows[key]
            return 0.0
        if len(window.times) < limit:
            return 0.0
        return max(window.times[0] + self._window - now, 0.001)

    def _touch(self, key: Hashable) -> _Window:
        window = self._windows.get(key)
        if window is None:
            if len(self._windows) >= self._max_keys:
                self._windows.popitem(last=False)
            window = self._windows[key] = _Window()
        else:
            self._windows.move_to_end(key)
        return window

    def _forget(self, key: Hashable) -> None:
        self._windows.pop(key, None)

    def _take_back(self, key: Hashable, started: float) -> None:
        window = self._windows.get(key)
        if window is not None and started in window.times:
            window.times.remove(started)
            if not window.times:
                del self._windows[key]
