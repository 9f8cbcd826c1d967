"""The host-reboot and host-shutdown changes: in the queue, so they wait for a running change to end.

The change checks again that the node may power its host (a refusal fails the change, naming why: that is how
pdtools 0.13.2, which only follows the change, learns it), then ends, and only ``delay`` seconds later is the
action asked of the host: the change's stream has closed and the client has its answer by then, and a node that
comes back up finds the change finished, not interrupted.
"""
from twisted.internet import defer
from twisted.logger import Logger

from pdserver import errors
from pdserver.changes.model import ChangeFailed

log = Logger()

DELAY = 2.0
CHANGE_TYPES = {"host-reboot": ("reboot", "reboots"), "host-shutdown": ("poweroff", "powers off")}


class HostPowerHandlers:
    def __init__(self, power, clock, record, delay: float = DELAY):
        """``power``: an IHostPower; ``record``: the audit log's record (a failed request of the host)."""
        self._power = power
        self._clock = clock
        self._record = record
        self._delay = delay

    def handlers(self) -> dict:
        return {change_type: self._handler(change_type) for change_type in CHANGE_TYPES}

    def _handler(self, change_type: str):
        @defer.inlineCallbacks
        def run(context):
            action, verb = CHANGE_TYPES[change_type]
            try:
                yield self._power.check(action)
            except errors.Error as e:
                raise ChangeFailed(f"refused: {e.message}", {"code": e.code}) from None
            context.progress(f"the host {verb} in {self._delay:g} s, once this change has ended")
            self._clock.callLater(self._delay, self._act, action, context.change.user)
            return {"message": f"the host {verb} in {self._delay:g} s"}
        return run

    def _act(self, action: str, user) -> None:
        def failed(failure):
            log.failure("asking the host to {action} failed", failure, action=action)
            self._record(user, f"host-{action}", "failed", detail={"message": failure.getErrorMessage()})
        self._power.act(action).addErrback(failed)
