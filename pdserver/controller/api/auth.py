"""Who may call a controller route: the token's signature is checked from the request's head (the Router),
then the token against the database on every request (ControllerApiResource); permissions on nodes are per
node and checked by the handlers against the membership table."""
import enum

from pdserver import errors
from pdserver.api.dispatch import ApiResource
from pdserver.api.routing import RouteSpec
from pdserver.controller.deployments import archive_scope


class CloudPermission(enum.Enum):
    USER = "use the controller"  # any signed-in user; what it may do to a node depends on its role there
    ADMIN = "administer the controller"  # users, everyone's audit records
    ARCHIVE = "download a chute archive"  # also a node, with the token its command carried


def authorize(spec: RouteSpec, principal, args: dict) -> None:
    """The Router's check (synchronous, before the body): a scoped token opens only its own resource."""
    if principal.scope is None:
        return
    if spec.permission is CloudPermission.ARCHIVE and \
            principal.scope == archive_scope(args.get("chute", ""), args.get("version", "")):
        return
    raise errors.Forbidden("this token opens one chute archive only", field="token")


class ControllerApiResource(ApiResource):
    """Checks every token against the database before the handler runs (no session state in this process)."""

    def __init__(self, router, accounts, run_in_thread):
        super().__init__(router, accounts, run_in_thread)
        self._accounts = accounts

    def _invoke(self, request, admission, principal):
        if principal is None:
            return super()._invoke(request, admission, principal)
        spec = admission.route.spec

        def checked(current):
            if spec.permission is CloudPermission.ADMIN and not current.admin:
                raise errors.Forbidden("only controller admins may do this", field="role")
            return ApiResource._invoke(self, request, admission, current)
        return self._accounts.check(principal).addCallback(checked)
