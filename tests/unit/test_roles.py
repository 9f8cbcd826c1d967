"""The permission table: complete, ordered by role."""
from pdserver.auth.roles import MINIMUM_ROLE, Permission, Role, allowed


def test_every_permission_has_a_minimum_role():
    assert set(MINIMUM_ROLE) == set(Permission)


def test_higher_roles_hold_every_permission_of_lower_ones():
    for permission in Permission:
        granted = [allowed(role, permission) for role in sorted(Role)]
        assert granted == sorted(granted), permission


def test_examples():
    assert allowed(Role.GUEST, Permission.READ_INFO)
    assert not allowed(Role.GUEST, Permission.READ_CHANGES)
    assert not allowed(Role.TRUSTED, Permission.READ_AUDIT)
    assert allowed(Role.OWNER, Permission.MANAGE_USERS)
    assert Role.parse("Admin") is Role.ADMIN
