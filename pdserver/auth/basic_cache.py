"""HTTP Basic credentials already checked, so a client sending them on every request pays argon2 once.

An entry is keyed by a keyed hash of the credentials (no password sits in a dict), bounded in number
(least recently used go first) and in time, and belongs to the user row (uid) and password generation
it was checked against: a deleted, re-created or re-passworded user never matches it again.
"""
import collections
import hashlib
import hmac
import secrets
from typing import Callable, Optional

from pdserver.auth.users import User


class BasicCache:
    def __init__(self, clock: Callable[[], float], ttl: float = 300.0, size: int = 1024):
        self._clock = clock
        self._ttl = ttl
        self._size = size
        self._key = secrets.token_bytes(32)
        self._entries: "collections.OrderedDict[bytes, tuple]" = collections.OrderedDict()

    def _digest(self, credentials: str) -> bytes:
        return hmac.new(self._key, credentials.encode("utf-8"), hashlib.sha256).digest()

    def get(self, credentials: str, current_user: Callable[[str], Optional[User]]) -> Optional[User]:
        """The user these credentials were checked for, while that user row is unchanged."""
        digest = self._digest(credentials)
        entry = self._entries.get(digest)
        if entry is None:
            return None
        username, uid, generation, until = entry
        user = current_user(username)
        if until <= self._clock() or user is None or user.uid != uid or user.generation != generation:
            del self._entries[digest]
            return None
        self._entries.move_to_end(digest)
        return user

    def put(self, credentials: str, user: User) -> None:
        self._entries[self._digest(credentials)] = (user.username, user.uid, user.generation,
                                                    self._clock() + self._ttl)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)

    def forget(self, username: str) -> None:
        """Drop a user's entries at once (deleted, or a new password)."""
        for digest in [d for d, entry in self._entries.items() if entry[0] == username]:
            del self._entries[digest]
