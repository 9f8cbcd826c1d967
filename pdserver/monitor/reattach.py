"""Giving a chute's container its network interfaces back after the engine restarted it.

When a container's process dies, Docker's restart policy starts it again in a new network namespace: the veths
the node gave it (``wlan0``, ...) died with the old one, and no change of the node is involved to give them back.
This service hears the engine's container events (monitor.events) and, on the start of a container of a chute's
current deployment whose service has networks, attaches its interfaces again: the same idempotent call the plans
make. When the event stream opens (at start, and again after the engine ended it), every such container is
checked once, so a restart nobody heard of is caught up without polling.
"""
from typing import Callable, Dict, Set

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from pdserver.chutes.naming import LABEL_CHUTE, LABEL_DEPLOYMENT, LABEL_SERVICE, ChuteNames
from pdserver.chutes.networks import NetworkFacts, networks
from pdserver.chutes.store import ChuteStore

log = Logger()


class InterfaceReattach(Service):
    """``events`` is the node's ContainerEvents, ``network`` its INetworkConfigurator, ``facts`` gives its
    NetworkFacts."""

    def __init__(self, engine, events, network, chutes: ChuteStore, names: ChuteNames,
                 facts: Callable[[], NetworkFacts]):
        self._engine = engine
        self._events = events
        self._network = network
        self._chutes = chutes
        self._names = names
        self._facts = facts
        self._unsubscribe = None
        self._busy: Dict[str, defer.Deferred] = {}
        self._again: Set[str] = set()

    # lifetime

    def startService(self):
        super().startService()
        self._unsubscribe = self._events.subscribe(self._on_event, on_open=self._catch_up)

    def stopService(self):
        """Stop listening; fires once the attaches under way have ended."""
        super().stopService()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._again.clear()
        return defer.DeferredList(list(self._busy.values()))

    # re-attaching

    def _on_event(self, event) -> None:
        if event.action != "start":
            return
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
