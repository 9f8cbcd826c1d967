"""Password hashing's own small thread pool with a bounded queue.

argon2 is slow on purpose (about 0.1-0.2 s and 64 MiB per hash here). In the reactor's shared pool a
burst of logins would hold every thread and delay all other thread work (uploads, file removal); here
it holds at most ``threads`` threads, and when ``max_waiting`` jobs already wait, more are refused at
once (503 with Retry-After) instead of queueing without end.
"""
from typing import Callable, List

from twisted.application.service import Service
from twisted.internet import defer
from twisted.python.threadpool import ThreadPool

from pdserver import errors


class HashingPool(Service):
    name = "password-hashing"

    def __init__(self, reactor, threads: int = 2, max_waiting: int = 16):
        self._reactor = reactor
        self._capacity = threads + max_waiting
        self._pool = ThreadPool(0, threads, name=self.name)
        self._jobs = 0  # running or waiting; counted until the thread is done, even if the caller gave up
        self._drained: List[defer.Deferred] = []

    @property
    def jobs(self) -> int:
        return self._jobs

    def startService(self):
        super().startService()
        self._pool.start()

    def stopService(self) -> defer.Deferred:
        """Refuse new jobs, let the accepted ones finish, then end the threads."""
        super().stopService()
        drained = defer.Deferred()
        if self._jobs:
            self._drained.append(drained)
        else:
            drained.callback(None)
        return drained.addCallback(lambda _: self._pool.stop() if self._pool.started else None)

    def run(self, f: Callable, *args) -> defer.Deferred:
        """``f(*args)`` in a hashing thread; fails with Unavailable at once when the queue is full."""
        if not self.running:
            return defer.fail(errors.Unavailable("the node is stopping", headers={"Retry-After": "5"}))
        if self._jobs >= self._capacity:
            return defer.fail(errors.Unavailable("too many logins are waiting for a password check; retry soon",
                                                 headers={"Retry-After": "1"}))
        self._jobs += 1
        d = defer.Deferred()

        def on_result(ok, result):
            self._reactor.callFromThread(self._finished, d, ok, result)
        self._pool.callInThreadWithCallback(on_result, f, *args)
        return d

    def _finished(self, d: defer.Deferred, ok: bool, result) -> None:
        self._jobs -= 1
        if ok:
            d.callback(result)
        else:
            d.errback(result)
        if not self._jobs:
            drained, self._drained = self._drained, []
            for waiter in drained:
                waiter.callback(None)
