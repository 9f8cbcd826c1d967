"""Failed-login throttling: at most N failures per window per key, then refuse until one ages out."""
import collections
from typing import Callable, Deque, Dict, Hashable


class LoginThrottle:
    def __init__(self, clock: Callable[[], float], limit: int = 5, window: float = 60.0,
                 max_keys: int = 10000):
        self._clock = clock
        self._limit = limit
        self._window = window
        self._max_keys = max_keys
        self._failures: Dict[Hashable, Deque[float]] = {}

    def _recent(self, key) -> Deque[float]:
        now = self._clock()
        times = self._failures.get(key)
        if times is None:
            return collections.deque()
        while times and times[0] <= now - self._window:
            times.popleft()
        if not times:
            del self._failures[key]
        return times

    def retry_after(self, key) -> float:
        """Seconds until ``key`` may try again; 0 when it may try now."""
        times = self._recent(key)
        if len(times) < self._limit:
            return 0.0
        return max(times[0] + self._window - self._clock(), 0.001)

    def failed(self, key) -> None:
        if key not in self._failures and len(self._failures) >= self._max_keys:
            self._expire_all()
        self._failures.setdefault(key, collections.deque()).append(self._clock())

    def succeeded(self, key) -> None:
        self._failures.pop(key, None)

    def _expire_all(self) -> None:
        for key in list(self._failures):
            self._recent(key)
        while len(self._failures) >= self._max_keys:
            del self._failures[next(iter(self._failures))]
