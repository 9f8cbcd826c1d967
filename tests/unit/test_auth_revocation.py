"""A deleted user's tokens and cached Basic credentials stay dead, also when the name comes back."""
import base64

import jwt
import pytest

from pdserver.auth.principal import Principal
from pdserver.auth.roles import Role
from pdserver.auth.tokens import AUDIENCE, ISSUER
from pdserver.errors import Unauthenticated
from pdserver.storage import open_database
from tests.unit.auth_helpers import OWNER_PASSWORD, SECRET, make_auth, result_of

OWNER = Principal("paradrop", Role.OWNER, "token")


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def bearer(token):
    return f"Bearer {token}"


def login(auth, username, password):
    return result_of(auth.login(username, password, "10.0.0.1"))["token"]


def principal(auth, authorization):
    return result_of(auth.authenticate(authorization, "10.0.0.1"))


def create(auth, username, password, role):
    return result_of(auth.create_user(OWNER, username, password, role, None))


def test_a_token_of_a_deleted_user_stays_dead_when_the_name_is_created_again(tmp_path):
    auth = make_auth(tmp_path / "n.db")
    create(auth, "alice", "alice-password", Role.GUEST)
    old = login(auth, "alice", "alice-password")
    auth.delete_user(OWNER, "alice", None)
    create(auth, "alice", "other-password", Role.ADMIN)
    assert isinstance(principal(auth, bearer(old)).value, Unauthenticated)
    assert principal(auth, bearer(login(auth, "alice", "other-password"))).role is Role.ADMIN


def test_the_token_stays_dead_across_a_restart(tmp_path):
    auth = make_auth(tmp_path / "n.db")
    create(auth, "alice", "alice-password", Role.GUEST)
    old = login(auth, "alice", "alice-password")
    auth.delete_user(OWNER, "alice", None)
    restarted = make_auth(tmp_path / "n.db")
    create(restarted, "alice", "alice-password", Role.ADMIN)
    failure = principal(restarted, bearer(old))
    assert isinstance(failure.value, Unauthenticated) and "revoked" in failure.value.message
    assert make_auth(tmp_path / "n.db").users.get("alice").role is Role.ADMIN


def test_cached_basic_credentials_die_with_their_user(tmp_path):
    auth = make_auth(tmp_path / "n.db")
    create(auth, "alice", "alice-password", Role.GUEST)
    assert principal(auth, basic("alice", "alice-password")).role is Role.GUEST
    auth.delete_user(OWNER, "alice", None)
    assert isinstance(principal(auth, basic("alice", "alice-password")).value, Unauthenticated)
    create(auth, "alice", "other-password", Role.ADMIN)
    assert isinstance(principal(auth, basic("alice", "alice-password")).value, Unauthenticated)
    assert principal(auth, basic("alice", "other-password")).role is Role.ADMIN


def test_cached_basic_credentials_die_with_a_password_change(tmp_path):
    auth = make_auth(tmp_path / "n.db")
    auth.bootstrap_admin(OWNER_PASSWORD, lambda pw: None, lambda: "")
    header = basic("paradrop", OWNER_PASSWORD)
    assert principal(auth, header).username == "paradrop"
    result_of(auth.change_password(OWNER, "paradrop", OWNER_PASSWORD, "second-password", None))
    assert isinstance(principal(auth, header).value, Unauthenticated)


@pytest.fixture
def database_before_uids(tmp_path):
    """A node.db as the node wrote it before users had a uid, with one user and a token of theirs."""
    conn = open_database(tmp_path / "n.db")
    conn.execute("""CREATE TABLE users (username TEXT PRIMARY KEY, password_hash TEXT NOT NULL, role TEXT NOT NULL,
                    generation INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, password_changed REAL NOT NULL)""")
    conn.execute("INSERT INTO schema_versions (component, version) VALUES ('users', 1)")
    password_hash = make_auth(tmp_path / "hasher.db").passwords.hash("alice-password")
    for name in ("alice", "bob"):
        conn.execute("INSERT INTO users VALUES (?, ?, 'guest', 0, 0, 0)", (name, password_hash))
    conn.close()
    return tmp_path / "n.db", jwt.encode({"sub": "alice", "gen": 0, "exp": 4102444800, "iss": ISSUER,
                                         "aud": AUDIENCE}, SECRET, algorithm="HS256")


def test_an_existing_database_gets_a_distinct_uid_per_user_and_old_tokens_must_log_in_again(database_before_uids):
    path, old_token = database_before_uids
    auth = make_auth(path)
    alice, bob = auth.users.get("alice"), auth.users.get("bob")
    assert alice.uid and bob.uid and alice.uid != bob.uid
    assert make_auth(path).users.get("alice").uid == alice.uid
    assert isinstance(principal(auth, bearer(old_token)).value, Unauthenticated)
    assert principal(auth, bearer(login(auth, "alice", "alice-password"))).username == "alice"
