"""An Auth over real SQLite with a fast argon2; the clock and the hashing runner are injectable."""
from argon2 import PasswordHasher
from twisted.internet import defer
from twisted.internet.task import Clock

from pdserver.auth.audit import AuditLog
from pdserver.auth.passwords import Passwords
from pdserver.auth.service import Auth
from pdserver.auth.throttle import LoginThrottle
from pdserver.auth.tokens import TokenIssuer
from pdserver.auth.users import UserStore
from pdserver.storage import open_database

SECRET = "k" * 43
OWNER_PASSWORD = "owner-password"


def make_auth(db_path, clock=None, run_hashing=None, limit=5):
    """An Auth on the database at ``db_path`` (a second call on the same path is a restarted node)."""
    clock = clock or Clock()
    conn = open_database(db_path)
    fast = Passwords(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    return Auth(UserStore(conn, clock.seconds), TokenIssuer(SECRET, 3600, clock.seconds), fast,
                LoginThrottle(clock.seconds, limit), AuditLog(conn, clock.seconds), clock.seconds,
                run_hashing or (lambda f, *a: defer.maybeDeferred(f, *a)))


def result_of(d: defer.Deferred):
    """The result or Failure of a Deferred that has already fired."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    return results[0]
