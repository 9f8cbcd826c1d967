"""Which controller backend looks after which node, when several backends share one router and one database.

Every backend hears every node (the router sends each of them every event and presence change), but one backend
only sends a node's deliveries and writes its presence: its owner, chosen by rendezvous hashing over the live
backends' router session ids. Every backend sees the same sessions (the router's session list and meta-events),
so they agree on the owners without talking; when a backend leaves, only its own nodes move, spread over the
others, and when one joins it takes about its share from each. Backends that disagree for a moment (one has
heard of a join the other has not) both send: the node's idempotency keys make that harmless.
"""
import hashlib
from typing import Dict, Iterable, Optional, Set


def weight(node_id: str, backend: int) -> int:
    return int.from_bytes(hashlib.blake2b(f"{backend}/{node_id}".encode(), digest_size=8).digest(), "big")


def owner(node_id: str, backends: Iterable[int]) -> Optional[int]:
    """The backend (a router session id) with the highest weight for ``node_id``; None without backends."""
    return max(backends, key=lambda backend: (weight(node_id, backend), backend), default=None)


class Backends:
    """The live backends as this one knows them. Before it knows its own session (``me`` None) it owns every node:
    a controller alone, or one whose session list has not come yet (its join then looks at every node again)."""

    def __init__(self):
        self.me: Optional[int] = None
        self._ids: Set[int] = set()
        self._owners: Dict[str, Optional[int]] = {}  # node id -> its owner, until the backends change

    def __contains__(self, backend) -> bool:
        return backend in self._ids

    @property
    def alone(self) -> bool:
        return self._ids <= {self.me}

    def reset(self, me: Optional[int], ids: Iterable[int] = ()) -> None:
        self.me = me
        self._ids = set(ids) | ({me} if me is not None else set())
        self._owners.clear()

    def add(self, backend: int) -> None:
        if self.me is not None and backend not in self._ids:
            self._ids.add(backend)
            self._owners.clear()

    def remove(self, backend: int) -> bool:
        """Forget a backend that left; True when it was one."""
        if backend == self.me or backend not in self._ids:
            return False
        self._ids.discard(backend)
        self._owners.clear()
        return True

    def owner_of(self, node_id: str) -> Optional[int]:
        if node_id not in self._owners:
            self._owners[node_id] = owner(node_id, self._ids)
        return self._owners[node_id]

    def owns(self, node_id: str) -> bool:
        return self.me is None or self.owner_of(node_id) == self.me
