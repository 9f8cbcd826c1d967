"""Authentication and account operations, shared by every route.

Password hashing is slow on purpose (argon2), so it runs in its own bounded pool
through ``run_hashing``; everything else here is in-memory and synchronous.
Every str that reaches these methods gets a 4xx or an answer, never an exception
from a lower layer: text that UTF-8 cannot hold is refused up front.
"""
import base64
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from pdserver.auth.audit import AuditLog
from pdserver.auth.basic_cache import BasicCache
from pdserver.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthenticated, Unavailable
from pdserver.auth.passwords import Passwords, password_problem
from pdserver.auth.principal import Principal
from pdserver.auth.roles import Role
from pdserver.auth.throttle import LoginThrottle, LoginThrottled
from pdserver.auth.tokens import InvalidToken, TokenIssuer
from pdserver.auth.users import USERNAME, User, UserExists, UserStore


def text(value, field: str) -> str:
    """``value`` when it is a str that UTF-8 can hold (SQLite and argon2 need that); else a 400 naming ``field``."""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be a string", field=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput(f"{field} must be valid Unicode text (it holds a lone surrogate)", field=field) from None
    return value


class Auth:
    log = Logger()

    def __init__(self, users: UserStore, tokens: TokenIssuer, passwords: Passwords, throttle: LoginThrottle,
                 audit: AuditLog, clock: Callable[[], float],
                 run_hashing: Callable[..., defer.Deferred],
                 chute_token_valid: Callable[[str, int], bool] = lambda name, deployment: False):
        self.users = users
        self.tokens = tokens
        self.passwords = passwords
        self.throttle = throttle
        self.audit = audit
        self._run_hashing = run_hashing
        self._basic = BasicCache(clock)
        self._chute_token_valid = chute_token_valid

    @defer.inlineCallbacks
    def _check_password(self, username: str, password: str, address: Optional[str], action: str):
        """The user when the password is right; raises Throttled or Unauthenticated and audits either way.

        The attempt is counted before the check, so concurrent attempts meet the limit as sequential ones
        do. A name that cannot be a user's is refused without hashing; all such names share one budget.
        """
        possible = USERNAME.fullmatch(username) is not None
        try:
            attempt = self.throttle.begin(username if possible else "", address)
        except LoginThrottled as e:
            if e.first:
                self.audit.record(username if possible else None, action, "throttled", address=address)
            raise
        user = self.users.get(username)
        ok = False
        if possible:
            try:
                ok = yield self._run_hashing(self.passwords.verify, user.password_hash if user else None, password)
            except Unavailable:
                attempt.withdraw()
                raise
        if not ok or user is None or self.users.get(username) != user:
            name = username if possible else None  # no attacker's text of any length or form in logs
            self.audit.record(name, action, "denied", address=address)
            self.log.info("failed login for {username} from {address}", username=name, address=address)
            raise Unauthenticated("wrong username or password")
        attempt.succeeded()
        return user

    @defer.inlineCallbacks
    def login(self, username: str, password: str, address: Optional[str]):
        user = yield self._check_password(text(username, "username"), text(password, "password"), address, "login")
        token, expires = self.tokens.issue(user.username, user.uid, user.generation)
        self.audit.record(user.username, "login", "succeeded", address=address)
        return {"token": token, "username": user.username, "role": user.role.label, "expires_at": expires}

    @defer.inlineCallbacks
    def authenticate(self, authorization: Optional[str], address: Optional[str]):
        """The Principal behind an Authorization header (Bearer JWT or HTTP Basic)."""
        if not authorization:
            raise Unauthenticated("authentication required")
        scheme, _, credentials = authorization.partition(" ")
        scheme = scheme.lower()
        credentials = credentials.strip()
        if scheme == "bearer":
            return self._from_token(credentials)
        if scheme == "basic":
            principal = yield self._from_basic(credentials, address)
            return principal
        raise Unauthenticated("unsupported authorization scheme")

    def _from_token(self, token: str) -> Principal:
        try:
            claims = self.tokens.verify(token)
        except InvalidToken as e:
            raise Unauthenticated(f"invalid token: {e}") from None
        if "chute" in claims:
            if not self._chute_token_valid(claims["chute"], claims.get("dep")):
                raise Unauthenticated("token of a chute deployment that is no longer current")
            return Principal(claims["sub"], Role.GUEST, "chute-token", chute=claims["chute"])
        user = self.users.get(claims["sub"])
        if user is None or user.uid != claims.get("uid") or user.generation != claims["gen"]:
            raise Unauthenticated("token revoked")
        return Principal(user.username, user.role, "token")

    @defer.inlineCallbacks
    def _from_basic(self, credentials: str, address: Optional[str]):
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except ValueError:  # bad base64, text that is not ASCII, bytes that are not UTF-8
            raise Unauthenticated("malformed basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthenticated("malformed basic credentials")
        user = self._basic.get(decoded, self.users.get)
        if user is None:
            user = yield self._check_password(username, password, address, "basic-auth")
            self._basic.put(decoded, user)
        return Principal(user.username, user.role, "basic")

    @defer.inlineCallbacks
    def change_password(self, caller: Principal, username: str, old: str, new: str, address: Optional[str]):
        """Anyone may change their own password, admins others' too; the old one is always required."""
        username, old, new = text(username, "username"), text(old, "old_password"), text(new, "new_password")
        if username != caller.username and caller.role < Role.ADMIN:
            self.audit.record(caller.username, "password-change", "forbidden", target=username, address=address)
            raise Forbidden("you may change only your own password", field="username")
        problem = password_problem(new)
        if problem:
            raise InvalidInput(f"new_password {problem}", field="new_password")
        if new == old:
            raise InvalidInput("new_password must differ from old_password", field="new_password")
        try:
            user = yield self._check_password(username, old, address, "password-change")
        except Unauthenticated:
            raise Unauthenticated("old_password is wrong", field="old_password") from None
        new_hash = yield self._run_hashing(self.passwords.hash, new)
        if self.users.get(username) != user:
            raise Conflict(f"user {username} changed meanwhile; try again", field="username")
        self.users.set_password_hash(username, new_hash)
        self._revoke(username)
        self.audit.record(caller.username, "password-change", "succeeded", target=username, address=address)
        return {"message": f"password of {username} changed; its old tokens no longer work"}

    @defer.inlineCallbacks
    def create_user(self, caller: Principal, username: str, password: str, role: Role, address: Optional[str]):
        username, password = text(username, "username"), text(password, "password")
        if not USERNAME.fullmatch(username):
            raise InvalidInput("username must match ^[a-z_][a-z0-9_.-]{0,31}$", field="username")
        problem = password_problem(password)
        if problem:
            raise InvalidInput(f"password {problem}", field="password")
        if role > caller.role:
            raise InvalidInput("cannot grant a role above your own", field="role")
        if self.users.get(username) is not None:
            raise Conflict(f"user {username} exists", field="username")
        password_hash = yield self._run_hashing(self.passwords.hash, password)
        try:
            user = self.users.create(username, password_hash, role)
        except UserExists:
            raise Conflict(f"user {username} exists", field="username") from None
        self.audit.record(caller.username, "user-create", "succeeded", target=username, address=address,
                          detail={"role": role.label})
        return user

    def delete_user(self, caller: Principal, username: str, address: Optional[str]) -> None:
        user = self.users.get(text(username, "username"))
        if user is None:
            raise NotFound(f"no user {username}", field="username")
        if user.role > caller.role:
            raise InvalidInput("cannot delete a user with a role above your own", field="username")
        if user.role == Role.OWNER and sum(u.role == Role.OWNER for u in self.users.list()) == 1:
            raise Conflict("cannot delete the last owner", field="username")
        self.users.delete(username)
        self._revoke(username)
        self.audit.record(caller.username, "user-delete", "succeeded", target=username, address=address)

    def _revoke(self, username: str) -> None:
        """Drop what was cached for ``username``; its tokens fail the uid and generation check anyway."""
        self.tokens.forget(lambda claims: claims["sub"] == username)
        self._basic.forget(username)

    def bootstrap_admin(self, password: Optional[str], write_password: Callable[[str], None],
                        generate: Callable[[], str]) -> Optional[User]:
        """Create the first user, ``paradrop`` (owner), when the node has none.

        The password comes from the caller's setting or is generated and handed
        to ``write_password``; it is never logged.
        """
        if self.users.count():
            return None
        generated = password is None
        if generated:
            password = generate()
            write_password(password)
        user = self.users.create("paradrop", self.passwords.hash(password), Role.OWNER)
        self.audit.record(None, "user-create", "succeeded", target="paradrop",
                          detail={"role": "owner", "password": "generated" if generated else "from environment"})
        return user
