"""Register, log in and out, who am I, and the controller's users (admins only)."""
from pdserver.api.routing import PUBLIC, Call, Response, RouteTable
from pdserver.controller.api.auth import CloudPermission

_STR = {"type": "string", "minLength": 1, "maxLength": 1024}
_CREDENTIALS = {"type": "object", "additionalProperties": False, "required": ["username", "password"],
                "properties": {"username": _STR, "password": _STR}}


def _created(body):
    return Response(body, 201)


class AccountsResource:
    routes = RouteTable("auth")

    def __init__(self, accounts):
        self._accounts = accounts

    @routes.route("/api/v1/auth/register", "POST", permission=PUBLIC, status=201, body=_CREDENTIALS,
                  summary="Create an account (when the controller allows registration)", error_statuses=(403, 409))
    def register(self, call: Call):
        return self._accounts.register(call.body["username"], call.body["password"], call.address).addCallback(
            _created)

    @routes.route("/api/v1/auth/login", "POST", permission=PUBLIC, body=_CREDENTIALS, error_statuses=(401,),
                  summary="Log in: a token and its expiry (unix seconds)")
    def login(self, call: Call):
        return self._accounts.login(call.body["username"], call.body["password"], call.address)

    @routes.route("/api/v1/auth/logout", "POST", permission=CloudPermission.USER, summary="Revoke this token")
    def logout(self, call: Call):
        return self._accounts.logout(call.principal, call.address)

    @routes.route("/api/v1/auth/me", "GET", permission=CloudPermission.USER, summary="The signed-in user")
    def me(self, call: Call):
        return self._accounts.me(call.principal)

    @routes.route("/api/v1/users", "GET", permission=CloudPermission.ADMIN, summary="List users")
    def list_users(self, call: Call):
        return self._accounts.list_users()

    @routes.route("/api/v1/users", "POST", permission=CloudPermission.ADMIN, status=201, error_statuses=(409,),
                  summary="Create a user",
                  body={"type": "object", "additionalProperties": False, "required": ["username", "password"],
                        "properties": {"username": _STR, "password": _STR, "admin": {"type": "boolean"}}})
    def create_user(self, call: Call):
        body = call.body
        d = self._accounts.create_user(call.username, body["username"], body["password"], body.get("admin", False),
                                       call.address)
        return d.addCallback(_created)

    @routes.route("/api/v1/users/<username>", "DELETE", permission=CloudPermission.ADMIN, error_statuses=(409,),
                  summary="Delete a user (its tokens stop working)")
    def delete_user(self, call: Call, username):
        return self._accounts.delete_user(call.principal, username, call.address)
