"""A synchronous client of the controller's HTTP API (accounts, nodes, groups, the chute store, deployments).

`pdtools cloud` and `pdtools store` are thin layers over this class, as `pdtools node` is over NodeClient; the
failures are the same pdtools.errors.PdtoolsError family.

    client = ControllerClient("http://127.0.0.1:8000")
    client.login("alice", password)
    deployment = client.deploy("hello", "1", nodes=[node_id])
    for message in client.stream_deployment(deployment["id"]): ...
"""
from pdtools.client import UPLOAD_TIMEOUT, ApiClient, _segment

#: A delivery in one of these states will not change any more (the controller's deployment states).
FINAL_DELIVERY_STATES = frozenset({"succeeded", "failed", "cancelled", "interrupted", "forbidden"})


class ControllerClient(ApiClient):
    """Calls on one controller."""

    def __init__(self, base_url, token=None, timeout=10.0):
        super().__init__(base_url, token, timeout)
        #: What the last login() learnt about the user: {"username", "admin", "expires"}.
        self.identity = None

    # -- accounts

    def register(self, username, password):
        return self._request("POST", "/auth/register", body={"username": username, "password": password}, auth=False)

    def login(self, username, password):
        """Exchange a password for a token, keep it for later calls and return it."""
        answer = self._request("POST", "/auth/login", body={"username": username, "password": password}, auth=False)
        self.token = answer["token"]
        self.identity = {key: answer.get(key) for key in ("username", "admin", "expires")}
        return self.token

    def logout(self):
        """Revoke the token on the controller."""
        return self._request("POST", "/auth/logout")

    def me(self):
        return self._request("GET", "/auth/me")

    # -- nodes

    def list_nodes(self, online=None):
        """All your nodes (every page); ``online`` True or False keeps only the nodes online or offline."""
        return self._pages("/nodes", params=None if online is None else {"online": "true" if online else "false"})

    def create_node(self, name):
        """A new node: its id and its secret, which the controller shows only this once."""
        return self._request("POST", "/nodes", body={"name": name})

    def claim_node(self, claim_token):
        return self._request("POST", "/nodes/claim", body={"claim_token": claim_token})

    def get_node(self, node_id):
        return self._request("GET", f"/nodes/{_segment(node_id)}")

    def rename_node(self, node_id, name):
        return self._request("PATCH", f"/nodes/{_segment(node_id)}", body={"name": name})

    def delete_node(self, node_id):
        return self._request("DELETE", f"/nodes/{_segment(node_id)}")

    def create_provision_key(self, name, max_nodes, ttl):
        """A key with which up to `max_nodes` nodes provision themselves within `ttl` seconds (shown once)."""
        return self._request("POST", "/provision-keys", body={"name": name, "max_nodes": max_nodes, "ttl": ttl})

    # -- groups

    def list_groups(self):
        return self._request("GET", "/groups")

    def create_group(self, name):
        return self._request("POST", "/groups", body={"name": name})

    def delete_group(self, name):
        return self._request("DELETE", f"/groups/{_segment(name)}")

    def add_to_group(self, name, node_id):
        return self._request("PUT", f"/groups/{_segment(name)}/nodes/{_segment(node_id)}")

    def remove_from_group(self, name, node_id):
        return self._request("DELETE", f"/groups/{_segment(name)}/nodes/{_segment(node_id)}")

    # -- the chute store

    def list_store_chutes(self):
        return self._request("GET", "/store/chutes")

    def create_store_chute(self, name, description=None):
        body = {"name": name} if description is None else {"name": name, "description": description}
        return self._request("POST", "/store/chutes", body=body)

    def list_versions(self, chute):
        return self._request("GET", f"/store/chutes/{_segment(chute)}/versions")

    def create_version(self, chute, project):
        """A new version of store chute `chute` from a tar of its project (a binary file object) or from a
        description (a dict: a paradrop.yaml that needs no files); the version is the one in its paradrop.yaml."""
        path = f"/store/chutes/{_segment(chute)}/versions"
        if isinstance(project, dict):
            return self._request("POST", path, body={"config": project}, timeout=UPLOAD_TIMEOUT)
        return self._request("POST", path, data=project, content_type="application/x-tar", timeout=UPLOAD_TIMEOUT)

    # -- deployments

    def deploy(self, chute, version, nodes=None, group=None):
        """Install a store version on the nodes (a list of ids) or on a group: the deployment and its deliveries."""
        if (nodes is None) == (group is None):
            raise ValueError("deploy to either nodes or a group")
        target = {"nodes": list(nodes)} if group is None else {"group": group}
        return self._request("POST", "/deployments", body={"chute": chute, "version": str(version), **target})

    def list_deployments(self):
        return self._request("GET", "/deployments")

    def get_deployment(self, deployment_id):
        return self._request("GET", f"/deployments/{_segment(deployment_id)}")

    def stream_deployment(self, deployment_id):
        """Yield the deployment's progress as {"node_id", "state", "message", "time"} until the controller closes
        the stream (when every delivery is final); the connection opens on the first next(). The controller sends
        them in arrays (the updates of a moment together)."""
        return self._follow(f"/ws/deployments/{_segment(deployment_id)}", arrays=True)
