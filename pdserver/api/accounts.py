"""Login, password change and user management."""
from pdserver import errors
from pdserver.api.routing import PUBLIC, Call, Response, RouteTable
from pdserver.auth.roles import Permission, Role

_STR = {"type": "string", "minLength": 1, "maxLength": 1024}


class AccountsResource:
    routes = RouteTable("auth")

    def __init__(self, auth):
        self._auth = auth

    @routes.route("/api/v1/auth/local", "POST", permission=PUBLIC, summary="Log in with a local user",
                  error_statuses=(401,),
                  body={"type": "object", "additionalProperties": False, "required": ["username", "password"],
                        "properties": {"username": _STR, "password": _STR}})
    def login(self, call: Call):
        return self._auth.login(call.body["username"], call.body["password"], call.address)

    @routes.route("/api/v1/auth/cloud", "POST", permission=PUBLIC, summary="Log in with a controller token",
                  error_statuses=(401,),
                  body={"type": "object", "additionalProperties": False, "required": ["token"],
                        "properties": {"token": _STR}})
    def login_cloud(self, call: Call):
        raise errors.Unauthenticated("this node is not provisioned with a controller", field="token",
                                  code="not_provisioned")

    @routes.route("/api/v1/password/change", "POST", permission=Permission.CHANGE_OWN_PASSWORD,
                  summary="Change a password (the old one is required)",
                  body={"type": "object", "additionalProperties": False,
                        "required": ["username", "old_password", "new_password"],
                        "properties": {"username": _STR, "old_password": _STR, "new_password": _STR}})
    def change_password(self, call: Call):
        body = call.body
        return self._auth.change_password(call.principal, body["username"], body["old_password"],
                                          body["new_password"], call.address)

    @routes.route("/api/v1/users", "GET", permission=Permission.MANAGE_USERS, summary="List users")
    def list_users(self, call: Call):
        return [u.public() for u in self._auth.users.list()]

    @routes.route("/api/v1/users", "POST", permission=Permission.MANAGE_USERS, summary="Create a user",
                  status=201,
                  body={"type": "object", "additionalProperties": False, "required": ["username", "password", "role"],
                        "properties": {"username": _STR, "password": _STR,
                                       "role": {"enum": [r.label for r in Role]}}})
    def create_user(self, call: Call):
        body = call.body
        d = self._auth.create_user(call.principal, body["username"], body["password"], Role.parse(body["role"]),
                                   call.address)
        return d.addCallback(lambda user: Response(user.public(), 201))

    @routes.route("/api/v1/users/<username>", "DELETE", permission=Permission.MANAGE_USERS,
                  summary="Delete a user")
    def delete_user(self, call: Call, username):
        self._auth.delete_user(call.principal, username, call.address)
        return {"message": f"user {username} deleted"}
