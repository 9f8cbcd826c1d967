"""The first user: never an empty or fixed password."""
from pdserver.auth.roles import Role
from pdserver.secretfiles import random_password
from tests.unit.auth_helpers import make_auth


def test_without_a_configured_password_a_random_one_is_generated_and_handed_over(tmp_path):
    auth = make_auth(tmp_path / "n.db")
    written = []
    user = auth.bootstrap_admin(None, written.append, random_password)
    assert user.username == "paradrop" and user.role is Role.OWNER
    assert len(written) == 1 and len(written[0]) >= 16
    assert auth.passwords.verify(user.password_hash, written[0])
    assert auth.bootstrap_admin(None, written.append, random_password) is None
    assert len(written) == 1


def test_two_nodes_never_share_a_generated_password(tmp_path):
    a, b = [], []
    make_auth(tmp_path / "a" / "n.db").bootstrap_admin(None, a.append, random_password)
    make_auth(tmp_path / "b" / "n.db").bootstrap_admin(None, b.append, random_password)
    assert a != b
