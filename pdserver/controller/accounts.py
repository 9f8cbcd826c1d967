"""Controller users: argon2 hashes, login tokens checked against the database, logout, registration.

A token is a JWT (signed with the controller's secret, kept in the database so several backends share it)
whose signature is checked when a request's head arrives; every request then checks it against the database
(the user still exists with the same uid and password generation, the token was not logged out), so nothing
about a session lives in this process. Scoped tokens (``scope``) open one resource only: a node downloading
a chute archive with the token its command carried.
"""
import dataclasses
import secrets
import uuid
from typing import Callable, Optional

import jwt
from twisted.internet import defer
from twisted.logger import Logger

from pdserver import errors
from pdserver.auth.passwords import Passwords, password_problem
from pdserver.auth.service import text
from pdserver.auth.throttle import LoginThrottle, LoginThrottled
from pdserver.auth.users import USERNAME
from pdserver.controller.audit import Audit, thd_record
from pdserver.controller.storage import Database, fetch, run

ISSUER = "paradrop-controller"
AUDIENCE = "paradrop-cloud-api"
ADMIN_USERNAME = "admin"
_SECRET_SETTING = "token_secret"
_CACHE_SIZE = 1024


@dataclasses.dataclass(frozen=True)
class CloudPrincipal:
    username: str
    uid: str
    generation: int
    jti: str
    expires: float
    scope: Optional[str] = None
    admin: bool = False  # filled in from the database by Accounts.check


class Tokens:
    """JWTs of the controller; verified signatures are cached (bounded), expiry is checked on every use."""

    def __init__(self, secret: Optional[str], ttl: int, clock: Callable[[], float]):
        """``secret`` may be set later (it is read from the database at start); no token works until then."""
        self.secret = secret
        self._ttl = ttl
        self._clock = clock
        self._cache = {}

    def issue(self, username: str, uid: str, generation: int, scope: Optional[str] = None,
              ttl: Optional[int] = None) -> tuple:
        now = int(self._clock())
        expires = now + (ttl or self._ttl)
        claims = {"sub": username, "uid": uid, "gen": generation, "iat": now, "exp": expires, "iss": ISSUER,
                  "aud": AUDIENCE, "jti": secrets.token_hex(12)}
        if scope is not None:
            claims["scope"] = scope
        return jwt.encode(claims, self.secret, algorithm="HS256"), expires

    def verify(self, token: str) -> CloudPrincipal:
        principal = self._cache.get(token)
        if principal is None:
            principal = self._decode(token)
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[token] = principal
        if principal.expires <= self._clock():
            self._cache.pop(token, None)
            raise errors.Unauthenticated("invalid token: token expired", field="token")
        return principal

    def _decode(self, token: str) -> CloudPrincipal:
        if self.secret is None:
            raise errors.Unavailable("the controller is starting", headers={"Retry-After": "1"})
        try:
            claims = jwt.decode(token, self.secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                                options={"verify_exp": False, "verify_iat": False,
                                         "require": ["sub", "uid", "gen", "exp", "jti"]})
        except (jwt.PyJWTError, ValueError) as e:
            raise errors.Unauthenticated(f"invalid token: {e}", field="token") from None
        fields = (claims["sub"], claims["uid"], claims["jti"])
        if not all(isinstance(f, str) for f in fields) or not isinstance(claims["gen"], int) or \
                not isinstance(claims["exp"], (int, float)) or not isinstance(claims.get("scope", ""), str):
            raise errors.Unauthenticated("invalid token: malformed claims", field="token")
        return CloudPrincipal(claims["sub"], claims["uid"], claims["gen"], claims["jti"], claims["exp"],
                              claims.get("scope"))


