"""The node's service tree: children start in order and all of them stop, whatever one of them does."""
from twisted.application.service import Service
from twisted.internet import defer

from pdserver.services import SequentialMultiService


class Child(Service):
    def __init__(self, name, log, fail_stop=False):
        self.name, self._log, self._fail_stop = name, log, fail_stop

    def startService(self):
        super().startService()
        self._log.append(("start", self.name))

    def stopService(self):
        super().stopService()
        self._log.append(("stop", self.name))
        if self._fail_stop:
            return defer.fail(RuntimeError(f"{self.name} cannot stop"))


def test_stopping_goes_on_past_a_child_that_fails_to_stop():
    log = []
    root = SequentialMultiService()
    for name, fail in (("queue", False), ("http", True), ("reconcile", False)):
        Child(name, log, fail).setServiceParent(root)
    root.startService()
    results = []
    root.stopService().addBoth(results.append)
    assert results == [None]
    assert log == [("start", "queue"), ("start", "http"), ("start", "reconcile"),
                   ("stop", "reconcile"), ("stop", "http"), ("stop", "queue")]
