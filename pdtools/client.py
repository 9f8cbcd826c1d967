"""A synchronous client of one node's Edge API (the HTTP routes under /api/v1 and the change stream).

`pdtools node` is a thin layer over this class; scripts and chutes can use it directly:

    client = NodeClient("http://192.168.1.1:8080")
    client.login("paradrop", password)
    for message in client.stream_change(12): ...

Every failure is a pdtools.errors.PdtoolsError: ApiError for a refusal by the node, ConnectionFailed when it
cannot be reached, BadResponse when what answered is not an Edge API.

Calls that make a change on the node (install_chute, stop_chute, set_chute_config...) return the node's
`{"change_id": N}` at once; follow the change with stream_change(N).
"""
import json
from urllib.parse import quote, urljoin

import requests
from websockets.exceptions import ConnectionClosedError, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from pdtools.config import normalize_target
from pdtools.errors import ApiError, BadResponse, ConnectionFailed

API_PREFIX = "/api/v1"
INFO_KINDS = ("hardware", "software", "features")
CHUTE_ACTIONS = ("start", "stop", "restart")
#: Uploads of a project get longer than the other calls: the node unpacks and checks the archive before it answers.
UPLOAD_TIMEOUT = 300.0


class ApiClient:
    """The transport of pdtools' clients: JSON calls under /api/v1 and websocket streams of JSON frames, with
    `token` sent as a bearer token on every call that needs one. NodeClient and ControllerClient add the routes."""

    def __init__(self, base_url, token=None, timeout=10.0):
        self.base_url = normalize_target(base_url)
        self.token = token
        self.timeout = timeout
        self._session = requests.Session()

    def close(self):
        self._session.close()

    def _follow(self, path, arrays=False):
        """The stream's messages: JSON objects, or with ``arrays`` arrays of them, yielded one object at a time."""
        url = websocket_url(self.base_url, path)
        try:
            connection = connect(url, additional_headers=self._auth_header(), open_timeout=self.timeout)
        except InvalidStatus as exc:
            response = exc.response
            raise ApiError.from_response(response.status_code, response.body, response.headers) from None
        except (OSError, WebSocketException) as exc:
            raise ConnectionFailed(url, _reason(exc, self.timeout)) from exc
        with connection:
            try:
                for frame in connection:
                    yield from _decode_frame(url, frame, arrays)
            except ConnectionClosedError as exc:
                raise ConnectionFailed(url, f"the stream broke off ({exc})") from exc

    def _auth_header(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method, path, body=None, params=None, auth=True, data=None, content_type=None, timeout=None):
        """One call: `body` goes as JSON, or `data` (bytes or a file object) as `content_type`; a 204 is None."""
        url = self.base_url + API_PREFIX + path
        headers = self._auth_header() if auth else {}
        if content_type:
            headers["Content-Type"] = content_type
        return _decoded(url, self._exchange(method, url, json=body, data=data, params=params, headers=headers,
                                            timeout=timeout))

    def _pages(self, path, params=None):
        """Every item of a paged list: the server names the next page in a Link header (rel="next")."""
        items, url = [], self.base_url + API_PREFIX + path
        while url:
            response = self._exchange("GET", url, params=params, headers=self._auth_header())
            items.extend(_decoded(url, response))
            following = response.links.get("next", {}).get("url")
            url, params = (urljoin(url, following) if following else None), None
        return items

    def _exchange(self, method, url, timeout=None, **kwargs):
        try:
            response = self._session.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as exc:
            raise ConnectionFailed(url, _reason(exc, self.timeout)) from exc
        if not response.ok:
            raise ApiError.from_response(response.status_code, response.content, response.headers)
        return response


def _decoded(url, response):
    if response.status_code == 204:
        return None
    try:
        return response.json()
    except ValueError:
        detail = f"HTTP {response.status_code} without a JSON body (is this a ParaDrop node or controller?)"
        raise BadResponse(url, detail) from None


