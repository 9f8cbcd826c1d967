"""Giving a chute's container its network interfaces back after the engine restarted it.

When a container's process dies, Docker's restart policy starts it again in a new network namespace: the veths
the node gave it (``wlan0``, ...) died with the old one, and no change of the node is involved to give them back.
This service follows the engine's container events and, on the start of a container of a chute's current
deployment whose service has networks, attaches its interfaces again: the same idempotent call the plans make.
When the event stream opens (at start, and again after the engine ended it), every such container is checked
once, so a restart nobody heard of is caught up without polling.
"""
import random
from typing import Callable, Dict, Set

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from pdserver.chutes.naming import LABEL_CHUTE, LABEL_DEPLOYMENT, LABEL_NODE, LABEL_SERVICE, ChuteNames
from pdserver.chutes.networks import NetworkFacts, networks
from pdserver.chutes.store import ChuteStore
from pdserver.sysconfig.supervisor import backoff

log = Logger()


class InterfaceReattach(Service):
    """``network`` is the node's INetworkConfigurator, ``facts`` gives its NetworkFacts. The event stream is
    reopened with backoff (0.5 s doubling to 30 s, reset once a stream stayed open ``stable_after`` seconds)."""

    def __init__(self, reactor, engine, network, chutes: ChuteStore, names: ChuteNames,
                 facts: Callable[[], NetworkFacts], stable_after: float = 30.0, rand=random.random):
        self._reactor = reactor
        self._engine = engine
        self._network = network
        self._chutes = chutes
        self._names = names
        self._facts = facts
        self._stable_after = stable_after
        self._rand = rand
        self._follower = None
        self._opened_at = 0.0
        self._attempt = 0
        self._retry = None
        self._busy: Dict[str, defer.Deferred] = {}
        self._again: Set[str] = set()

    # lifetime

    def startService(self):
        super().startService()
        self._open()

    def stopService(self):
        """Stop listening; fires once the attaches under way have ended."""
        super().stopService()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._again.clear()
        waits = []
        if self._follower is not None:
            waits.append(self._follower.stop())
        waits += list(self._busy.values())
        return defer.DeferredList(waits)

    # the event stream

    def _open(self) -> None:
        self._retry = None
        d = self._engine.follow_events(self._on_event, f"{LABEL_NODE}={self._names.node_id}", ("start",))
        d.addCallbacks(self._opened, self._not_opened)

    def _opened(self, follower) -> None:
        if not self.running:
            follower.stop()
            return
        self._follower, self._opened_at = follower, self._reactor.seconds()
        follower.done.addBoth(self._ended)
        self._catch_up()

    def _not_opened(self, failure) -> None:
        log.warn("cannot follow the engine's container events: {why}", why=failure.getErrorMessage())
        self._again_later()

    def _ended(self, result) -> None:
        self._follower = None
        if not self.running:
            return
        log.info("the engine ended its container events; following them again")
        if self._reactor.seconds() - self._opened_at >= self._stable_after:
            self._attempt = 0
        self._again_later()

    def _again_later(self) -> None:
        if not self.running:
            return
        delay = backoff(self._attempt, rand=self._rand)
        self._attempt += 1
        self._retry = self._reactor.callLater(delay, self._open)

    # re-attaching

    def _on_event(self, event) -> None:
        chute, service = event.attributes.get(LABEL_CHUTE), event.attributes.get(LABEL_SERVICE)
        deployment = event.attributes.get(LABEL_DEPLOYMENT)
        if chute and service and deployment:
            self._schedule(event.name, chute, service, deployment, "it was started")

    def _catch_up(self) -> None:
        for record in self._chutes.list():
            for svc in record.spec().services:
                if svc.interfaces:
                    self._schedule(self._names.container(record.name, svc.name, record.deployment), record.name,
                                   svc.name, str(record.deployment), "the engine's events were not followed")

    def _schedule(self, container: str, chute: str, service: str, deployment: str, why: str) -> None:
        """One attach of a container at a time; a start meanwhile runs it once more (for the newest process)."""
        if container in self._busy:
            self._again.add(container)
            return

        def finished(result):
            del self._busy[container]
            if container in self._again and self.running:
                self._again.discard(container)
                self._schedule(container, chute, service, deployment, why)
            return result
        self._busy[container] = _quiet(self._reattach(container, chute, service, deployment, why))
        self._busy[container].addBoth(finished)

    @defer.inlineCallbacks
    def _reattach(self, container: str, chute: str, service: str, deployment: str, why: str):
        record = self._chutes.get(chute)
        if record is None or str(record.deployment) != deployment:
            return  # a change is bringing it up or down: its plan attaches what it starts
        nets = [n for n in networks(self._names, self._facts(), record.spec(), record.networks) if n.service == service]
        if not nets:
            return
        state = yield self._engine.inspect_container(container)
        if state is None or not state.running or not state.pid:
            return
        for net in nets:
            if net.bridged:
                args = net.attach_args(self._names, record.deployment)
                given = (self._network.attach_interface, state.pid, args["bridge"], args["host_name"],
                         args["inner"], args["address"], args["mac"])
                what = args["address"]
            elif net.radio is not None:
                # Its radio came back from the namespace that died (to the initial one): it follows the new one.
                args = net.radio_args()
                given = (self._network.give_radio, state.pid, args["phy"], args["inner"], args["frequency"])
                what = f"radio {args['phy']} in monitor mode"
            else:
                continue
            try:
                yield defer.maybeDeferred(*given)
            except Exception as e:
                log.warn("cannot give {container} its interface {inner} back: {why}", container=container,
                         inner=args["inner"], why=str(e))
                continue
            log.info("gave {container} its interface {inner} ({address}): {reason}", container=container,
                     inner=args["inner"], address=what, reason=why)


def _quiet(d: defer.Deferred) -> defer.Deferred:
    """The same moment, never a failure (each attach logs its own)."""
    def logged(failure):
        log.failure("re-attaching interfaces failed", failure)
    return d.addErrback(logged)
