"""Authentication and account operations, shared by every route.

Password hashing is slow on purpose (argon2), so it runs off the reactor thread
through ``run_in_thread``; everything else here is in-memory and synchronous.
"""
import base64
import binascii
import hashlib
from typing import Callable, Optional

from twisted.internet import defer
from twisted.logger import Logger

from pdserver.auth.audit import AuditLog
from pdserver.errors import Conflict, Forbidden, InvalidInput, NotFound, Throttled, Unauthenticated
from pdserver.auth.passwords import Passwords, password_problem
from pdserver.auth.principal import Principal
from pdserver.auth.roles import Role
from pdserver.auth.throttle import LoginThrottle
from pdserver.auth.tokens import InvalidToken, TokenIssuer
from pdserver.auth.users import USERNAME, User, UserExists, UserStore


class Auth:
    log = Logger()
    BASIC_CACHE_TTL = 300.0

    def __init__(self, users: UserStore, tokens: TokenIssuer, passwords: Passwords, throttle: LoginThrottle,
                 audit: AuditLog, clock: Callable[[], float],
                 run_in_thread: Callable[..., defer.Deferred],
                 chute_token_valid: Callable[[str, int], bool] = lambda name, deployment: False):
        self.users = users
        self.tokens = tokens
        self.passwords = passwords
        self.throttle = throttle
        self.audit = audit
        self._clock = clock
        self._run_in_thread = run_in_thread
        self._basic_cache = {}
        self._chute_token_valid = chute_token_valid

    @defer.inlineCallbacks
    def _check_password(self, username: str, password: str, address: Optional[str], action: str):
        """The user when the password is right; raises Throttled or Unauthenticated and audits either way."""
        key = (username, address)
        wait = self.throttle.retry_after(key)
        if wait:
            self.audit.record(username, action, "throttled", address=address)
            raise Throttled(wait, f"too many failed logins; retry in {int(wait) + 1} s")
        user = self.users.get(username)
        ok = yield self._run_in_thread(self.passwords.verify, user.password_hash if user else None, password)
        user = self.users.get(username)
        if not ok or user is None:
            self.throttle.failed(key)
            self.audit.record(username, action, "denied", address=address)
            self.log.info("failed login for {username} from {address}", username=username, address=address)
            raise Unauthenticated("wrong username or password")
        self.throttle.succeeded(key)
        return user

    @defer.inlineCallbacks
    def login(self, username: str, password: str, address: Optional[str]):
        user = yield self._check_password(username, password, address, "login")
        token, expires = self.tokens.issue(user.username, user.generation)
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
        if user is None or user.generation != claims["gen"]:
            raise Unauthenticated("token revoked")
        return Principal(user.username, user.role, "token")

    @defer.inlineCallbacks
    def _from_basic(self, credentials: str, address: Optional[str]):
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated("malformed basic credentials") from None
        username, sep, password = decoded.partition(":")
        if not sep:
            raise Unauthenticated("malformed basic credentials")
        digest = hashlib.sha256(decoded.encode()).digest()
        cached = self._basic_cache.get(digest)
        now = self._clock()
        if cached is not None:
            cached_user, generation, until = cached
            user = self.users.get(cached_user)
            if until > now and user is not None and user.generation == generation:
                return Principal(user.username, user.role, "basic")
            del self._basic_cache[digest]
        user = yield self._check_password(username, password, address, "basic-auth")
        if len(self._basic_cache) > 1024:
            self._basic_cache.clear()
        self._basic_cache[digest] = (user.username, user.generation, now + self.BASIC_CACHE_TTL)
        return Principal(user.username, user.role, "basic")

    @defer.inlineCallbacks
    def change_password(self, caller: Principal, username: str, old: str, new: str, address: Optional[str]):
        """Anyone may change their own password, admins others' too; the old one is always required."""
        if username != caller.username and caller.role < Role.ADMIN:
            self.audit.record(caller.username, "password-change", "forbidden", target=username, address=address)
            raise Forbidden("you may change only your own password", field="username")
        problem = password_problem(new)
        if problem:
            raise InvalidInput(f"new_password {problem}", field="new_password")
        if new == old:
            raise InvalidInput("new_password must differ from old_password", field="new_password")
        try:
            yield self._check_password(username, old, address, "password-change")
        except Unauthenticated:
            raise Unauthenticated("old_password is wrong", field="old_password") from None
        new_hash = yield self._run_in_thread(self.passwords.hash, new)
        self.users.set_password_hash(username, new_hash)
        self.tokens.forget(lambda claims: claims["sub"] == username)
        self.audit.record(caller.username, "password-change", "succeeded", target=username, address=address)
        return {"message": f"password of {username} changed; its old tokens no longer work"}

    @defer.inlineCallbacks
    def create_user(self, caller: Principal, username: str, password: str, role: Role, address: Optional[str]):
        if not USERNAME.match(username):
            raise InvalidInput("username must match ^[a-z_][a-z0-9_.-]{0,31}$", field="username")
        problem = password_problem(password)
        if problem:
            raise InvalidInput(f"password {problem}", field="password")
        if role > caller.role:
            raise InvalidInput("cannot grant a role above your own", field="role")
        if self.users.get(username) is not None:
            raise Conflict(f"user {username} exists", field="username")
        password_hash = yield self._run_in_thread(self.passwords.hash, password)
        try:
            user = self.users.create(username, password_hash, role)
        except UserExists:
            raise Conflict(f"user {username} exists", field="username") from None
        self.audit.record(caller.username, "user-create", "succeeded", target=username, address=address,
                          detail={"role": role.label})
        return user

    def delete_user(self, caller: Principal, username: str, address: Optional[str]) -> None:
        user = self.users.get(username)
        if user is None:
            raise NotFound(f"no user {username}", field="username")
        if user.role > caller.role:
            raise InvalidInput("cannot delete a user with a role above your own", field="username")
        if user.role == Role.OWNER and sum(u.role == Role.OWNER for u in self.users.list()) == 1:
            raise Conflict("cannot delete the last owner", field="username")
        self.users.delete(username)
        self.tokens.forget(lambda claims: claims["sub"] == username)
        self.audit.record(caller.username, "user-delete", "succeeded", target=username, address=address)

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