class NodeClient(ApiClient):
    """Calls on one node."""

    def __init__(self, base_url, token=None, timeout=10.0):
        super().__init__(base_url, token, timeout)
        #: What the last login() learnt about the user: {"username", "role", "expires_at"}.
        self.identity = None

    def login(self, username, password):
        """Exchange a password for a token, keep it for later calls and return it."""
        answer = self._request("POST", "/auth/local", body={"username": username, "password": password}, auth=False)
        self.token = answer["token"]
        self.identity = {key: answer.get(key) for key in ("username", "role", "expires_at")}
        return self.token

    def health(self):
        return self._request("GET", "/health", auth=False)

    def info(self, kind):
        if kind not in INFO_KINDS:
            raise ValueError(f"info kind must be one of {', '.join(INFO_KINDS)}, not {kind!r}")
        return self._request("GET", f"/info/{kind}")

    def list_changes(self, state=None, limit=None):
        params = {key: value for key, value in (("state", state), ("limit", limit)) if value is not None}
        return self._request("GET", "/changes", params=params)

    def get_change(self, change_id):
        return self._request("GET", f"/changes/{int(change_id)}")

    def cancel_change(self, change_id):
        return self._request("POST", f"/changes/{int(change_id)}/cancel")

    def change_password(self, username, old_password, new_password):
        body = {"username": username, "old_password": old_password, "new_password": new_password}
        return self._request("POST", "/password/change", body=body)

    def stream_change(self, change_id):
        """Yield the change's progress messages, history first, then live, until the node closes the stream.

        Each is a dict {"time", "message"}; the last one also has "state" and "result". The connection opens on
        the first next() and closes when the iteration ends or is abandoned.
        """
        return self._follow(f"/ws/changes/{int(change_id)}/stream")

    # -- chutes

    def list_chutes(self):
        return self._request("GET", "/chutes")

    def get_chute(self, name):
        """The chute's summary with "environment" and "service_states"."""
        return self._request("GET", f"/chutes/{_segment(name)}")

    def install_chute(self, project):
        """Install from a tar of the project (a binary file object, read from its current position) or from a
        description (a dict, the paradrop.yaml of a project that needs no files)."""
        return self._send_project("POST", "/chutes", project)

    def update_chute(self, name, project):
        """Replace chute `name` by a newer version of it, given as for install_chute."""
        return self._send_project("PUT", f"/chutes/{_segment(name)}", project)

    def remove_chute(self, name):
        return self._request("DELETE", f"/chutes/{_segment(name)}")

    def chute_action(self, name, action):
        """Start, stop or restart a chute."""
        if action not in CHUTE_ACTIONS:
            raise ValueError(f"action must be one of {', '.join(CHUTE_ACTIONS)}, not {action!r}")
        return self._request("POST", f"/chutes/{_segment(name)}/{action}")

    def get_chute_config(self, name):
        """The chute's description (its paradrop.yaml as JSON)."""
        return self._request("GET", f"/chutes/{_segment(name)}/config")

    def set_chute_config(self, name, description):
        """Replace the chute's description (same name; the version may stay) and restart it with it."""
        return self._request("PUT", f"/chutes/{_segment(name)}/config", body=description)

    def chute_logs(self, name, tail=None):
        """The last `tail` lines (node default if None) of each service: [{"service", "message"}]."""
        params = {"tail": tail} if tail is not None else None
        return self._request("GET", f"/chutes/{_segment(name)}/logs", params=params)["lines"]

    def follow_chute_logs(self, name):
        """Yield the output of the chute's services as {"service", "timestamp", "message"} until the node closes
        the stream (the connection opens on the first next(), as for stream_change)."""
        return self._follow(f"/ws/chute_logs/{_segment(name)}")

    def get_provision(self):
        """Whether the node is provisioned to a controller and its link's state: {"provisioned", "routerId",
        "pdserver", "wampRouter", "connected", "last_connected", "last_error"}."""
        return self._request("GET", "/config/provision")

    def provision(self, node_id, secret, wamp_router, controller=None):
        """Bind the node to a controller (it connects at once); answers like get_provision()."""
        body = {"node_id": node_id, "secret": secret, "wamp_router": wamp_router}
        if controller is not None:
            body["controller"] = controller
        return self._request("POST", "/config/provision", body=body)

    def _send_project(self, method, path, project):
        if isinstance(project, dict):
            return self._request(method, path, body={"config": project}, timeout=UPLOAD_TIMEOUT)
        return self._request(method, path, data=project, content_type="application/x-tar", timeout=UPLOAD_TIMEOUT)


def websocket_url(base_url, path):
    """The ws:// (or wss:// for https) URL of a websocket route of the node at base_url."""
    scheme, rest = normalize_target(base_url).split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def _segment(name):
    """A chute name as one path segment: a name with '/' or '?' must not reach another route."""
    return quote(str(name), safe="")


def _decode_frame(url, frame, arrays=False):
    """The objects of one stream message (a JSON object, or with ``arrays`` an array of them)."""
    try:
        message = json.loads(frame)
    except ValueError:
        raise BadResponse(url, "a stream message is not JSON") from None
    if arrays:
        if not isinstance(message, list) or not all(isinstance(item, dict) for item in message):
            raise BadResponse(url, "a stream message is not a JSON array of objects")
        return message
    if not isinstance(message, dict):
        raise BadResponse(url, "a stream message is not a JSON object")
    return [message]


def _reason(exc, timeout):
    """A short cause for a failed connection ("Connection refused"), not urllib3's nested repr."""
    if isinstance(exc, (requests.Timeout, TimeoutError)):
        return f"no answer within {timeout:g} s"
    reason = str(exc)
    while exc is not None:
        if isinstance(exc, OSError) and exc.strerror:
            reason = exc.strerror
        exc = exc.__cause__ or exc.__context__
    return reason
