"""An in-memory IFleetStore (pdserver.controller.interfaces) for the tests of the controller's WAMP side.

It answers with already-fired Deferreds like the real store's contract, and keeps what it was told so tests can
assert on it: every node_seen call in ``seen``, every delivery's history in ``history``.
"""
import secrets

from twisted.internet import defer
from zope.interface import implementer

from pdserver.controller.interfaces import IFleetStore

FINAL = ("succeeded", "failed", "cancelled", "interrupted", "forbidden")


@implementer(IFleetStore)
class MemoryFleetStore:
    def __init__(self):
        self.nodes = {}
        self.deliveries = {}
        self.seen = []
        self.history = {}

    # --- helpers for tests

    def add_node(self, node_id=None) -> tuple:
        """A new node: (node id, the secret it signs WAMP-CRA challenges with)."""
        node_id = node_id or secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        self.nodes[node_id] = {"key": secret, "salt": "", "iterations": 0, "keylen": 0}
        return node_id, secret

    def add_delivery(self, node_id, chute="hello", version="1", config=None, command=None, deployment_id="d1",
                     user="alice", role="owner", key=None) -> dict:
        key = key or f"dep-{deployment_id}-{node_id}-{len(self.deliveries)}"
        delivery = {"key": key, "deployment_id": deployment_id, "node_id": node_id, "state": "pending",
                    "chute": chute, "version": version, "config": config if command is None else None,
                    "source": None, "user": user, "role": role, "change_id": None, "message": None,
                    "command": command}
        if config is None and command is None:
            delivery["config"] = {"name": chute, "version": version}
        self.deliveries[key] = delivery
        self.history[key] = ["pending"]
        return delivery

    def last_seen(self, node_id):
        for entry in reversed(self.seen):
            if entry[0] == node_id:
                return entry
        return None

    # --- IFleetStore

    def node_auth(self, node_id):
        record = self.nodes.get(node_id)
        return defer.succeed(dict(record) if record else None)

    def node_seen(self, node_id, online, at, state):
        self.seen.append((node_id, online, at, state))
        return defer.succeed(None)

    def pending_deliveries(self, node_id):
        return self.pending_deliveries_of([node_id])

    def pending_deliveries_of(self, node_ids):
        node_ids = set(node_ids)
        return defer.succeed([dict(d) for d in self.deliveries.values()
                              if d["node_id"] in node_ids and d["state"] not in FINAL])

    def online_nodes(self):
        last = {entry[0]: entry[1] for entry in self.seen}
        return defer.succeed([node_id for node_id, online in last.items() if online])

    def update_delivery(self, key, state, at, change_id=None, message=None):
        """Fires True when the delivery changed; a final one is left as it is."""
        delivery = self.deliveries[key]
        if delivery["state"] in FINAL:
            return defer.succeed(False)
        delivery["state"] = state
        if change_id is not None:
            delivery["change_id"] = change_id
        if message is not None:
            delivery["message"] = message
        self.history[key].append(state)
        return defer.succeed(True)
