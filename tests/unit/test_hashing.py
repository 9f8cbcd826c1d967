"""The hashing pool: its own few threads, a bounded queue, and a stop that waits for accepted work."""
import threading

import pytest
import pytest_twisted
from twisted.internet import defer, reactor, threads

from pdserver.auth.hashing import HashingPool
from pdserver.errors import Unavailable
from tests.integration.http import wait_for


class Gate:
    """Jobs that block until opened, counting how many run at once."""

    def __init__(self):
        self.opened = threading.Event()
        self.lock = threading.Lock()
        self.running = self.most = 0

    def job(self, value):
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        self.opened.wait(30)
        with self.lock:
            self.running -= 1
        return value


@pytest.fixture
def pool():
    service = HashingPool(reactor, threads=2, max_waiting=3)
    service.startService()
    gate = Gate()
    yield service, gate
    gate.opened.set()
    pytest_twisted.blockon(service.stopService())


@pytest_twisted.ensureDeferred
async def test_jobs_past_the_queue_bound_are_refused_at_once_and_the_rest_finish(pool):
    service, gate = pool
    accepted = [service.run(gate.job, i) for i in range(5)]
    refused = [service.run(gate.job, i) for i in range(5, 8)]
    for d in refused:
        with pytest.raises(Unavailable) as caught:
            await d
        assert caught.value.status == 503 and caught.value.headers["Retry-After"] == "1"
    await wait_for(lambda: gate.running == 2)
    assert not any(d.called for d in accepted)
    gate.opened.set()
    assert await defer.gatherResults(accepted) == [0, 1, 2, 3, 4]
    assert gate.most == 2


@pytest_twisted.ensureDeferred
async def test_a_caller_that_gives_up_keeps_its_place_until_its_thread_is_done(pool):
    service, gate = pool
    given_up = [service.run(gate.job, i) for i in range(5)]
    for d in given_up:
        d.cancel()
        d.addErrback(lambda f: f.trap(defer.CancelledError))
    with pytest.raises(Unavailable):
        await service.run(gate.job, 99)
    gate.opened.set()
    await wait_for(lambda: service.jobs == 0)
    assert await service.run(gate.job, 7) == 7


@pytest_twisted.ensureDeferred
async def test_the_reactor_pool_stays_free_while_hashing_is_saturated(pool):
    service, gate = pool
    busy = [service.run(gate.job, i) for i in range(5)]
    await wait_for(lambda: gate.running == 2)
    assert await threads.deferToThread(lambda: "other work") == "other work"
    assert not any(d.called for d in busy)
    gate.opened.set()
    await defer.gatherResults(busy)


@pytest_twisted.ensureDeferred
async def test_stop_waits_for_accepted_jobs_then_refuses_new_ones():
    service = HashingPool(reactor, threads=1, max_waiting=2)
    service.startService()
    gate = Gate()
    jobs = [service.run(gate.job, i) for i in range(3)]
    stopped = service.stopService()
    with pytest.raises(Unavailable):
        await service.run(gate.job, 9)
    assert not stopped.called
    gate.opened.set()
    await stopped
    assert [j.result for j in jobs] == [0, 1, 2]
    await service.stopService()  # a second stop (the node's tree may stop twice) is harmless
