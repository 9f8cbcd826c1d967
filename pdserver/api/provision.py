"""Provisioning: bind the node to a cloud controller (ParaDrop's /config/provision, as pdtools 0.13.2 posts it)."""
from twisted.internet import defer

from pdserver.api.routing import Call, RouteTable
from pdserver.auth.roles import Permission
from pdserver.cloud import provisioning

_FIELD = {"type": "string", "maxLength": provisioning.MAX_URL}
PROVISION_BODY = {
    "type": "object", "additionalProperties": False,
    "description": "pdtools 0.13.2's names (routerId, apitoken, pdserver, wampRouter) or ours (node_id, secret, "
                   "controller, wamp_router)",
    "properties": {name: _FIELD for pair in provisioning.ALIASES.items() for name in pair},
}


class ProvisionResource:
    routes = RouteTable("config")

    def __init__(self, link, pdid=None):
        """``link``: the node's CloudLink (pdserver.cloud.link); ``pdid``: the id settings give an unprovisioned
        node."""
        self._link = link
        self._pdid = pdid

    @routes.route("/api/v1/config/pdid", "GET", permission=Permission.READ_CONFIG,
                  summary="The node's id at its controller (the settings' pdid, or null, until provisioned)")
    def pdid(self, call: Call):
        return {"pdid": self._link.status()["routerId"] or self._pdid}

    @routes.route("/api/v1/config/provision", "GET", permission=Permission.WRITE_CONFIG,
                  summary="Whether the node is provisioned to a controller, and its link's state (never the secret)")
    def get_provision(self, call: Call):
        return self._link.status()

    @routes.route("/api/v1/config/provision", "POST", permission=Permission.WRITE_CONFIG, body=PROVISION_BODY,
                  summary="Provision the node to a controller: store its id, secret and URLs (0600) and (re)connect")
    @defer.inlineCallbacks
    def provision(self, call: Call):
        record = provisioning.parse(call.body)
        yield self._link.provision(record, call.username, call.address)
        return self._link.status()

    @routes.route("/api/v1/config/provision", "DELETE", permission=Permission.WRITE_CONFIG,
                  summary="Forget the controller: disconnect and remove the provision record")
    @defer.inlineCallbacks
    def unprovision(self, call: Call):
        yield self._link.unprovision(call.username, call.address)
        return self._link.status()
