"""JWTs for people: HS256 with the node secret, checked against an injected clock.

Verified tokens are cached (bounded, keyed by the token) because a signature
check on every request costs a third of the API's throughput; a cached entry
is still refused after its expiry.
"""
import collections
import secrets
from typing import Callable, Optional

import jwt

ISSUER = "paradrop-node"
AUDIENCE = "paradrop-edge-api"
CHUTE_TOKEN_TTL = 10 * 365 * 24 * 3600  # revoked by redeploying the chute, not by time


class InvalidToken(Exception):
    pass


class TokenIssuer:
    def __init__(self, secret: str, ttl: int, clock: Callable[[], float], cache_size: int = 1024):
        self._secret = secret
        self._ttl = ttl
        self._clock = clock
        self._cache: "collections.OrderedDict[str, dict]" = collections.OrderedDict()
        self._cache_size = cache_size

    def issue(self, username: str, uid: str, generation: int) -> tuple:
        """A signed token for the user row ``uid`` at password ``generation``, and its expiry (unix seconds)."""
        now = int(self._clock())
        expires = now + self._ttl
        claims = {"sub": username, "uid": uid, "gen": generation, "iat": now, "exp": expires, "iss": ISSUER,
                  "aud": AUDIENCE, "jti": secrets.token_hex(8)}
        return jwt.encode(claims, self._secret, algorithm="HS256"), expires

    def issue_chute(self, chute: str, deployment: int) -> str:
        """A chute's token: valid while ``deployment`` is the chute's current one (checked by the caller)."""
        now = int(self._clock())
        claims = {"sub": f"chute:{chute}", "chute": chute, "dep": deployment, "gen": 0, "iat": now,
                  "exp": now + CHUTE_TOKEN_TTL, "iss": ISSUER, "aud": AUDIENCE}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> dict:
        """The token's claims; raises InvalidToken when forged, malformed or expired."""
        claims = self._cache.get(token)
        if claims is None:
            claims = self._decode(token)
            self._cache[token] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(token)
        if claims["exp"] <= self._clock():
            self._cache.pop(token, None)
            raise InvalidToken("token expired")
        return claims

    def _decode(self, token: str) -> dict:
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["sub", "exp", "gen"]})
        except (jwt.PyJWTError, ValueError) as e:  # ValueError: text the token's encoding cannot hold
            raise InvalidToken(str(e)) from None
        if not isinstance(claims["exp"], (int, float)) or not isinstance(claims["gen"], int):
            raise InvalidToken("malformed claims")
        return claims

    def forget(self, predicate: Optional[Callable[[dict], bool]] = None) -> None:
        """Drop cached verifications (all, or those matching) after a revocation."""
        if predicate is None:
            self._cache.clear()
            return
        for token in [t for t, c in self._cache.items() if predicate(c)]:
            del self._cache[token]
