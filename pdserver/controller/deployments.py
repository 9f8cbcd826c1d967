"""Deployments: a store version to a list of nodes or a group, one delivery per node, and single commands.

Each delivery (key ``dep-<deployment id>-<node id>``, the node's idempotency key) is checked on its own: the
user's role on that node must be admin or owner, else the delivery is ``forbidden`` and never sent. A node the
user is not a member of refuses the whole request (404, as everywhere: others' nodes do not exist for it).
The fleet is woken for the nodes with something to do; the rest follows over WAMP (pdserver.controller.fleet).
"""
import json
import secrets
from typing import Dict, List, Optional
from urllib.parse import quote

from twisted.internet import defer
from twisted.logger import Logger

from pdserver import errors
from pdserver.controller.accounts import Accounts, CloudPrincipal
from pdserver.controller.audit import Audit, thd_record
from pdserver.controller.interfaces import FINAL_DELIVERY_STATES
from pdserver.controller.nodes import ROLES, Nodes, thd_require
from pdserver.controller.storage import Database, fetch, run
from pdserver.controller.store import ChuteStore

log = Logger()
DEPLOY_ROLE = "admin"
ARCHIVE_TOKEN_TTL = 30 * 24 * 3600  # a node offline for a month still gets its deployment
MAX_NODES = 10000
DELIVERY_COLUMNS = ("key", "deployment_id", "node_id", "command", "chute", "version", "config", "source", "username",
                    "role", "state", "message", "created", "updated")  # what a new delivery is written with


def archive_scope(chute: str, version: str) -> str:
    return f"archive:{chute}/{version}"


def archive_path(chute: str, version: str) -> str:
    return f"/api/v1/store/chutes/{quote(chute, safe='')}/versions/{quote(version, safe='')}/archive"


def _thd_member_roles(txn, username: str) -> Dict[str, str]:
    """{node id: the user's role} of every node the user is a member of: one query for a deployment to many."""
    return {r["node_id"]: r["role"] for r in fetch(txn, "SELECT node_id, role FROM node_members WHERE username = ?",
                                                   (username,))}


def _encoded(config, source) -> tuple:
    return json.dumps(config) if config else None, json.dumps(source) if source else None


_DELIVERY_COLUMNS = "node_id, key, state, change_id, message, updated"  # what _delivery shows (not the config)


def _delivery(row: dict) -> dict:
    return {"node_id": row["node_id"], "key": row["key"], "state": row["state"], "change_id": row["change_id"],
            "message": row["message"], "updated": row["updated"]}


def _summary(row: dict, deliveries: List[dict]) -> dict:
    states: Dict[str, int] = {}
    for d in deliveries:
        states[d["state"]] = states.get(d["state"], 0) + 1
    return {"id": row["id"], "chute": row["chute"], "version": row["version"], "user": row["username"],
            "target": json.loads(row["target"]), "created": row["created"], "states": states,
            "finished": all(d["state"] in FINAL_DELIVERY_STATES for d in deliveries)}


