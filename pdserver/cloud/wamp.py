"""The node's WAMP session: one autobahn Component on the node's reactor, WAMP-CRA as the node id.

Imported by pdserver.cloud.link only once a provision record exists (autobahn costs resident memory an
unprovisioned node must not pay). autobahn's Component reconnects with the explicit retry settings; when it gives up
anyway (a clean close by the router ends it) the Wamp session starts it again after ``initial`` seconds, so the link
only ends when the node stops it.
"""
from typing import Callable, Dict, Optional

from autobahn.twisted.component import Component
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, RegisterOptions
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from pdserver import errors
from pdserver.cloud import protocol
from pdserver.cloud.link import ICloudSession
from pdserver.cloud.provisioning import ProvisionRecord
from pdserver.logs import plain_autobahn_text

log = Logger()
plain_autobahn_text()


def application_error(error: errors.Error) -> ApplicationError:
    """Our error as the WAMP error a caller sees: ``org.paradrop.error.<code>`` with kwargs {code, message,
    field}."""
    return ApplicationError(protocol.ERROR_PREFIX + error.code, code=error.code, message=error.message,
                            field=error.field)


def _sender(progress: Callable) -> Callable[[dict], None]:
    """A progressive result as a callable of one message; one the session can no longer send is dropped (the
    change's end reaches the controller through the state message of the next join)."""
    def send(message: dict) -> None:
        try:
            progress(message)
        except Exception as e:
            log.info("cloud link: a progressive result not sent: {error}", error=e)
    return send


def _wrap(procedure: Callable, progressive: bool) -> Callable:
    """``procedure`` as a WAMP endpoint; a ``progressive`` one gets ``progress`` (a callable of one message) when
    its caller asked for progressive results (protocol.py)."""
    @defer.inlineCallbacks
    def call(*args, details=None, **kwargs):
        if args:
            raise application_error(errors.InvalidInput("commands take keyword arguments only", field="args"))
        if "progress" in kwargs:
            raise application_error(errors.InvalidInput("progress is no argument", field="progress"))
        if progressive and getattr(details, "progress", None) is not None:
            kwargs["progress"] = _sender(details.progress)
        try:
            result = yield defer.maybeDeferred(procedure, **kwargs)
        except errors.Error as e:
            raise application_error(e) from None
        except Exception as e:
            log.failure("remote procedure failed")
            raise application_error(errors.InternalError(f"internal error: {e}")) from None
        return result
    return call


@implementer(ICloudSession)
class WampSession:
    """Join, register ``procedures`` (suffix -> callable taking keyword arguments) under the node's prefix on
    every join, publish under it; ``on_join()`` / ``on_leave(reason)`` report the session's state."""

    def __init__(self, reactor, record: ProvisionRecord, retry: dict, procedures: Dict[str, Callable],
                 on_join: Callable[[], None], on_leave: Callable[[str], None]):
        self._reactor = reactor
        self._record = record
        self._retry = retry
        self._procedures = procedures
        self._on_join = on_join
        self._on_leave = on_leave
        self._session = None
        self._component: Optional[Component] = None
        self._done: Optional[defer.Deferred] = None
        self._restart = None
        self._stopping = False

    def _make_component(self) -> Component:
        transport = {"type": "websocket", "url": self._record.wamp_router, "max_retries": -1,
                     "initial_retry_delay": self._retry["initial"], "max_retry_delay": self._retry["max"],
                     "retry_delay_growth": self._retry["growth"], "retry_delay_jitter": self._retry["jitter"]}
        component = Component(transports=[transport], realm=protocol.REALM, is_fatal=lambda error: False,
                              authentication={"wampcra": {"authid": self._record.node_id,
                                                          "secret": self._record.secret}})
        component.on_join(self._joined)
        component.on_leave(self._left)
        component.on_connectfailure(lambda _, error: self._on_leave(f"cannot connect: {error}"))
        return component

    def start(self) -> None:
        self._stopping = False
        self._component = self._make_component()
        self._done = self._component.start(self._reactor)
        self._done.addBoth(self._ended)

    def _ended(self, result) -> None:
        self._session = None
        if self._stopping:
            return
        reason = result.getErrorMessage() if isinstance(result, Failure) else "the session ended"
        log.warn("cloud link ended ({reason}); starting it again", reason=reason)
        self._on_leave(reason)
        self._restart = self._reactor.callLater(self._retry["initial"], self.start)

    @defer.inlineCallbacks
    def _joined(self, session, details):
        if self._stopping:
            session.leave()
            return
        for suffix, procedure in self._procedures.items():
            yield session.register(_wrap(procedure, suffix in protocol.COMMANDS),
                                   protocol.node_uri(self._record.node_id, suffix),
                                   options=RegisterOptions(details_arg="details"))
        self._session = session
        log.info("cloud link joined {router} as {node}", router=self._record.wamp_router,
                 node=self._record.node_id)
        self._on_join()

    def _left(self, session, details):
        self._session = None
        message = details.reason + (f": {details.message}" if details.message else "")
        log.info("cloud link left: {message}", message=message)
        self._on_leave(message)

    @property
    def joined(self) -> bool:
        return self._session is not None

    def publish(self, suffix: str, message: dict) -> defer.Deferred:
        """Publish ``message`` (the single positional argument) on the node's topic, acknowledged; a Deferred
        that fails when the session is not there (the state is republished on the next join)."""
        if self._session is None:
            return defer.fail(errors.Unavailable("the cloud link is not connected"))
        return defer.maybeDeferred(self._session.publish, protocol.node_uri(self._record.node_id, suffix), message,
                                   options=PublishOptions(acknowledge=True))

    def stop(self) -> defer.Deferred:
        """Leave and stop reconnecting; fires when the component is done."""
        self._stopping = True
        if self._restart is not None and self._restart.active():
            self._restart.cancel()
        if self._component is None or self._done is None or self._done.called:
            return defer.succeed(None)
        done = defer.Deferred()
        self._done.addBoth(lambda _: done.callback(None))
        self._component.stop()
        return done
