"""What the controller's parts promise each other: the fleet's view of storage, and the fleet as the HTTP API
sees it. Real implementations: pdserver.controller.storage.ControllerStore and pdserver.controller.fleet.Fleet."""
from zope.interface import Attribute, Interface

#: Delivery states; the last five end a delivery (nothing changes it afterwards).
DELIVERY_STATES = ("pending", "sent", "queued", "running", "succeeded", "failed", "cancelled", "interrupted",
                   "forbidden")
FINAL_DELIVERY_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted", "forbidden"})
#: Commands on an installed chute a delivery may carry (a deployment's carries none: install_chute or
#: update_chute, which the fleet chooses from the node's reported chutes).
DELIVERY_COMMANDS = ("start", "stop", "restart", "remove")


class IFleetStore(Interface):
    """Storage as the WAMP backend uses it. Every method returns a Deferred."""

    def node_auth(node_id):
        """``{"key", "salt", "iterations", "keylen"}`` for WAMP-CRA, or None for an unknown node. ``key`` is the
        node's secret itself: crossbar 26.10 derives the signing key from what the authenticator answers
        (PBKDF2 with the salt, iterations and keylen, which it also sends the node in the challenge), so WAMP-CRA
        cannot work from a stored derivation; answer all four and both sides derive the same key."""

    def node_seen(node_id, online, at, state):
        """Record presence (``online`` bool, ``at`` unix seconds) and, when ``state`` (the node's state message,
        pdserver.cloud.protocol) is not None, its version and chutes."""

    def pending_deliveries(node_id):
        """The node's deliveries whose state is not final, oldest first: dicts with ``key``, ``deployment_id``
        (None for a single command), ``node_id``, ``state``, ``command`` (None: install the version, or update
        to it; else one of DELIVERY_COMMANDS on the installed chute), ``chute``,
        ``version``, ``config`` (dict or None), ``source`` (``{path, token, sha256}``: the archive's path on the
        controller's HTTP API, which the backend that sends it prefixes with its own address; ``{url, token,
        sha256}`` in deliveries an earlier release stored; or None), ``user``, ``role``."""

    def pending_deliveries_of(node_ids):
        """The deliveries of all those nodes whose state is not final, as pending_deliveries gives them, oldest
        first: one read for a backend taking over many nodes."""

    def online_nodes():
        """The ids of the nodes stored as online."""

    def update_delivery(key, state, at, change_id=None, message=None):
        """Set a delivery's state (and change id / message when given); a final delivery is left as it is.
        Fires with True when the delivery changed."""


class IDeploymentEvents(Interface):
    """The in-process hub of delivery progress the deployment websocket listens to."""

    def listen(deployment_id, callback):
        """Call ``callback({"node_id", "state", "message", "time"})`` for each update of a delivery of
        ``deployment_id``; returns a function that stops it."""


class INodeEvents(Interface):
    """The in-process hub of node changes the nodes websocket listens to."""

    def listen(node_id, callback):
        """Call ``callback({"node_id", "online", "time"})`` each time the node's presence or reported state has
        been stored; returns a function that stops it."""


class IFleet(Interface):
    """The fleet as the HTTP API uses it."""

    events = Attribute("an IDeploymentEvents")
    node_events = Attribute("an INodeEvents")

    def wake(node_ids, deliveries=None):
        """Send the pending deliveries of those nodes that are online now (the others get theirs when they join).
        ``deliveries``: the ones just created for them (as IFleetStore.pending_deliveries gives them), so that
        the fleet need not read them back."""
