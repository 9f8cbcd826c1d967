"""SSH keys of the node's admin account (ParaDrop's /config/sshKeys/<user>, as pdtools 0.13.2 calls it).

pdtools lists with GET (a list of key lines) and adds with POST ``{"key": "<one public key line>"}``; ours adds
the fingerprint to each answer and a DELETE by fingerprint. Keys are checked strictly
(pdserver.sysconfig.ssh_keys), changed one at a time, off the reactor, and every change is audited.
"""
from twisted.internet import defer

from pdserver import errors
from pdserver.api.routing import Call, QueryParam, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.sysconfig import ssh_keys

ADMIN_ACCOUNT = "paradrop"  # the node's first owner, and pdtools' default --user
KEY_BODY = {"type": "object", "additionalProperties": False, "required": ["key"],
            "description": "One public key line: <type> <base64> [comment], as in a .pub file",
            "properties": {"key": {"type": "string", "minLength": 1, "maxLength": ssh_keys.MAX_LINE}}}


def _account(user: str) -> str:
    if user != ADMIN_ACCOUNT:
        raise errors.NotFound(f"SSH keys are kept for the node's admin account {ADMIN_ACCOUNT!r} only",
                              field="user")
    return user


class SshKeysResource:
    routes = RouteTable("config")

    def __init__(self, keys: ssh_keys.AuthorizedKeys, audit, run_in_thread):
        self._keys = keys
        self._audit = audit
        self._in_thread = run_in_thread
        self._lock = defer.DeferredLock()

    def _run(self, f, *args) -> defer.Deferred:
        return self._lock.run(self._in_thread, f, *args)

    @routes.route("/api/v1/config/sshKeys/<user>", "GET", permission=Permission.MANAGE_SSH_KEYS,
                  summary="The public keys authorized for SSH to the admin account: key lines (ParaDrop's form), "
                          "or with details=true each key's type, bits, comment and fingerprint",
                  query={"details": QueryParam(str, "false", choices=("false", "true"),
                                               description="true: objects with the fingerprint, not lines")})
    def list_keys(self, call: Call, user):
        _account(user)
        details = call.query["details"] == "true"
        return self._run(self._keys.thd_list).addCallback(
            lambda keys: [key.public() if details else key.line for key in keys])

    @routes.route("/api/v1/config/sshKeys/<user>", "POST", permission=Permission.MANAGE_SSH_KEYS, body=KEY_BODY,
                  status=201, error_statuses=(409, 503),
                  summary="Authorize one more public key for SSH to the admin account (no options, one line)")
    @defer.inlineCallbacks
    def add_key(self, call: Call, user):
        _account(user)
        key = ssh_keys.parse_key(call.body["key"])
        yield self._run(self._keys.thd_add, key)
        self._audit.record(call.username, "ssh-key-add", "succeeded", target=user, address=call.address,
                           detail={"fingerprint": key.fingerprint, "type": key.type, "comment": key.comment})
        return Response(key.public(), 201)

    @routes.route("/api/v1/config/sshKeys/<user>", "DELETE", permission=Permission.MANAGE_SSH_KEYS,
                  error_statuses=(503,),
                  summary="Remove an authorized key by its fingerprint (SHA256:..., as ssh-keygen -l prints it)",
                  query={"fingerprint": QueryParam(str, None, description="SHA256:<base64>; URL-encode '+' and '/'")})
    @defer.inlineCallbacks
    def delete_key(self, call: Call, user):
        _account(user)
        fingerprint = call.query["fingerprint"]
        if not fingerprint:
            raise errors.InvalidInput("fingerprint is required (SHA256:...)", field="fingerprint")
        # A '+' sent unencoded arrives as a space; a fingerprint holds no space.
        key = yield self._run(self._keys.thd_delete, fingerprint.replace(" ", "+"))
        self._audit.record(call.username, "ssh-key-delete", "succeeded", target=user, address=call.address,
                           detail={"fingerprint": key.fingerprint, "type": key.type, "comment": key.comment})
        return key.public()
