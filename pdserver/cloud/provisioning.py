"""The provision record: which controller this node belongs to and how it proves who it is.

``{node_id, secret, controller (http URL), wamp_router (ws URL)}`` in ``<state>/cloud.json``, mode 0600 from its
first byte (pdserver.secretfiles). Pure parsing and validation here; the routes and the link use it.
"""
import dataclasses
import json
import os
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import urlsplit

from pdserver import errors
from pdserver.cloud import protocol
from pdserver.secretfiles import write_secret_file

MAX_SECRET = 256
MAX_URL = 2048
# ParaDrop's pdtools 0.13.2 posts {routerId, apitoken, pdserver, wampRouter}; ours posts the record's own names.
ALIASES = {"routerId": "node_id", "apitoken": "secret", "pdserver": "controller", "wampRouter": "wamp_router"}


@dataclasses.dataclass(frozen=True)
class ProvisionRecord:
    node_id: str
    secret: str = dataclasses.field(repr=False)
    controller: Optional[str]
    wamp_router: str

    def public(self) -> dict:
        """What the API may show: never the secret."""
        return {"node_id": self.node_id, "controller": self.controller, "wamp_router": self.wamp_router}


def _url(value, field: str, schemes) -> str:
    if not isinstance(value, str) or not value or len(value) > MAX_URL:
        raise errors.InvalidInput(f"{field} must be a URL of at most {MAX_URL} characters", field=field)
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        raise errors.InvalidInput(f"{field} must not hold spaces or control characters", field=field)
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a bad port)
    except ValueError as e:
        raise errors.InvalidInput(f"{field}: {e}", field=field) from None
    if parts.scheme not in schemes or not parts.hostname:
        raise errors.InvalidInput(f"{field} must be a {' or '.join(schemes)} URL with a host", field=field)
    if parts.username is not None or parts.password is not None:
        raise errors.InvalidInput(f"{field} must not carry credentials", field=field)
    return value


def parse(body: Mapping) -> ProvisionRecord:
    """A record from a provision request in either naming (pdtools 0.13.2's or ours); InvalidInput naming the
    field it does not like."""
    values = {}
    for name, value in body.items():
        key = ALIASES.get(name, name)
        if key not in ("node_id", "secret", "controller", "wamp_router"):
            raise errors.InvalidInput(f"unknown field {name!r}", field=str(name)[:100])
        if key in values:
            raise errors.InvalidInput(f"{name} is given twice (under two names)", field=name)
        values[key] = value
    node_id = values.get("node_id")
    if not isinstance(node_id, str) or not protocol.NODE_ID.match(node_id):
        raise errors.InvalidInput("the node id must be 8 to 64 lowercase hex digits", field="node_id")
    secret = values.get("secret")
    if not isinstance(secret, str) or not secret or len(secret) > MAX_SECRET or not secret.isprintable():
        raise errors.InvalidInput(f"the secret must be 1 to {MAX_SECRET} printable characters", field="secret")
    if "wamp_router" not in values:
        raise errors.InvalidInput("the WAMP router URL (ws:// or wss://) is required", field="wamp_router")
    controller = values.get("controller")
    return ProvisionRecord(node_id, secret,
                           None if controller is None else _url(controller, "controller", ("http", "https")),
                           _url(values["wamp_router"], "wamp_router", ("ws", "wss")))


class ProvisionFile:
    """Load, save and clear the record in its 0600 file."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> Optional[ProvisionRecord]:
        """The record, or None when the node is not provisioned (or its file cannot be used: logged by the
        caller, the node then runs unprovisioned rather than not at all)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        if not isinstance(data, dict):
            raise ValueError(f"{self.path} must hold a JSON object")
        return parse(data)

    def save(self, record: ProvisionRecord) -> None:
        """Written aside and renamed over the old one: a crash leaves the old record or the new one."""
        temporary = self.path.with_name(self.path.name + ".new")
        write_secret_file(temporary, json.dumps({"node_id": record.node_id, "secret": record.secret,
                                                 "controller": record.controller,
                                                 "wamp_router": record.wamp_router}, indent=2) + "\n")
        os.replace(temporary, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
