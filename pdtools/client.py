"""A synchronous client of one node's Edge API (the HTTP routes under /api/v1 and the change stream).

`pdtools node` is a thin layer over this class; scripts and chutes can use it directly:

    client = NodeClient("http://192.168.1.1:8080")
    client.login("paradrop", password)
    for message in client.stream_change(12): ...

Every failure is a pdtools.errors.PdtoolsError: ApiError for a refusal by the node, ConnectionFailed when it
cannot be reached, BadResponse when what answered is not an Edge API.
"""
import json

import requests
from websockets.exceptions import ConnectionClosedError, InvalidStatus, WebSocketException
from websockets.sync.client import connect

from pdtools.config import normalize_target
from pdtools.errors import ApiError, BadResponse, ConnectionFailed

API_PREFIX = "/api/v1"
INFO_KINDS = ("hardware", "software", "features")


class NodeClient:
    """Calls on one node; `token` is sent as a bearer token on every route that needs one."""

    def __init__(self, base_url, token=None, timeout=10.0):
        self.base_url = normalize_target(base_url)
        self.token = token
        self.timeout = timeout
        #: What the last login() learnt about the user: {"username", "role", "expires_at"}.
        self.identity = None
        self._session = requests.Session()

    def close(self):
        self._session.close()

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
        url = websocket_url(self.base_url, f"/ws/changes/{int(change_id)}/stream")
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
                    yield _decode_frame(url, frame)
            except ConnectionClosedError as exc:
                raise ConnectionFailed(url, f"the stream broke off ({exc})") from exc

    def _auth_header(self):
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _request(self, method, path, body=None, params=None, auth=True):
        url = self.base_url + API_PREFIX + path
        headers = self._auth_header() if auth else {}
        try:
            response = self._session.request(
                method, url, json=body, params=params, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise ConnectionFailed(url, _reason(exc, self.timeout)) from exc
        if not response.ok:
            raise ApiError.from_response(response.status_code, response.content, response.headers)
        try:
            return response.json()
        except ValueError:
            detail = f"HTTP {response.status_code} without a JSON body (is this a ParaDrop node?)"
            raise BadResponse(url, detail) from None


def websocket_url(base_url, path):
    """The ws:// (or wss:// for https) URL of a websocket route of the node at base_url."""
    scheme, rest = normalize_target(base_url).split("://", 1)
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{path}"


def _decode_frame(url, frame):
    try:
        message = json.loads(frame)
    except ValueError:
        raise BadResponse(url, "a stream message is not JSON") from None
    if not isinstance(message, dict):
        raise BadResponse(url, "a stream message is not a JSON object")
    return message


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
