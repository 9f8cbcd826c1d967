"""The one backoff policy: a pure function of the attempt, used for children that die (sysconfig.supervisor), the
engine's event stream (monitor.events) and deliveries whose call failed (controller.fleet)."""
import random


def backoff(attempt: int, initial=0.5, factor=2.0, cap=30.0, jitter=0.1, rand=random.random) -> float:
    """Seconds to wait before try number ``attempt`` (0-based): ``initial * factor**attempt``, capped, spread by
    +-``jitter`` (a fraction) so that what failed together does not retry in lockstep."""
    try:
        delay = min(cap, initial * factor ** attempt)
    except OverflowError:
        delay = cap
    return min(cap, max(0.0, delay * (1.0 + jitter * (2.0 * rand() - 1.0))))
