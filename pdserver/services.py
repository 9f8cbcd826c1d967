"""A MultiService whose start waits for each child in turn and whose stop waits for all of them.

Twisted's MultiService ignores a Deferred from a child's startService; the node
needs crash recovery to finish before the API accepts requests, so children
start strictly in order here.
"""
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.logger import Logger


class SequentialMultiService(MultiService):
    log = Logger()

    @defer.inlineCallbacks
    def startService(self):
        self.running = 1
        for service in self:
            yield defer.maybeDeferred(service.startService)

    @defer.inlineCallbacks
    def stopService(self):
        self.running = 0
        for service in reversed(list(self)):
            try:
                yield defer.maybeDeferred(service.stopService)
            except Exception:
                self.log.failure("stopping {service} failed; stopping the others", service=service)
