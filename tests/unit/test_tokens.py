"""JWT issue and verification against an injected clock, with a cache that still honours expiry."""
import jwt
import pytest
from twisted.internet.task import Clock

from pdserver.auth.tokens import InvalidToken, TokenIssuer

SECRET = "s" * 43


def make(ttl=3600):
    clock = Clock()
    clock.advance(1_700_000_000)
    return clock, TokenIssuer(SECRET, ttl, clock.seconds, cache_size=4)


def test_a_token_verifies_until_its_expiry_and_not_after():
    clock, issuer = make(ttl=3600)
    token, expires = issuer.issue("paradrop", "u1", 0)
    assert expires == clock.seconds() + 3600
    assert issuer.verify(token)["sub"] == "paradrop"
    clock.advance(3599)
    assert issuer.verify(token)["sub"] == "paradrop"
    clock.advance(1)
    with pytest.raises(InvalidToken, match="expired"):
        issuer.verify(token)


def test_tokens_signed_with_another_secret_or_algorithm_are_refused():
    clock, issuer = make()
    claims = {"sub": "paradrop", "gen": 0, "exp": clock.seconds() + 60, "iss": "paradrop-node",
              "aud": "paradrop-edge-api"}
    with pytest.raises(InvalidToken):
        issuer.verify(jwt.encode(claims, "x" * 43, algorithm="HS256"))
    with pytest.raises(InvalidToken):
        issuer.verify(jwt.encode(claims, None, algorithm="none"))
    with pytest.raises(InvalidToken):
        issuer.verify(jwt.encode({**claims, "aud": "elsewhere"}, SECRET, algorithm="HS256"))
    with pytest.raises(InvalidToken):
        issuer.verify("not.a.token")


def test_cache_is_bounded_and_forget_drops_a_users_entries():
    clock, issuer = make()
    tokens = [issuer.issue(f"user{i}", f"u{i}", 0)[0] for i in range(6)]
    for token in tokens:
        issuer.verify(token)
    assert len(issuer._cache) == 4
    issuer.forget(lambda claims: claims["sub"] == "user5")
    assert all(c["sub"] != "user5" for c in issuer._cache.values())
    assert issuer.verify(tokens[5])["sub"] == "user5"


def test_a_token_names_the_user_row_it_was_issued_for():
    clock, issuer = make()
    token, _ = issuer.issue("paradrop", "3f2a", 7)
    claims = issuer.verify(token)
    assert (claims["sub"], claims["uid"], claims["gen"]) == ("paradrop", "3f2a", 7)


def test_text_a_token_cannot_encode_is_refused_not_raised():
    clock, issuer = make()
    for token in ("caf\u00e9.x.y", "a\udc80b.c.d", "\x00"):
        with pytest.raises(InvalidToken):
            issuer.verify(token)
