"""The authenticated caller of a request."""
import dataclasses
from typing import Optional

from pdserver.auth.roles import Role


@dataclasses.dataclass(frozen=True)
class Principal:
    username: str
    role: Role
    method: str  # "token", "basic" or "chute-token"
    chute: Optional[str] = None  # set for a chute's own token: it acts only for that chute
