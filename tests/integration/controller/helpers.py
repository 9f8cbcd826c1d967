"""What the controller tests share: a running controller's handle and a small HTTP client."""
import dataclasses
import json
import time

import treq

from tests.fleet_double import FleetDouble

ADMIN_PASSWORD = "controller-admin-password"
PASSWORD = "a-user-password"


class Clock:
    """Unix seconds that a test may move forward."""

    def __init__(self):
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


@dataclasses.dataclass
class Running:
    built: object
    fleet: FleetDouble
    clock: Clock
    admin: "Client" = None

    @property
    def url(self) -> str:
        return self.built.url

    @property
    def store(self):
        return self.built.fleet_store

    def client(self, token=None) -> "Client":
        return Client(self.url, token)

    async def login(self, username="admin", password=ADMIN_PASSWORD) -> "Client":
        code, body = await self.client().post("/api/v1/auth/login", {"username": username, "password": password})
        assert code == 200, body
        return self.client(body["token"])

    async def user(self, username: str) -> "Client":
        """A new user (made by the admin), logged in."""
        if self.admin is None:
            self.admin = await self.login()
        code, body = await self.admin.post("/api/v1/users", {"username": username, "password": PASSWORD})
        assert code == 201, body
        return await self.login(username, PASSWORD)


class Client:
    def __init__(self, url: str, token=None):
        self.url = url
        self.token = token

    def headers(self, extra=None) -> dict:
        headers = dict(extra or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def call(self, method: str, path: str, body=None, data=None, headers=None):
        kwargs = {"json": body} if body is not None else {}
        if data is not None:
            kwargs = {"data": data}
        response = await treq.request(method, self.url + path, headers=self.headers(headers), **kwargs)
        content = await treq.content(response)
        if response.headers.getRawHeaders("content-type", [""])[0].startswith("application/json"):
            return response.code, json.loads(content)
        return response.code, content

    def get(self, path, **kw):
        return self.call("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body, **kw)

    def put(self, path, body=None, **kw):
        return self.call("PUT", path, body, **kw)

    def patch(self, path, body=None, **kw):
        return self.call("PATCH", path, body, **kw)

    def delete(self, path, **kw):
        return self.call("DELETE", path, **kw)
