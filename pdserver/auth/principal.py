"""The authenticated caller of a request."""
import dataclasses

from pdserver.auth.roles import Role


@dataclasses.dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    method: str  # "token" or "basic"
