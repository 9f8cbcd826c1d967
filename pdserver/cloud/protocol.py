"""What the node and the controller agree on over WAMP: realm, roles, URIs and message shapes.

The only module the controller shares with the node's cloud link (with the chute model). Plain constants and
pure functions: importing it costs nothing (autobahn is imported by the link itself, and only when the node is
provisioned).

A node joins realm ``paradrop`` with WAMP-CRA as authid = its node id; the controller's dynamic authenticator
answers with the salted key it stores (never the secret itself). The authorizer lets a node register procedures
and publish events under its own prefix ``org.paradrop.node.<node_id>.`` and do nothing else.

Remote commands are procedures the node registers under its prefix. Every command takes keyword arguments
``key`` (idempotency key: a command delivered twice runs once and answers the same change id), ``user`` (the
cloud user, named in the node's audit log as ``cloud:<user>``) and ``role`` (that user's role on this node:
owner, admin or user), plus its own arguments below, and answers ``{"change_id": int, "duplicate": bool}``.

A caller that asks for progressive results (WAMP ``receive_progress``; autobahn's ``CallOptions(on_progress=...)``)
gets the answer when the change ends instead, with the change's outcome and the node's chutes after it:
``{"change_id", "duplicate", "state": one of FINISHED_STATES, "message", "version", "chutes": [{name, version,
state}]}``; meanwhile the change's progress comes as progressive results shaped like CHANGE events (state
"running"), at most one per link window. Such a change publishes neither CHANGE events nor a state message: a
deployment is one call. A key seen before answers when its change ends (at once if it has), as a duplicate.
"""
import re

REALM = "paradrop"
NODE_ROLE = "node"
CONTROLLER_ROLE = "controller"
CONTROLLER_AUTHID = "controller"
NODE_PREFIX = "org.paradrop.node."
CONTROLLER_PREFIX = "org.paradrop.controller."
AUTHENTICATE = CONTROLLER_PREFIX + "authenticate"
AUTHORIZE = CONTROLLER_PREFIX + "authorize"
#: What one controller backend tells the others (pdserver.controller.fleet); nodes may not subscribe or publish.
RELAY = CONTROLLER_PREFIX + "relay"

# Node ids are what the controller hands out: lowercase hex, so that they are one safe URI component.
NODE_ID = re.compile(r"^[0-9a-f]{8,64}$")

# Procedures a node registers (suffixes of its prefix) and their own keyword arguments.
INSTALL_CHUTE = "install_chute"  # config: paradrop.yaml as a dict, or source: {url, token, sha256}
UPDATE_CHUTE = "update_chute"  # the same as install_chute
REMOVE_CHUTE = "remove_chute"  # chute
START_CHUTE = "start_chute"  # chute
STOP_CHUTE = "stop_chute"  # chute
RESTART_CHUTE = "restart_chute"  # chute
SET_HOSTCONFIG = "set_hostconfig"  # config: the whole host configuration
GET_STATE = "get_state"  # no arguments, not a command: answers the state message below
COMMANDS = (INSTALL_CHUTE, UPDATE_CHUTE, REMOVE_CHUTE, START_CHUTE, STOP_CHUTE, RESTART_CHUTE, SET_HOSTCONFIG)
PROCEDURES = COMMANDS + (GET_STATE,)

# Topics a node publishes (suffixes of its prefix), always with acknowledge=True; the message is the event's one
# positional argument (no keyword arguments).
STATE = "state"  # on every join and after every change: the state message
TELEMETRY = "telemetry"  # every telemetry.interval seconds: the node's /api/v1/info/telemetry document
CHANGE = "change"  # progress of changes: {change_id, key (or null), type, chute, state, time, message}
TOPICS = (STATE, TELEMETRY, CHANGE)

# The state message: {"node_id", "version" (pdserver's), "time", "chutes": [{name, version, state}],
#  "commands": [{key, change_id, state}] for the most recent COMMANDS_REPORTED remote commands}.
COMMANDS_REPORTED = 200

# A change's state strings as the node's queue names them; these end a change.
FINISHED_STATES = ("succeeded", "failed", "cancelled", "interrupted")

# A command the node refuses fails with WAMP error ERROR_PREFIX + <code> (pdserver.errors' codes) and keyword
# arguments {code, message, field}; its key is not used up. These codes may pass when the command is sent again
# (the node is busy, or what the command names is out of its reach for now: an archive on a backend that went
# away); every other refusal stands until the command or the node changes.
ERROR_PREFIX = "org.paradrop.error."
PASSING_ERRORS = ("service_unavailable", "too_many_requests", "request_timeout")


def node_prefix(node_id: str) -> str:
    return f"{NODE_PREFIX}{node_id}."


def node_uri(node_id: str, suffix: str) -> str:
    return node_prefix(node_id) + suffix


def parse_node_uri(uri: str):
    """(node_id, suffix) of a URI under some node's prefix, or None."""
    if not uri.startswith(NODE_PREFIX):
        return None
    node_id, dot, suffix = uri[len(NODE_PREFIX):].partition(".")
    if not dot or not suffix or not NODE_ID.match(node_id):
        return None
    return node_id, suffix


def node_may(node_id: str, uri: str, action: str) -> bool:
    """The authorizer's rule for a node session: register and publish under its own prefix, nothing else."""
    return action in ("register", "publish") and uri.startswith(node_prefix(node_id)) and \
        len(uri) > len(node_prefix(node_id))
