"""Login as a client sees it: concurrent attempts meet the throttle before any password check, and any
str, however odd, gets an answer or a 4xx naming its field, never an exception from a lower layer."""
import base64

import pytest
from twisted.internet import defer

from pdserver.auth.principal import Principal
from pdserver.auth.roles import Role
from pdserver.errors import Error, InvalidInput, Throttled, Unauthenticated, Unavailable
from tests.unit.auth_helpers import OWNER_PASSWORD, make_auth, result_of

OWNER = Principal("paradrop", Role.OWNER, "token")


class HeldHashing:
    """A hashing runner whose jobs wait until the test releases them (attempts in flight)."""

    def __init__(self):
        self.held = []

    def __call__(self, f, *args):
        d = defer.Deferred()
        self.held.append((d, f, args))
        return d

    def release_all(self):
        held, self.held = self.held, []
        for d, f, args in held:
            d.callback(f(*args))


@pytest.fixture
def held(tmp_path):
    hashing = HeldHashing()
    auth = make_auth(tmp_path / "n.db", run_hashing=hashing)
    auth.users.create("paradrop", auth.passwords.hash(OWNER_PASSWORD), Role.OWNER)
    return auth, hashing


def test_of_200_concurrent_logins_five_reach_the_password_check_and_195_are_refused_at_once(held):
    auth, hashing = held
    answers = [auth.login("paradrop", "wrong-password", "10.0.0.1") for _ in range(200)]
    assert len(hashing.held) == 5
    refused = [a for a in answers if a.called]
    assert len(refused) == 195
    assert all(isinstance(result_of(a).value, Throttled) for a in refused)
    hashing.release_all()
    assert all(isinstance(result_of(a).value, Unauthenticated) for a in answers if a not in refused)
    burst = [auth.login("paradrop", OWNER_PASSWORD if i == 10 else "wrong", "10.0.0.1") for i in range(20)]
    assert hashing.held == []
    assert all(isinstance(result_of(a).value, Throttled) for a in burst)


def test_basic_auth_meets_the_same_throttle(held):
    auth, hashing = held
    header = "Basic " + base64.b64encode(b"paradrop:wrong-password").decode()
    answers = [auth.authenticate(header, "10.0.0.1") for _ in range(50)]
    assert len(hashing.held) == 5
    hashing.release_all()
    assert sorted(type(result_of(a).value).__name__ for a in answers) == ["LoginThrottled"] * 45 + [
        "Unauthenticated"] * 5


def test_throttled_logins_leave_one_audit_record_per_blocked_spell(held):
    auth, hashing = held
    answers = [auth.login("paradrop", "wrong-password", "10.0.0.1") for _ in range(100)]
    hashing.release_all()
    assert all(isinstance(result_of(a).value, (Throttled, Unauthenticated)) for a in answers)
    records = auth.audit.list(limit=1000, action="login")
    assert sorted(r["result"] for r in records) == ["denied"] * 5 + ["throttled"]


def test_a_login_the_hashing_pool_refuses_answers_503_and_does_not_use_up_the_budget(tmp_path):
    auth = make_auth(tmp_path / "n.db", run_hashing=lambda f, *a: defer.fail(Unavailable("busy")))
    auth.users.create("paradrop", auth.passwords.hash(OWNER_PASSWORD), Role.OWNER)
    for _ in range(20):
        assert result_of(auth.login("paradrop", OWNER_PASSWORD, "10.0.0.1")).value.status == 503
    auth._run_hashing = lambda f, *a: defer.maybeDeferred(f, *a)
    assert result_of(auth.login("paradrop", OWNER_PASSWORD, "10.0.0.1"))["token"]


def test_names_no_user_can_have_are_refused_like_unknown_users(held):
    auth, hashing = held
    for name in ("paradrop\n", "a" * 5000, "PARADROP", "", "x\x00y"):
        assert isinstance(result_of(auth.login(name, OWNER_PASSWORD, "10.0.0.1")).value, Unauthenticated), name
    assert hashing.held == []


def test_a_deleted_user_in_the_middle_of_a_login_does_not_log_in(held):
    auth, hashing = held
    auth.users.create("alice", auth.passwords.hash("alice-password"), Role.USER)
    answer = auth.login("alice", "alice-password", "10.0.0.1")
    auth.delete_user(OWNER, "alice", None)
    hashing.release_all()
    assert isinstance(result_of(answer).value, Unauthenticated)


SURROGATE = "bad\udc80name"


@pytest.mark.parametrize("call, field", [
    (lambda auth: auth.login(SURROGATE, "password", "10.0.0.1"), "username"),
    (lambda auth: auth.login("paradrop", SURROGATE, "10.0.0.1"), "password"),
    (lambda auth: auth.create_user(OWNER, SURROGATE, "long-password", Role.USER, None), "username"),
    (lambda auth: auth.create_user(OWNER, "carol", SURROGATE + "-long", Role.USER, None), "password"),
    (lambda auth: auth.change_password(OWNER, SURROGATE, OWNER_PASSWORD, "new-password", None), "username"),
    (lambda auth: auth.change_password(OWNER, "paradrop", SURROGATE, "new-password", None), "old_password"),
    (lambda auth: auth.change_password(OWNER, "paradrop", OWNER_PASSWORD, SURROGATE + "-long", None),
     "new_password"),
    (lambda auth: defer.maybeDeferred(auth.delete_user, OWNER, SURROGATE, None), "username"),
    (lambda auth: auth.login(7, "password", "10.0.0.1"), "username"),
])
def test_text_utf8_cannot_hold_is_a_400_naming_its_field(tmp_path, call, field):
    auth = make_auth(tmp_path / "n.db")
    auth.bootstrap_admin(OWNER_PASSWORD, lambda pw: None, lambda: "")
    error = result_of(call(auth)).value
    assert isinstance(error, InvalidInput) and error.field == field


@pytest.mark.parametrize("authorization", [
    "Basic " + "é" * 20, "Basic %%%%", "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    "Basic " + base64.b64encode(b"no-colon").decode(), "Basic " + base64.b64encode(b"\xed\xb2\x80:x").decode(),
    "Bearer caf\u00e9", "Bearer a\udc80b.c.d", "Bearer " + "x" * 100000, "Negotiate abc", "",
    "Basic " + base64.b64encode(("a" * 100000 + ":" + "b" * 100000).encode()).decode(),
])
def test_any_authorization_header_is_a_401_not_an_exception(tmp_path, authorization):
    auth = make_auth(tmp_path / "n.db")
    error = result_of(auth.authenticate(authorization, "10.0.0.1")).value
    assert isinstance(error, Error) and error.status == 401