class Deployments:
    def __init__(self, db: Database, audit: Audit, accounts: Accounts, nodes: Nodes, store: ChuteStore, fleet):
        self._db = db
        self._audit = audit
        self._accounts = accounts
        self._nodes = nodes
        self._store = store
        self._fleet = fleet

    @defer.inlineCallbacks
    def create(self, principal: CloudPrincipal, chute: str, version: str, node_ids: Optional[List[str]],
               group: Optional[str], address: Optional[str]):
        found = yield self._store.get_version(chute, version)
        if group is not None:
            node_ids = yield self._nodes.group_nodes(principal.username, group)
            if not node_ids:
                raise errors.InvalidInput(f"group {group} has no nodes", field="group")
        node_ids = list(dict.fromkeys(node_ids))
        source = config = None
        if found["archive"]:
            token = self._accounts.scoped_token(principal, archive_scope(chute, version), ARCHIVE_TOKEN_TTL)
            source = {"path": archive_path(chute, version), "token": token, "sha256": found["sha256"]}
        else:
            config = found["config"]
        deployment_id = secrets.token_hex(8)
        target = {"group": group} if group is not None else {"nodes": node_ids}

        def thd_create(txn):
            now = self._audit.clock()
            roles = _thd_member_roles(txn, principal.username)
            for node_id in node_ids:
                if node_id not in roles:
                    raise errors.NotFound(f"no node {node_id}", field="nodes")
            run(txn, "INSERT INTO deployments (id, chute, version, username, target, created) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                (deployment_id, chute, version, principal.username, json.dumps(target), now))
            out, pending, rows = [], [], []
            encoded = _encoded(config, source)
            for node_id in node_ids:
                state = "pending" if ROLES[roles[node_id]] >= ROLES[DEPLOY_ROLE] else "forbidden"
                key = f"dep-{deployment_id}-{node_id}"
                row, delivery = self._delivery_row(
                    key, deployment_id, node_id, "install", chute, version, config, source, principal.username,
                    roles[node_id], state, now, None if state == "pending" else f"role {roles[node_id]} may not deploy",
                    encoded)
                rows.append(row)
                out.append({"node_id": node_id, "key": key, "state": state})
                if state == "pending":
                    pending.append(delivery)
            if rows:  # many rows at once: one COPY on PostgreSQL, one loop on SQLite
                self._db.dialect.insert_rows(txn, "deliveries", DELIVERY_COLUMNS, rows)
            thd_record(txn, now, principal.username, "deploy", "succeeded", target=f"{chute}@{version}",
                       address=address, detail={"deployment": deployment_id, **target})
            return {"id": deployment_id, "chute": chute, "version": version, "created": now,
                    "deliveries": out}, pending
        result, pending = yield self._db.interaction(thd_create)
        self._wake(pending)
        return result

    def _wake(self, deliveries: List[dict]) -> None:
        """Tell the fleet of the new deliveries; what it cannot send now it sends when the node joins, so a failure
        here is only logged."""
        node_ids = [d["node_id"] for d in deliveries]
        if node_ids:
            defer.maybeDeferred(self._fleet.wake, node_ids, deliveries).addErrback(
                lambda failure: log.failure("waking nodes {nodes} failed", failure, nodes=node_ids[:10]))

    @staticmethod
    def _delivery_row(key, deployment_id, node_id, command, chute, version, config, source, username, role,
                      state, now, message, encoded=None) -> tuple:
        """(the delivery's row in DELIVERY_COLUMNS' order, the delivery as IFleetStore.pending_deliveries gives it).
        ``encoded``: (config, source) as stored, when the caller encoded them once for many deliveries."""
        config_text, source_text = encoded or _encoded(config, source)
        row = (key, deployment_id, node_id, command, chute, version, config_text, source_text, username, role, state,
               message, now, now)
        return row, {"key": key, "deployment_id": deployment_id, "node_id": node_id, "state": state,
                        "command": None if command == "install" else command, "chute": chute, "version": version,
                        "config": config or None, "source": source or None, "user": username, "role": role}

    @defer.inlineCallbacks
    def command(self, principal: CloudPrincipal, node_id: str, command: str, chute: str, address: Optional[str]):
        """One command on one node's chute (start, stop, restart, remove), delivered like a deployment."""
        key = f"cmd-{secrets.token_hex(8)}-{node_id}"

        def thd_command(txn):
            now = self._audit.clock()
            role = thd_require(txn, node_id, principal.username, DEPLOY_ROLE)
            row, delivery = self._delivery_row(key, None, node_id, command, chute, None, None, None,
                                               principal.username, role, "pending", now, None)
            self._db.dialect.insert_rows(txn, "deliveries", DELIVERY_COLUMNS, [row])
            thd_record(txn, now, principal.username, f"command-{command}", "succeeded", target=node_id,
                       address=address, detail={"chute": chute, "key": key})
            return {"key": key, "node_id": node_id, "type": command, "chute": chute, "state": "pending"}, delivery
        result, delivery = yield self._db.interaction(thd_command)
        self._wake([delivery])
        return result

    def delivery(self, principal: CloudPrincipal, key: str) -> defer.Deferred:
        def thd_get(txn):
            found = fetch(txn, "SELECT * FROM deliveries WHERE key = ? AND username = ?", (key, principal.username))
            if not found:
                raise errors.NotFound(f"no delivery {key}", field="key")
            return _delivery(found[0])
        return self._db.interaction(thd_get)

    def _thd_get(self, txn, principal: CloudPrincipal, deployment_id: str) -> dict:
        found = fetch(txn, "SELECT * FROM deployments WHERE id = ?", (deployment_id,))
        if not found or (found[0]["username"] != principal.username and not principal.admin):
            raise errors.NotFound(f"no deployment {deployment_id}", field="deployment_id")
        deliveries = [_delivery(r) for r in fetch(txn, f"SELECT {_DELIVERY_COLUMNS} FROM deliveries "
                                                       "WHERE deployment_id = ? "
                                                       "ORDER BY node_id", (deployment_id,))]
        return {**_summary(found[0], deliveries), "deliveries": deliveries}

    def get(self, principal: CloudPrincipal, deployment_id: str) -> defer.Deferred:
        return self._db.interaction(self._thd_get, principal, deployment_id)

    def list(self, principal: CloudPrincipal, limit: int) -> defer.Deferred:
        def thd_list(txn):
            if principal.admin:
                found = fetch(txn, "SELECT * FROM deployments ORDER BY created DESC, id LIMIT ?", (limit,))
            else:
                found = fetch(txn, "SELECT * FROM deployments WHERE username = ? ORDER BY created DESC, id LIMIT ?",
                              (principal.username, limit))
            out = []
            for row in found:
                deliveries = fetch(txn, "SELECT state FROM deliveries WHERE deployment_id = ?", (row["id"],))
                out.append(_summary(row, deliveries))
            return out
        return self._db.interaction(thd_list)
