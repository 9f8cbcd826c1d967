"""The chute store's upload clean-up when the client leaves mid-way: it waits for the unpacking thread."""
import shutil

from twisted.internet import defer

from pdserver.controller.store import ChuteStore, thd_keep_archive


class Threads:
    """run_in_thread whose unpacking finishes when the test says; clean-ups run at once."""

    def __init__(self):
        self.unpacking = None
        self.work = None

    def __call__(self, f, *args):
        if f is thd_keep_archive:
            self.work = args[1]
            self.unpacking = defer.Deferred()
            return self.unpacking
        assert f is shutil.rmtree
        return defer.maybeDeferred(f, *args)


def test_a_cancelled_upload_is_cleaned_up_after_its_thread_not_under_it(tmp_path):
    threads = Threads()
    store = ChuteStore(None, None, tmp_path / "store", threads, 1 << 20)
    d = store.add_tar("alice", "hello", None, None)
    threads.work.mkdir(parents=True)
    (threads.work / "archive").write_bytes(b"written by the thread")
    failures = []
    d.addErrback(failures.append)
    d.cancel()
    assert (threads.work / "archive").exists()  # the thread still writes there: nothing is removed under it
    threads.unpacking.callback(({"name": "hello", "version": "1"}, threads.work / "archive", "0" * 64, 21))
    assert failures and failures[0].check(defer.CancelledError)
    assert not threads.work.exists()
    assert not list((tmp_path / "store").rglob("*.tar"))


def test_an_unpacking_that_fails_leaves_nothing(tmp_path):
    threads = Threads()
    store = ChuteStore(None, None, tmp_path / "store", threads, 1 << 20)
    d = store.add_tar("alice", "hello", None, None)
    threads.work.mkdir(parents=True)
    failures = []
    d.addErrback(failures.append)
    threads.unpacking.errback(ValueError("broken archive"))
    assert failures and failures[0].check(ValueError)
    assert not threads.work.exists()
