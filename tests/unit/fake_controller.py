"""A small stand-in of the controller's HTTP API (CLOUD.md's routes) on a real socket, for pdtools' unit tests.

It keeps state in memory (users, tokens, nodes, groups, store chutes and versions, deployments) so that a test
can check what a user sees across commands, records every request in ``seen``, and plays a deployment's progress
over a real websocket handshake on /ws/deployments/<id>. The lead's end-to-end test runs the real controller.
"""
import io
import itertools
import json
import secrets
import tarfile
from collections import namedtuple
from urllib.parse import parse_qsl, unquote, urlsplit

import yaml

from tests.unit.fake_node import FakeServer, JsonHandler

T0 = 1_700_000_000.0
WAMP = "ws://127.0.0.1:9086/ws"
#: A delivery to a node of this name fails on the node.
FAILING_NODE = "failing"

Seen = namedtuple("Seen", "method path segments query content_type body authorization")


class FakeController(FakeServer):
    """Answers as the controller would; ``registration`` opens POST /auth/register; ``drop_stream`` makes the
    deployment stream break off (the TCP connection dropped) after its first frame."""

    def __init__(self):
        super().__init__()
        self.registration = True
        self.drop_stream = False
        self.users = {"admin": "admin-password"}
        self.tokens = {}
        self.nodes = {}
        self.groups = {}
        self.chutes = {}
        self.deployments = {}
        self.ids = itertools.count(1)

    def requests_to(self, method, path):
        return [seen for seen in self.seen if (seen.method, seen.path) == (method, path)]

    def add_node(self, name, owner="admin", **extra):
        node_id = secrets.token_hex(8)
        self.nodes[node_id] = {"id": node_id, "name": name, "owner": owner, "online": False, "last_seen": None,
                               "version": None, "chutes": [], **extra}
        return node_id

    def token_for(self, username):
        token = secrets.token_hex(16)
        self.tokens[token] = username
        return token


