"""Nodes: create (id and secret shown once), claim with a claim token (once), batch provisioning keys, rename,
delete, members with a role per node (owner > admin > user), and each user's groups of nodes.

A node the caller is not a member of does not exist for it (404, never 403): ids of others' nodes are not
disclosed. Claim tokens and provisioning keys are stored only as digests; a node's secret is stored as it is,
because WAMP-CRA needs the router to hold a credential-equivalent secret (crossbar 26.10 derives the signing key
from the authenticator's answer itself: see IFleetStore.node_auth). The database file is 0600.
"""
import base64
import hashlib
import json
import re
import secrets
from typing import Callable, Dict, List, Optional, Tuple

from twisted.internet import defer

from pdserver import errors
from pdserver.auth.throttle import LoginThrottle, LoginThrottled
from pdserver.controller.audit import Audit, thd_record
from pdserver.controller.storage import Database, fetch, run

ROLES = {"user": 1, "admin": 2, "owner": 3}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}")
CRA_ITERATIONS = 1000  # PBKDF2 rounds crossbar and the node apply to the secret (32 random bytes: enough)
CRA_KEYLEN = 32
MAX_GROUP_NODES = 10000
PAGE_DEFAULT, PAGE_MAX = 500, 1000  # nodes per page of the node list


def encode_cursor(name: str, node_id: str) -> str:
    """Where the next page of the node list starts: after this (name, id), opaque to clients."""
    return base64.urlsafe_b64encode(json.dumps([name, node_id]).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Tuple[str, str]:
    try:
        name, node_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(name, str) and isinstance(node_id, str):
            return name, node_id
    except (ValueError, TypeError):
        pass
    raise errors.InvalidInput("after must be the cursor of a previous page (its Link: rel=next)", field="after")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_name(value, field: str = "name") -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise errors.InvalidInput(f"{field} must be 1-64 letters, digits, spaces, '.', '_' or '-', starting with "
                                  "a letter or digit", field=field)
    return value


def thd_member_role(txn, node_id: str, username: str) -> str:
    """The caller's role on the node; 404 when it has none (or the node does not exist)."""
    found = fetch(txn, "SELECT role FROM node_members WHERE node_id = ? AND username = ?", (node_id, username))
    if not found:
        raise errors.NotFound(f"no node {node_id}", field="node_id")
    return found[0]["role"]


def thd_require(txn, node_id: str, username: str, minimum: str) -> str:
    role = thd_member_role(txn, node_id, username)
    if ROLES[role] < ROLES[minimum]:
        raise errors.Forbidden(f"your role on node {node_id} is {role}; this needs {minimum} or above", field="role")
    return role


def _node(row: dict, role: Optional[str], groups: List[str]) -> dict:
    return {"id": row["id"], "name": row["name"], "online": bool(row["online"]), "last_seen": row["last_seen"],
            "version": row["version"], "chutes": json.loads(row["chutes"]), "role": role, "groups": groups,
            "claimed": row["claim_hash"] is None, "created": row["created"]}


class Nodes:
    def __init__(self, db: Database, audit: Audit, links: Callable[[], Dict[str, str]], throttle: LoginThrottle):
        """``links()``: ``{"wamp_router", "controller"}`` URLs a node is provisioned with."""
        self._db = db
        self._audit = audit
        self._links = links
        self._throttle = throttle

    def _now(self) -> float:
        return self._audit.clock()

    def _thd_insert(self, txn, name: str, owner: Optional[str]) -> dict:
        node_id, secret, salt = secrets.token_hex(8), secrets.token_urlsafe(32), secrets.token_hex(16)
        claim_token = None if owner else secrets.token_urlsafe(24)
        run(txn, "INSERT INTO nodes (id, name, key, salt, iterations, keylen, claim_hash, created, online, chutes) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (node_id, name, secret, salt, CRA_ITERATIONS, CRA_KEYLEN, digest(claim_token) if claim_token else None,
             self._now(), False, "[]"))
        if owner:
            run(txn, "INSERT INTO node_members (node_id, username, role) VALUES (?, ?, ?)", (node_id, owner, "owner"))
        out = {"id": node_id, "name": name, "secret": secret, "claimed": owner is not None, **self._links()}
        if claim_token:
            out["claim_token"] = claim_token
        return out

    def create(self, username: str, name, address: Optional[str]) -> defer.Deferred:
        name = check_name(name)

        def thd_create(txn):
            node = self._thd_insert(txn, name, username)
            thd_record(txn, self._now(), username, "node-create", "succeeded", target=node["id"], address=address)
            return node
        return self._db.interaction(thd_create)

    def claim(self, username: str, claim_token, address: Optional[str]) -> defer.Deferred:
        if not isinstance(claim_token, str) or not claim_token:
            raise errors.InvalidInput("claim_token must be a non-empty string", field="claim_token")

        def thd_claim(txn):
            found = fetch(txn, "SELECT id FROM nodes WHERE claim_hash = ?", (digest(claim_token),))
            if not found or run(txn, "UPDATE nodes SET claim_hash = NULL WHERE id = ? AND claim_hash IS NOT NULL",
                                (found[0]["id"],)) != 1:
                return None
            node_id = found[0]["id"]
            run(txn, "INSERT INTO node_members (node_id, username, role) VALUES (?, ?, ?)",
                (node_id, username, "owner"))
            thd_record(txn, self._now(), username, "node-claim", "succeeded", target=node_id, address=address)
            return self._thd_get(txn, node_id, username)

        @defer.inlineCallbacks
        def claimed(node):
            if node is None:
                yield self._audit.record(username, "node-claim", "denied", address=address)
                raise errors.NotFound("no unclaimed node has this claim token (a node is claimed once)",
                                      field="claim_token")
            return node
        return self._db.interaction(thd_claim).addCallback(claimed)

    def create_provision_key(self, username: str, name, max_nodes: int, ttl: int,
                             address: Optional[str]) -> defer.Deferred:
        name = check_name(name)
        key = "pdk_" + secrets.token_urlsafe(24)

        def thd_create(txn):
            now = self._now()
            run(txn, "INSERT INTO provision_keys (key_hash, name, owner, max_nodes, used, expires, created) "
                     "VALUES (?, ?, ?, ?, 0, ?, ?)", (digest(key), name, username, max_nodes, now + ttl, now))
            thd_record(txn, now, username, "provision-key-create", "succeeded", target=name, address=address,
                       detail={"max_nodes": max_nodes, "ttl": ttl})
            return {"key": key, "name": name, "max_nodes": max_nodes, "expires": now + ttl}
        return self._db.interaction(thd_create)

    @defer.inlineCallbacks
    def provision(self, key, name, address: Optional[str]):
        """A node registers itself with a batch key: it is created unclaimed (its claim token is in the answer)."""
        if not isinstance(key, str) or not key:
            raise errors.InvalidInput("provision_key must be a non-empty string", field="provision_key")
        name = check_name(name)
        try:
            attempt = self._throttle.begin("provision", address)
        except LoginThrottled as e:
            if e.first:
                yield self._audit.record(None, "provision", "throttled", address=address)
            raise

        def thd_provision(txn):
            now = self._now()
            if run(txn, "UPDATE provision_keys SET used = used + 1 WHERE key_hash = ? AND used < max_nodes "
                        "AND expires > ?", (digest(key), now)) != 1:
                thd_record(txn, now, None, "provision", "denied", address=address)
                return None
            node = self._thd_insert(txn, name, None)
            thd_record(txn, now, None, "provision", "succeeded", target=node["id"], address=address)
            return node
        node = yield self._db.interaction(thd_provision)
        if node is None:
            raise errors.Unauthenticated("unknown, expired or used-up provision key", field="provision_key")
        attempt.succeeded()
        return node

    def _thd_groups(self, txn, node_id: str, username: str) -> List[str]:
        return [r["group_name"] for r in fetch(txn, "SELECT group_name FROM group_nodes WHERE node_id = ? AND "
                                                    "owner = ? ORDER BY group_name", (node_id, username))]

    def _thd_get(self, txn, node_id: str, username: str) -> dict:
        role = thd_member_role(txn, node_id, username)
        row = fetch(txn, "SELECT * FROM nodes WHERE id = ?", (node_id,))[0]
        return _node(row, role, self._thd_groups(txn, node_id, username))

    def get(self, username: str, node_id: str) -> defer.Deferred:
        return self._db.interaction(self._thd_get, node_id, username)

    def list(self, username: str, limit: int = PAGE_DEFAULT, after: Optional[str] = None,
             online: Optional[bool] = None) -> defer.Deferred:
        """One page of the caller's nodes in (name, id) order and the cursor of the next page (None: the last).

        Paged by key, not offset, so a page costs the same at node 10,000 as at node 1 and a node added or
        removed meanwhile neither repeats nor skips another."""
        start = decode_cursor(after) if after is not None else None

        def thd_list(txn):
            sql = "SELECT n.*, m.role FROM nodes n JOIN node_members m ON m.node_id = n.id WHERE m.username = ?"
            args: list = [username]
            if online is not None:
                sql += " AND n.online = ?"
                args.append(online)
            if start is not None:
                sql += " AND (n.name > ? OR (n.name = ? AND n.id > ?))"
                args += [start[0], start[0], start[1]]
            found = fetch(txn, sql + " ORDER BY n.name, n.id LIMIT ?", (*args, limit + 1))
            page, more = found[:limit], len(found) > limit
            groups: Dict[str, List[str]] = {}
            if page:
                marks = ", ".join("?" * len(page))
                for r in fetch(txn, f"SELECT node_id, group_name FROM group_nodes WHERE owner = ? AND node_id IN "
                                    f"({marks}) ORDER BY group_name", (username, *(r["id"] for r in page))):
                    groups.setdefault(r["node_id"], []).append(r["group_name"])
            nodes = [_node(r, r["role"], groups.get(r["id"], [])) for r in page]
            return nodes, encode_cursor(page[-1]["name"], page[-1]["id"]) if more else None
        return self._db.interaction(thd_list)

    def rename(self, username: str, node_id: str, name, address: Optional[str]) -> defer.Deferred:
        name = check_name(name)

        def thd_rename(txn):
            thd_require(txn, node_id, username, "admin")
            run(txn, "UPDATE nodes SET name = ? WHERE id = ?", (name, node_id))
            thd_record(txn, self._now(), username, "node-rename", "succeeded", target=node_id, address=address,
                       detail={"name": name})
            return self._thd_get(txn, node_id, username)
        return self._db.interaction(thd_rename)

    def delete(self, username: str, node_id: str, address: Optional[str]) -> defer.Deferred:
        def thd_delete(txn):
            thd_require(txn, node_id, username, "owner")
            run(txn, "UPDATE deliveries SET state = ?, message = ?, updated = ? WHERE node_id = ? AND state IN "
                     "(?, ?, ?, ?)", ("cancelled", "the node was deleted", self._now(), node_id,
                                      "pending", "sent", "queued", "running"))
            run(txn, "DELETE FROM nodes WHERE id = ?", (node_id,))
            thd_record(txn, self._now(), username, "node-delete", "succeeded", target=node_id, address=address)
            return {"message": f"node {node_id} deleted; its secret no longer works"}
        return self._db.interaction(thd_delete)

    # Members
    def members(self, username: str, node_id: str) -> defer.Deferred:
        def thd_members(txn):
            thd_member_role(txn, node_id, username)
            return fetch(txn, "SELECT username, role FROM node_members WHERE node_id = ? ORDER BY username",
                         (node_id,))
        return self._db.interaction(thd_members)

    def set_member(self, username: str, node_id: str, member: str, role, address: Optional[str]) -> defer.Deferred:
        if role not in ROLES:
            raise errors.InvalidInput("role must be one of owner, admin, user", field="role")

        def thd_set(txn):
            mine = thd_require(txn, node_id, username, "admin")
            if not fetch(txn, "SELECT username FROM users WHERE username = ?", (member,)):
                raise errors.NotFound(f"no user {member}", field="username")
            current = fetch(txn, "SELECT role FROM node_members WHERE node_id = ? AND username = ?", (node_id, member))
            if mine != "owner" and (role == "owner" or (current and current[0]["role"] == "owner")):
                raise errors.Forbidden("only an owner grants or changes the owner role", field="role")
            self._thd_keep_an_owner(txn, node_id, member, role)
            if current:
                run(txn, "UPDATE node_members SET role = ? WHERE node_id = ? AND username = ?", (role, node_id, member))
            else:
                run(txn, "INSERT INTO node_members (node_id, username, role) VALUES (?, ?, ?)", (node_id, member, role))
            thd_record(txn, self._now(), username, "member-set", "succeeded", target=node_id, address=address,
                       detail={"username": member, "role": role})
            return {"username": member, "role": role}
        return self._db.interaction(thd_set)

    def remove_member(self, username: str, node_id: str, member: str, address: Optional[str]) -> defer.Deferred:
        def thd_remove(txn):
            mine = thd_member_role(txn, node_id, username)
            current = fetch(txn, "SELECT role FROM node_members WHERE node_id = ? AND username = ?", (node_id, member))
            if not current:
                raise errors.NotFound(f"{member} is not a member of node {node_id}", field="username")
            if member != username and (ROLES[mine] < ROLES["admin"] or
                                       (current[0]["role"] == "owner" and mine != "owner")):
                raise errors.Forbidden(f"your role on node {node_id} ({mine}) may not remove {member}", field="role")
            self._thd_keep_an_owner(txn, node_id, member, None)
            run(txn, "DELETE FROM node_members WHERE node_id = ? AND username = ?", (node_id, member))
            run(txn, "DELETE FROM group_nodes WHERE node_id = ? AND owner = ?", (node_id, member))
            thd_record(txn, self._now(), username, "member-remove", "succeeded", target=node_id, address=address,
                       detail={"username": member})
            return {"message": f"{member} is no longer a member of node {node_id}"}
        return self._db.interaction(thd_remove)

    @staticmethod
    def _thd_keep_an_owner(txn, node_id: str, member: str, new_role: Optional[str]) -> None:
        owners = [r["username"] for r in fetch(txn, "SELECT username FROM node_members WHERE node_id = ? AND "
                                                    "role = ?", (node_id, "owner"))]
        if owners == [member] and new_role != "owner":
            raise errors.Conflict(f"{member} is the last owner of node {node_id}", field="username")

    # Groups (each user's own)
    def groups(self, username: str) -> defer.Deferred:
        def thd_groups(txn):
            out = {g["name"]: {"name": g["name"], "created": g["created"], "nodes": []}
                   for g in fetch(txn, "SELECT * FROM node_groups WHERE owner = ? ORDER BY name", (username,))}
            for r in fetch(txn, "SELECT group_name, node_id FROM group_nodes WHERE owner = ? ORDER BY node_id",
                           (username,)):
                out[r["group_name"]]["nodes"].append(r["node_id"])
            return list(out.values())
        return self._db.interaction(thd_groups)

    def _thd_group(self, txn, username: str, group: str) -> dict:
        found = fetch(txn, "SELECT * FROM node_groups WHERE owner = ? AND name = ?", (username, group))
        if not found:
            raise errors.NotFound(f"no group {group}", field="group")
        nodes = [r["node_id"] for r in fetch(txn, "SELECT node_id FROM group_nodes WHERE owner = ? AND "
                                                  "group_name = ? ORDER BY node_id", (username, group))]
        return {"name": group, "created": found[0]["created"], "nodes": nodes}

    def group(self, username: str, group: str) -> defer.Deferred:
        return self._db.interaction(self._thd_group, username, group)

    def group_nodes(self, username: str, group: str) -> defer.Deferred:
        return self.group(username, group).addCallback(lambda g: g["nodes"])

    def create_group(self, username: str, name, address: Optional[str]) -> defer.Deferred:
        name = check_name(name)

        def thd_create(txn):
            if fetch(txn, "SELECT name FROM node_groups WHERE owner = ? AND name = ?", (username, name)):
                raise errors.Conflict(f"group {name} exists", field="name")
            run(txn, "INSERT INTO node_groups (owner, name, created) VALUES (?, ?, ?)", (username, name, self._now()))
            thd_record(txn, self._now(), username, "group-create", "succeeded", target=name, address=address)
            return self._thd_group(txn, username, name)
        return self._db.interaction(thd_create)

    def delete_group(self, username: str, group: str, address: Optional[str]) -> defer.Deferred:
        def thd_delete(txn):
            self._thd_group(txn, username, group)
            run(txn, "DELETE FROM node_groups WHERE owner = ? AND name = ?", (username, group))
            thd_record(txn, self._now(), username, "group-delete", "succeeded", target=group, address=address)
            return {"message": f"group {group} deleted"}
        return self._db.interaction(thd_delete)

    def add_to_group(self, username: str, group: str, node_id: str, address: Optional[str]) -> defer.Deferred:
        def thd_add(txn):
            current = self._thd_group(txn, username, group)
            thd_member_role(txn, node_id, username)
            if node_id not in current["nodes"]:
                if len(current["nodes"]) >= MAX_GROUP_NODES:
                    raise errors.Conflict(f"a group holds at most {MAX_GROUP_NODES} nodes", field="node_id")
                run(txn, "INSERT INTO group_nodes (owner, group_name, node_id) VALUES (?, ?, ?)",
                    (username, group, node_id))
                thd_record(txn, self._now(), username, "group-add", "succeeded", target=group, address=address,
                           detail={"node_id": node_id})
            return self._thd_group(txn, username, group)
        return self._db.interaction(thd_add)

    def remove_from_group(self, username: str, group: str, node_id: str, address: Optional[str]) -> defer.Deferred:
        def thd_remove(txn):
            self._thd_group(txn, username, group)
            if run(txn, "DELETE FROM group_nodes WHERE owner = ? AND group_name = ? AND node_id = ?",
                   (username, group, node_id)) != 1:
                raise errors.NotFound(f"node {node_id} is not in group {group}", field="node_id")
            thd_record(txn, self._now(), username, "group-remove", "succeeded", target=group, address=address,
                       detail={"node_id": node_id})
            return self._thd_group(txn, username, group)
        return self._db.interaction(thd_remove)
