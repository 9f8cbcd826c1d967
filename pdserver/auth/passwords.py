"""Password hashing with argon2id; verification costs the same for unknown users."""
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


class Passwords:
    def __init__(self, hasher: PasswordHasher = None):
        self._hasher = hasher or PasswordHasher()
        self._dummy = None

    def _dummy_hash(self) -> str:
        """Made on first use (in the login thread), not at start: it costs as much as a real hash."""
        if self._dummy is None:
            self._dummy = self._hasher.hash("paradrop-timing-equaliser")
        return self._dummy

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash, password: str) -> bool:
        """True when ``password`` matches; a None hash still spends the full cost."""
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash(), password) and stored_hash is not None
        except (VerificationError, InvalidHashError):
            return False


def password_problem(password) -> str:
    """Why a new password is not acceptable, or '' when it is."""
    if not isinstance(password, str):
        return "must be a string"
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"must be at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"must be at most {MAX_PASSWORD_LENGTH} characters"
    return ""