class _Handler(JsonHandler):
    def do_PATCH(self):
        self._route("PATCH")

    def _route(self, method):
        url = urlsplit(self.path)
        segments = [unquote(part) for part in url.path.strip("/").split("/")]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        content_type = self.headers.get("Content-Type")
        body = json.loads(raw) if raw and content_type == "application/json" else raw
        server = self.server
        server.seen.append(Seen(method, url.path, segments, dict(parse_qsl(url.query)), content_type, body,
                                self.headers.get("Authorization")))
        if segments[:2] == ["api", "v1"]:
            return self._api(method, segments[2:], body)
        if segments[:2] == ["ws", "deployments"] and len(segments) == 3:
            if self._user() is None:
                return self._refused()
            return self._play(segments[2])
        return self._error(404, "not_found", "no such resource", field="path")

    def _user(self):
        header = self.headers.get("Authorization") or ""
        return self.server.tokens.get(header.removeprefix("Bearer "))

    def _refused(self):
        if self.headers.get("Authorization"):
            return self._error(401, "unauthorized", "token revoked (logged out)", field="token")
        return self._error(401, "unauthorized", "use a Bearer token from POST /api/v1/auth/login",
                           field="Authorization")

    def _api(self, method, route, body):
        server = self.server
        if (method, route) == ("POST", ["auth", "register"]):
            if not server.registration:
                return self._error(403, "forbidden", "registration is closed on this controller")
            if body["username"] in server.users:
                return self._error(409, "conflict", "username is taken", field="username")
            server.users[body["username"]] = body["password"]
            return self._json(201, {"username": body["username"]})
        if (method, route) == ("POST", ["auth", "login"]):
            if server.users.get(body["username"]) != body["password"]:
                return self._error(401, "bad_credentials", "invalid username or password")
            return self._json(200, {"token": server.token_for(body["username"]), "expires": T0 + 3600,
                                    "username": body["username"], "admin": body["username"] == "admin"})
        user = self._user()
        if user is None:
            return self._refused()
        if (method, route) == ("POST", ["auth", "logout"]):
            server.tokens.pop(self.headers["Authorization"].removeprefix("Bearer "))
            return self._json(200, {"message": "logged out"})
        if route[0] == "nodes" or route == ["provision-keys"]:
            return self._nodes(method, route, body, user)
        if route[0] == "groups":
            return self._groups(method, route, body)
        if route[0] == "store":
            return self._store(method, route[1:], body, user)
        if route[0] == "deployments":
            return self._deployments(method, route, body, user)
        return self._error(404, "not_found", "no such resource", field="path")

    def _nodes(self, method, route, body, user):
        server = self.server
        if (method, route) == ("GET", ["nodes"]):
            return self._json(200, [self._node_view(node) for node in server.nodes.values() if node["owner"] == user])
        if (method, route) == ("POST", ["nodes"]):
            if not body.get("name"):
                return self._error(400, "invalid_input", "name: must not be empty", field="name")
            node_id = server.add_node(body["name"], owner=user)
            return self._json(201, {"id": node_id, "name": body["name"], "secret": "s3cret-" + node_id,
                                    "claimed": True, "wamp_router": WAMP, "controller": server.url})
        if (method, route) == ("POST", ["nodes", "claim"]):
            for node in server.nodes.values():
                if node.get("claim_token") == body["claim_token"]:
                    node.update(owner=user, claim_token=None)
                    return self._json(200, self._node_view(node))
            return self._error(404, "not_found", "no node has this claim token", field="claim_token")
        if (method, route) == ("POST", ["provision-keys"]):
            return self._json(201, {"key": "pk-" + secrets.token_hex(8)})
        node = server.nodes.get(route[1]) if len(route) == 2 else None
        if node is None or node["owner"] != user:
            return self._error(404, "not_found", f"no node {route[1] if len(route) > 1 else ''}", field="node_id")
        if method == "GET":
            return self._json(200, self._node_view(node))
        if method == "PATCH":
            node["name"] = body["name"]
            return self._json(200, self._node_view(node))
        if method == "DELETE":
            del server.nodes[node["id"]]
            self.send_response(204)
            self.end_headers()
            return None
        return self._error(405, "method_not_allowed", "method not allowed")

    def _node_view(self, node):
        groups = sorted(name for name, members in self.server.groups.items() if node["id"] in members)
        keys = ("id", "name", "online", "last_seen", "version", "chutes")
        return {**{key: node[key] for key in keys}, "role": "owner", "groups": groups}

    def _groups(self, method, route, body):
        groups = self.server.groups
        if (method, route) == ("GET", ["groups"]):
            return self._json(200, [{"name": name, "nodes": sorted(nodes)} for name, nodes in groups.items()])
        if (method, route) == ("POST", ["groups"]):
            groups[body["name"]] = set()
            return self._json(201, {"name": body["name"], "nodes": []})
        if route[1] not in groups:
            return self._error(404, "not_found", f"no group {route[1]}", field="group")
        if (method, len(route)) == ("DELETE", 2):
            del groups[route[1]]
            return self._json(200, {"name": route[1]})
        if len(route) == 4 and route[2] == "nodes" and route[3] in self.server.nodes:
            (groups[route[1]].add if method == "PUT" else groups[route[1]].discard)(route[3])
            return self._json(200, {"name": route[1], "nodes": sorted(groups[route[1]])})
        return self._error(404, "not_found", "no such node", field="node_id")

    def _store(self, method, route, body, user):
        chutes = self.server.chutes
        if (method, route) == ("GET", ["chutes"]):
            return self._json(200, [{**c, "versions": len(c["versions"])} for c in chutes.values()])
        if (method, route) == ("POST", ["chutes"]):
            if body["name"] in chutes:
                return self._error(409, "conflict", f"chute {body['name']} exists", field="name")
            chutes[body["name"]] = {"name": body["name"], "description": body.get("description", ""),
                                    "owner": user, "versions": {}}
            return self._json(201, {**chutes[body["name"]], "versions": 0})
        chute = chutes.get(route[1])
        if chute is None:
            return self._error(404, "not_found", f"no chute {route[1]} in the store", field="chute")
        if (method, route[2:]) == ("GET", ["versions"]):
            return self._json(200, list(chute["versions"].values()))
        if (method, route[2:]) == ("POST", ["versions"]):
            description = body["config"] if isinstance(body, dict) else _tar_description(body)
            if description.get("name") != chute["name"]:
                return self._error(400, "invalid_input", f"name: the project is of chute {description.get('name')}",
                                   field="name")
            version = str(description["version"])
            if version in chute["versions"]:
                return self._error(409, "conflict", f"version {version} of {chute['name']} exists", field="version")
            archive = isinstance(body, bytes)
            chute["versions"][version] = {"chute": chute["name"], "version": version, "config": description,
                                          "archive": archive, "sha256": "ab" * 32 if archive else None,
                                          "size": len(body) if archive else None, "created": T0, "created_by": user}
            return self._json(201, chute["versions"][version])
        return self._error(404, "not_found", "no such resource", field="path")

    def _deployments(self, method, route, body, user):
        server = self.server
        if (method, route) == ("POST", ["deployments"]):
            node_ids = sorted(server.groups[body["group"]]) if "group" in body else body["nodes"]
            deployment_id = str(next(server.ids))
            deliveries = [{"node_id": node_id, "key": f"dep-{deployment_id}-{node_id}",
                           "state": "pending" if server.nodes.get(node_id, {}).get("owner") == user else "forbidden",
                           "change_id": None, "message": None, "updated": T0} for node_id in node_ids]
            target = {"group": body["group"]} if "group" in body else {"nodes": node_ids}
            server.deployments[deployment_id] = {"id": deployment_id, "chute": body["chute"],
                                                 "version": body["version"], "user": user, "target": target,
                                                 "created": T0, "deliveries": deliveries}
            return self._json(202, {"id": deployment_id, "deliveries": [
                {key: d[key] for key in ("node_id", "key", "state")} for d in deliveries]})
        if (method, route) == ("GET", ["deployments"]):
            return self._json(200, [_summary(d) for d in server.deployments.values()])
        if method == "GET" and len(route) == 2 and route[1] in server.deployments:
            deployment = server.deployments[route[1]]
            return self._json(200, {**_summary(deployment), "deliveries": deployment["deliveries"]})
        return self._error(404, "not_found", f"no deployment {route[-1]}", field="deployment_id")

    def _play(self, deployment_id):
        """Stream every delivery's state as it is in one array (the controller's snapshot), then run the pending
        ones to their end streaming each step in an array of its own, then close."""
        deployment = self.server.deployments.get(deployment_id)
        if deployment is None:
            return self._error(404, "not_found", f"no deployment {deployment_id}", field="deployment_id")
        frames = [[{key: d[key] for key in ("node_id", "state", "message")} | {"time": d["updated"]}
                   for d in deployment["deliveries"]]]
        for index, delivery in enumerate(d for d in deployment["deliveries"] if d["state"] == "pending"):
            failing = self.server.nodes[delivery["node_id"]]["name"] == FAILING_NODE
            steps = [("sent", None), ("running", "building image"),
                     ("failed", "service main exited with code 3") if failing else ("succeeded", None)]
            for offset, (state, message) in enumerate(steps):
                frames.append([{"node_id": delivery["node_id"], "state": state, "message": message,
                                "time": T0 + 10 * index + offset}])
            delivery.update(state=steps[-1][0], message=steps[-1][1], change_id=index + 1, updated=T0 + 10 * index + 2)
        if self.server.drop_stream:
            return self._stream(frames[:1], clean_close=False)
        return self._stream(frames)


FakeController.handler = _Handler


def _summary(deployment):
    states = {}
    for delivery in deployment["deliveries"]:
        states[delivery["state"]] = states.get(delivery["state"], 0) + 1
    finished = all(d["state"] in ("succeeded", "failed", "forbidden") for d in deployment["deliveries"])
    return {**{k: v for k, v in deployment.items() if k != "deliveries"}, "states": states, "finished": finished}


def _tar_description(data):
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return yaml.safe_load(tar.extractfile("paradrop.yaml"))
