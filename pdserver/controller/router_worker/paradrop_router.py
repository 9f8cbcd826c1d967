"""A component crossbar runs inside its router worker: the worker's garbage-collection policy, and the collector's
figures on ``org.paradrop.router.gc`` for the controller role.

Why: a router holding 10,000 node sessions keeps millions of long-lived objects, and each of Python's full
collections walks all of them while no message is routed: 1.2-1.9 s, about once per deployment to 10,000 nodes
(tools/bench/fleet.py with the collector's own callbacks timing it). GC_THRESHOLDS collects the youngest generation
every 7,000 net allocations instead of 700, so that the objects of one call (its invocation, its timers) die young
instead of reaching the old generation, and considers a full collection after 100 collections of the middle
generation instead of 10, so that bursts do not trigger one. Cyclic garbage is still collected, later. The
controller's backend takes the same policy (pdserver.main): its own full collections cost it 0.5-0.8 s per such
deployment.

Loaded by crossbar's Python from the directory on the worker's ``pythonpath``; imports only what crossbar has.
"""
import gc

from autobahn.twisted.wamp import ApplicationSession

GC_THRESHOLDS = (7000, 10, 100)
GC_PROCEDURE = "org.paradrop.router.gc"
ROLE = "router"  # the component's role in the realm: it may register under ROUTER_PREFIX, nothing else
ROUTER_PREFIX = "org.paradrop.router."


def apply_gc_policy() -> None:
    gc.set_threshold(*GC_THRESHOLDS)


def gc_figures() -> dict:
    """The collector's thresholds, its collections so far by generation, and the objects frozen out of them."""
    return {"thresholds": list(gc.get_threshold()),
            "collections": [generation["collections"] for generation in gc.get_stats()],
            "frozen": gc.get_freeze_count()}


class RouterWorker(ApplicationSession):
    """Applies the policy when crossbar creates it (before the first node joins: components start with the
    worker) and answers GC_PROCEDURE."""

    def __init__(self, config=None):
        super().__init__(config)
        apply_gc_policy()

    def onJoin(self, details):
        return self.register(gc_figures, GC_PROCEDURE)
