"""The first user: never an empty or fixed password."""
from argon2 import PasswordHasher
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.auth.audit import AuditLog
from pdserver.auth.passwords import Passwords
from pdserver.auth.roles import Role
from pdserver.auth.service import Auth
from pdserver.auth.throttle import LoginThrottle
from pdserver.auth.tokens import TokenIssuer
from pdserver.auth.users import UserStore
from pdserver.secretfiles import random_password
from pdserver.storage import open_database


def make_auth(tmp_path):
    clock = Clock()
    conn = open_database(tmp_path / "n.db")
    fast = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return Auth(UserStore(conn, clock.seconds), TokenIssuer("k" * 43, 60, clock.seconds), fast,
                LoginThrottle(clock.seconds), AuditLog(conn, clock.seconds), clock.seconds,
                lambda f, *a: defer.maybeDeferred(f, *a))


def test_without_a_configured_password_a_random_one_is_generated_and_handed_over(tmp_path):
    auth = make_auth(tmp_path)
    written = []
    user = auth.bootstrap_admin(None, written.append, random_password)
    assert user.username == "paradrop" and user.role is Role.OWNER
    assert len(written) == 1 and len(written[0]) >= 16
    assert auth.passwords.verify(user.password_hash, written[0])
    assert auth.bootstrap_admin(None, written.append, random_password) is None
    assert len(written) == 1


def test_two_nodes_never_share_a_generated_password(tmp_path):
    a, b = [], []
    make_auth(tmp_path / "a").bootstrap_admin(None, a.append, random_password)
    make_auth(tmp_path / "b").bootstrap_admin(None, b.append, random_password)
    assert a != b


def test_basic_auth_results_are_cached_until_the_password_changes(tmp_path):
    import base64
    auth = make_auth(tmp_path)
    auth.bootstrap_admin("first-password", lambda pw: None, random_password)
    header = "Basic " + base64.b64encode(b"paradrop:first-password").decode()
    results = []
    auth.authenticate(header, "127.0.0.1").addBoth(results.append)
    assert results[-1].username == "paradrop"
    principal = auth._from_token(auth.tokens.issue("paradrop", 0)[0])
    auth.change_password(principal, "paradrop", "first-password", "second-password", None).addBoth(results.append)
    auth.authenticate(header, "127.0.0.1").addBoth(results.append)
    assert results[-1].type.__name__ == "Unauthenticated"
