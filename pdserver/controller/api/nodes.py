"""Nodes, their members, commands, provisioning keys and self-provisioning, and groups of nodes."""
from urllib.parse import urlencode

from pdserver.api.routing import PUBLIC, Call, QueryParam, Response, RouteTable
from pdserver.controller.api.auth import CloudPermission
from pdserver.controller.interfaces import DELIVERY_COMMANDS
from pdserver.controller.nodes import PAGE_DEFAULT, PAGE_MAX, ROLES
from pdserver.controller.store import CHUTE_NAME

USER = CloudPermission.USER
_NAME = {"type": "string", "minLength": 1, "maxLength": 64}
_SECRET = {"type": "string", "minLength": 1, "maxLength": 256}
_NAME_BODY = {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {"name": _NAME}}
COMMANDS = DELIVERY_COMMANDS


def _created(body):
    return Response(body, 201)


class NodesResource:
    routes = RouteTable("nodes")

    def __init__(self, nodes, deployments):
        self._nodes = nodes
        self._deployments = deployments

    @routes.route("/api/v1/nodes", "GET", permission=USER,
                  summary="Your nodes by name: state, chutes, your role; a page at a time (Link: rel=next)",
                  query={"limit": QueryParam(int, PAGE_DEFAULT, 1, PAGE_MAX, description="nodes per page"),
                         "after": QueryParam(str, None, description="the cursor of the next page, from Link"),
                         "online": QueryParam(str, None, choices=("true", "false"),
                                              description="only the nodes online (true) or offline (false)")})
    def list_nodes(self, call: Call):
        q = call.query
        online = None if q["online"] is None else q["online"] == "true"

        def page(found):
            nodes, cursor = found
            if cursor is None:
                return nodes
            params = {"limit": q["limit"], "after": cursor, **({"online": q["online"]} if q["online"] else {})}
            return Response(nodes, headers={"Link": f'<?{urlencode(params)}>; rel="next"'})
        return self._nodes.list(call.username, q["limit"], q["after"], online).addCallback(page)

    @routes.route("/api/v1/nodes", "POST", permission=USER, status=201, body=_NAME_BODY,
                  summary="Create a node: its id and secret (shown this once)")
    def create_node(self, call: Call):
        return self._nodes.create(call.username, call.body["name"], call.address).addCallback(_created)

    @routes.route("/api/v1/nodes/claim", "POST", permission=USER, error_statuses=(404,),
                  summary="Claim a provisioned node with its claim token (once): you become its owner",
                  body={"type": "object", "additionalProperties": False, "required": ["claim_token"],
                        "properties": {"claim_token": _SECRET}})
    def claim_node(self, call: Call):
        return self._nodes.claim(call.username, call.body["claim_token"], call.address)

    @routes.route("/api/v1/nodes/<node_id>", "GET", permission=USER, summary="One node")
    def get_node(self, call: Call, node_id):
        return self._nodes.get(call.username, node_id)

    @routes.route("/api/v1/nodes/<node_id>", "PATCH", permission=USER, body=_NAME_BODY,
                  summary="Rename a node (admin or owner)")
    def rename_node(self, call: Call, node_id):
        return self._nodes.rename(call.username, node_id, call.body["name"], call.address)

    @routes.route("/api/v1/nodes/<node_id>", "DELETE", permission=USER,
                  summary="Delete a node (owner); its secret stops working")
    def delete_node(self, call: Call, node_id):
        return self._nodes.delete(call.username, node_id, call.address)

    @routes.route("/api/v1/nodes/<node_id>/members", "GET", permission=USER, summary="A node's members and roles")
    def members(self, call: Call, node_id):
        return self._nodes.members(call.username, node_id)

    @routes.route("/api/v1/nodes/<node_id>/members/<username>", "PUT", permission=USER, error_statuses=(409,),
                  summary="Give a user a role on a node (admin or owner; only an owner grants owner)",
                  body={"type": "object", "additionalProperties": False, "required": ["role"],
                        "properties": {"role": {"enum": list(ROLES)}}})
    def set_member(self, call: Call, node_id, username):
        return self._nodes.set_member(call.username, node_id, username, call.body["role"], call.address)

    @routes.route("/api/v1/nodes/<node_id>/members/<username>", "DELETE", permission=USER, error_statuses=(409,),
                  summary="Remove a member from a node")
    def remove_member(self, call: Call, node_id, username):
        return self._nodes.remove_member(call.username, node_id, username, call.address)

    @routes.route("/api/v1/nodes/<node_id>/commands", "POST", permission=USER, status=202,
                  summary="Start, stop, restart or remove a chute on a node (admin or owner): its delivery key",
                  body={"type": "object", "additionalProperties": False, "required": ["type", "chute"],
                        "properties": {"type": {"enum": list(COMMANDS)}, "chute": CHUTE_NAME}})
    def command(self, call: Call, node_id):
        d = self._deployments.command(call.principal, node_id, call.body["type"], call.body["chute"], call.address)
        return d.addCallback(lambda body: Response(body, 202))

    @routes.route("/api/v1/deliveries/<key>", "GET", permission=USER,
                  summary="One delivery of yours (a command's or a deployment's): state, change id, message")
    def delivery(self, call: Call, key):
        return self._deployments.delivery(call.principal, key)

    @routes.route("/api/v1/provision-keys", "POST", permission=USER, status=201,
                  summary="A key that provisions up to max_nodes nodes for ttl seconds (shown this once)",
                  body={"type": "object", "additionalProperties": False, "required": ["name", "max_nodes", "ttl"],
                        "properties": {"name": _NAME,
                                       "max_nodes": {"type": "integer", "minimum": 1, "maximum": 100000},
                                       "ttl": {"type": "integer", "minimum": 60, "maximum": 366 * 24 * 3600}}})
    def create_provision_key(self, call: Call):
        b = call.body
        return self._nodes.create_provision_key(call.username, b["name"], b["max_nodes"], b["ttl"],
                                                call.address).addCallback(_created)

    @routes.route("/api/v1/provision", "POST", permission=PUBLIC, status=201, error_statuses=(401,),
                  summary="A node provisions itself with a provision key: its id, secret and claim token",
                  body={"type": "object", "additionalProperties": False, "required": ["provision_key", "name"],
                        "properties": {"provision_key": _SECRET, "name": _NAME}})
    def provision(self, call: Call):
        return self._nodes.provision(call.body["provision_key"], call.body["name"], call.address).addCallback(
            _created)

    @routes.route("/api/v1/groups", "GET", permission=USER, summary="Your groups of nodes")
    def list_groups(self, call: Call):
        return self._nodes.groups(call.username)

    @routes.route("/api/v1/groups", "POST", permission=USER, status=201, body=_NAME_BODY, error_statuses=(409,),
                  summary="Create a group")
    def create_group(self, call: Call):
        return self._nodes.create_group(call.username, call.body["name"], call.address).addCallback(_created)

    @routes.route("/api/v1/groups/<group>", "GET", permission=USER, summary="One group and its nodes")
    def get_group(self, call: Call, group):
        return self._nodes.group(call.username, group)

    @routes.route("/api/v1/groups/<group>", "DELETE", permission=USER, summary="Delete a group (not its nodes)")
    def delete_group(self, call: Call, group):
        return self._nodes.delete_group(call.username, group, call.address)

    @routes.route("/api/v1/groups/<group>/nodes/<node_id>", "PUT", permission=USER, error_statuses=(409,),
                  summary="Add one of your nodes to a group")
    def add_to_group(self, call: Call, group, node_id):
        return self._nodes.add_to_group(call.username, group, node_id, call.address)

    @routes.route("/api/v1/groups/<group>/nodes/<node_id>", "DELETE", permission=USER,
                  summary="Take a node out of a group")
    def remove_from_group(self, call: Call, group, node_id):
        return self._nodes.remove_from_group(call.username, group, node_id, call.address)