def thd_token_secret(txn) -> str:
    """The signing secret: made on first start, the same ever after (and for every backend: of backends starting
    together on an empty database, the first insert wins and all read it)."""
    run(txn, "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        (_SECRET_SETTING, secrets.token_urlsafe(32)))
    return fetch(txn, "SELECT value FROM settings WHERE name = ?", (_SECRET_SETTING,))[0]["value"]


def _public(row: dict) -> dict:
    return {"username": row["username"], "admin": bool(row["admin"]), "created": row["created"]}


class Accounts:
    log = Logger()

    def __init__(self, db: Database, audit: Audit, tokens: Tokens, passwords: Passwords, throttle: LoginThrottle,
                 run_hashing: Callable[..., defer.Deferred], allow_registration: bool = False):
        self._db = db
        self._audit = audit
        self._tokens = tokens
        self._passwords = passwords
        self._throttle = throttle
        self._run_hashing = run_hashing
        self.allow_registration = allow_registration

    # The Router's side: synchronous, from the request's head.
    def from_token(self, token: str) -> CloudPrincipal:
        return self._tokens.verify(token)

    def authenticate(self, authorization: str, address: Optional[str]) -> defer.Deferred:
        """HTTP Basic (the only other scheme the Router passes on) is not taken here."""
        return defer.fail(errors.Unauthenticated("use a Bearer token from POST /api/v1/auth/login",
                                                 field="Authorization"))

    def scoped_token(self, principal: CloudPrincipal, scope: str, ttl: int) -> str:
        return self._tokens.issue(principal.username, principal.uid, principal.generation, scope, ttl)[0]

    def check(self, principal: CloudPrincipal) -> defer.Deferred:
        """The principal, with its admin flag, when its token still holds in the database; else 401."""
        return self._db.interaction(self._thd_check, principal)

    @staticmethod
    def _thd_check(txn, principal: CloudPrincipal) -> CloudPrincipal:
        found = fetch(txn, "SELECT uid, generation, admin FROM users WHERE username = ?", (principal.username,))
        if not found or found[0]["uid"] != principal.uid or found[0]["generation"] != principal.generation:
            raise errors.Unauthenticated("token revoked", field="token")
        if fetch(txn, "SELECT jti FROM revoked_tokens WHERE jti = ?", (principal.jti,)):
            raise errors.Unauthenticated("token revoked (logged out)", field="token")
        return dataclasses.replace(principal, admin=bool(found[0]["admin"]))

    @defer.inlineCallbacks
    def login(self, username, password, address: Optional[str]):
        username, password = text(username, "username"), text(password, "password")
        possible = USERNAME.fullmatch(username) is not None
        name = username if possible else None  # no attacker's text of any length or form in the log
        try:
            attempt = self._throttle.begin(username if possible else "", address)
        except LoginThrottled as e:
            if e.first:
                yield self._audit.record(name, "login", "throttled", address=address)
            raise
        found = (yield self._db.query("SELECT * FROM users WHERE username = ?", (username,))) if possible else []
        user = found[0] if found else None
        try:
            ok = yield self._run_hashing(self._passwords.verify, user["password_hash"] if user else None, password)
        except errors.Unavailable:
            attempt.withdraw()
            raise
        if not ok or user is None:
            yield self._audit.record(name, "login", "denied", address=address)
            raise errors.Unauthenticated("wrong username or password")
        attempt.succeeded()
        token, expires = self._tokens.issue(user["username"], user["uid"], user["generation"])
        yield self._audit.record(user["username"], "login", "succeeded", address=address)
        return {"token": token, "expires": expires, "username": user["username"], "admin": bool(user["admin"])}

    def logout(self, principal: CloudPrincipal, address: Optional[str]) -> defer.Deferred:
        def thd_logout(txn):
            run(txn, "DELETE FROM revoked_tokens WHERE expires < ?", (self._audit.clock(),))
            run(txn, "INSERT INTO revoked_tokens (jti, expires) VALUES (?, ?) ON CONFLICT (jti) DO NOTHING",
                (principal.jti, principal.expires))
            thd_record(txn, self._audit.clock(), principal.username, "logout", "succeeded", address=address)
            return {"message": "logged out; this token no longer works"}
        return self._db.interaction(thd_logout)

    def me(self, principal: CloudPrincipal) -> defer.Deferred:
        d = self._db.query("SELECT * FROM users WHERE username = ?", (principal.username,))
        return d.addCallback(lambda found: _public(found[0]))

    def list_users(self) -> defer.Deferred:
        return self._db.query("SELECT * FROM users ORDER BY username").addCallback(
            lambda found: [_public(r) for r in found])

    def register(self, username, password, address: Optional[str]) -> defer.Deferred:
        if not self.allow_registration:
            raise errors.Forbidden("registration is closed on this controller; ask an admin for an account",
                                   field="username")
        return self.create_user(None, username, password, False, address)

    @defer.inlineCallbacks
    def create_user(self, actor: Optional[str], username, password, admin: bool, address: Optional[str]):
        username, password = text(username, "username"), text(password, "password")
        if not USERNAME.fullmatch(username):
            raise errors.InvalidInput("username must match ^[a-z_][a-z0-9_.-]{0,31}$", field="username")
        problem = password_problem(password)
        if problem:
            raise errors.InvalidInput(f"password {problem}", field="password")
        if (yield self._db.query("SELECT username FROM users WHERE username = ?", (username,))):
            raise errors.Conflict(f"user {username} exists", field="username")
        password_hash = yield self._run_hashing(self._passwords.hash, password)
        user = yield self._db.interaction(self._thd_insert_user, actor, username, password_hash, admin, address)
        return user

    def _thd_insert_user(self, txn, actor, username, password_hash, admin, address):
        now = self._audit.clock()
        if fetch(txn, "SELECT username FROM users WHERE username = ?", (username,)):
            raise errors.Conflict(f"user {username} exists", field="username")
        run(txn, "INSERT INTO users (username, uid, password_hash, admin, generation, created) "
                 "VALUES (?, ?, ?, ?, 0, ?)", (username, uuid.uuid4().hex, password_hash, bool(admin), now))
        thd_record(txn, now, actor or username, "user-create" if actor else "register", "succeeded",
                   target=username, address=address, detail={"admin": bool(admin)})
        return {"username": username, "admin": bool(admin), "created": now}

    def delete_user(self, actor: CloudPrincipal, username, address: Optional[str]) -> defer.Deferred:
        username = text(username, "username")

        def thd_delete(txn):
            found = fetch(txn, "SELECT admin FROM users WHERE username = ?", (username,))
            if not found:
                raise errors.NotFound(f"no user {username}", field="username")
            admins = fetch(txn, "SELECT COUNT(*) AS n FROM users WHERE admin = ?", (True,))[0]["n"]
            if found[0]["admin"] and admins == 1:
                raise errors.Conflict("cannot delete the last admin", field="username")
            orphans = fetch(txn, "SELECT COUNT(*) AS n FROM node_members m WHERE m.username = ? AND m.role = ? AND "
                                 "NOT EXISTS (SELECT 1 FROM node_members o WHERE o.node_id = m.node_id AND "
                                 "o.role = ? AND o.username <> m.username)", (username, "owner", "owner"))[0]["n"]
            if orphans:
                raise errors.Conflict(f"{username} is the only owner of {orphans} node(s): give them another owner "
                                      "or delete them first", field="username")
            run(txn, "DELETE FROM users WHERE username = ?", (username,))
            thd_record(txn, self._audit.clock(), actor.username, "user-delete", "succeeded", target=username,
                       address=address)
            return {"message": f"user {username} deleted"}
        return self._db.interaction(thd_delete)

    @defer.inlineCallbacks
    def bootstrap_admin(self, password: Optional[str], write_password: Callable[[str], None],
                        generate: Callable[[], str], discard_password: Callable[[], None] = lambda: None):
        """Create the first admin (``admin``) when there are no users; its password from the setting or
        generated and handed to ``write_password`` (never logged) before the admin is stored, so that a crash
        between the two cannot leave an admin whose password nobody has. Fires with True when it was created here,
        False when there were users or another backend on the same database made it first (then
        ``discard_password`` takes back what was written)."""
        count = yield self._db.query("SELECT COUNT(*) AS n FROM users")
        if count[0]["n"]:
            return False
        generated = password is None
        if generated:
            password = generate()
            write_password(password)
        password_hash = yield self._run_hashing(self._passwords.hash, password)
        try:
            yield self._db.interaction(self._thd_insert_user, None, ADMIN_USERNAME, password_hash, True, None)
        except errors.Conflict:
            if generated:
                discard_password()
            return False
        return True
