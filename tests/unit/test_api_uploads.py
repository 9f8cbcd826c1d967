"""Chute requests' upload handling (pdserver.chutes.requests, under the chutes API and remote commands) that real HTTP cannot time: a client that goes away after its project
is unpacked, while it is still being validated in a thread."""
from twisted.internet import defer

from pdserver.chutes.requests import ChuteRequests


class OneThreadLater:
    """run_in_thread whose first call waits for ``finish()``; later calls (the clean-up) run at once."""

    def __init__(self):
        self.pending = None

    def __call__(self, f, *args):
        if self.pending is None:
            self.pending = (defer.Deferred(), f, args)
            return self.pending[0]
        return defer.maybeDeferred(f, *args)

    def finish(self):
        d, f, args = self.pending
        d.callback(f(*args))


def test_a_request_cancelled_while_its_thread_unpacks_removes_what_the_thread_made(tmp_path):
    run_in_thread = OneThreadLater()
    resource = ChuteRequests(None, None, None, tmp_path, 1000, run_in_thread)
    dest = tmp_path / "upload"
    answer = resource.thread_owning(dest, lambda: dest.mkdir() or {"name": "x"})
    failures = []
    answer.addErrback(failures.append)
    answer.cancel()
    assert failures[0].check(defer.CancelledError)
    run_in_thread.finish()
    assert not dest.exists()


def test_a_thread_that_ends_first_hands_its_result_over(tmp_path):
    run_in_thread = OneThreadLater()
    resource = ChuteRequests(None, None, None, tmp_path, 1000, run_in_thread)
    answer = resource.thread_owning(tmp_path / "upload", lambda: {"name": "x"})
    run_in_thread.finish()
    assert answer.result == {"name": "x"}
