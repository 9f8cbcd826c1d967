"""Roles and the one permission table every route is checked against."""
import enum


class Role(enum.IntEnum):
    """Ordered: a role holds every permission of the roles below it."""

    GUEST = 0
    USER = 1
    TRUSTED = 2
    ADMIN = 3
    OWNER = 4

    @classmethod
    def parse(cls, name: str) -> "Role":
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


class Permission(enum.Enum):
    READ_INFO = "read info"
    READ_CHANGES = "read changes"
    CANCEL_CHANGE = "cancel change"
    READ_CONFIG = "read config"
    WRITE_CONFIG = "write config"
    CHANGE_OWN_PASSWORD = "change own password"
    READ_AUDIT = "read audit log"
    MANAGE_USERS = "manage users"
    READ_CHUTES = "read chutes"
    READ_CHUTE_LOGS = "read chute logs"
    INSTALL_CHUTE = "install chute"
    MANAGE_CHUTES = "manage chutes"
    MANAGE_CHUTE_NETWORKS = "manage chute networks"  # kick a station, change an SSID
    MANAGE_SSH_KEYS = "manage ssh keys"  # of the admin account: SSH to the host
    POWER_HOST = "reboot or power off the host"


MINIMUM_ROLE = {
    Permission.READ_INFO: Role.GUEST,
    Permission.CHANGE_OWN_PASSWORD: Role.GUEST,
    Permission.READ_CHANGES: Role.USER,
    Permission.READ_CONFIG: Role.USER,
    Permission.CANCEL_CHANGE: Role.TRUSTED,
    Permission.WRITE_CONFIG: Role.ADMIN,
    Permission.READ_AUDIT: Role.ADMIN,
    Permission.MANAGE_USERS: Role.ADMIN,
    Permission.READ_CHUTES: Role.USER,
    Permission.READ_CHUTE_LOGS: Role.USER,
    Permission.INSTALL_CHUTE: Role.TRUSTED,
    Permission.MANAGE_CHUTES: Role.TRUSTED,
    Permission.MANAGE_CHUTE_NETWORKS: Role.TRUSTED,
    Permission.MANAGE_SSH_KEYS: Role.ADMIN,
    Permission.POWER_HOST: Role.OWNER,
}

# A chute's own token (PARADROP_API_TOKEN) reaches its own chute's routes with these permissions,
# and the read-only context routes with the second set, nothing else.
CHUTE_SELF = frozenset({Permission.READ_CHUTES, Permission.READ_CHUTE_LOGS, Permission.MANAGE_CHUTE_NETWORKS})
CHUTE_CONTEXT = frozenset({Permission.READ_INFO})


def allowed(role: Role, permission: Permission) -> bool:
    return role >= MINIMUM_ROLE[permission]
