"""A stand-in for pdserver.controller.fleet.Fleet where the HTTP API is tested without a router: it records
whom it was asked to wake, and plays a node's progress into the store and the deployment events hub."""
from zope.interface import implementer

from pdserver.controller.interfaces import IDeploymentEvents, IFleet, INodeEvents


@implementer(IDeploymentEvents, INodeEvents)
class EventsHub:
    def __init__(self):
        self._listeners = {}

    def listen(self, deployment_id, callback):
        self._listeners.setdefault(deployment_id, []).append(callback)

        def stop():
            callbacks = self._listeners.get(deployment_id, [])
            if callback in callbacks:
                callbacks.remove(callback)
        return stop

    def listeners(self, deployment_id) -> int:
        return len(self._listeners.get(deployment_id, []))

    def emit(self, deployment_id, message):
        for callback in list(self._listeners.get(deployment_id, [])):
            callback(message)


@implementer(IFleet)
class FleetDouble:
    def __init__(self):
        self.events = EventsHub()
        self.node_events = EventsHub()
        self.woken = []

    def wake(self, node_ids, deliveries=None):
        self.woken.append(list(node_ids))

    async def report(self, store, delivery, state, at, change_id=None, message=None):
        """What the fleet does with a node's answer: update the delivery, then tell the listeners."""
        changed = await store.update_delivery(delivery["key"], state, at, change_id, message)
        if changed and delivery["deployment_id"]:
            self.events.emit(delivery["deployment_id"], {"node_id": delivery["node_id"], "state": state,
                                                            "message": message, "time": at})
        return changed
