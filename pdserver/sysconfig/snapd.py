"""The node's snap interfaces, from snapd's REST API on its unix socket (when the node runs as a snap).

Under snapd the node's environment names its snap (``SNAP_INSTANCE_NAME``, ``SNAP_NAME``) and snapd listens on
/run/snapd.socket; ``GET /v2/connections?snap=<name>`` lists that snap's plugs and slots with their connections.
Elsewhere there is nothing to ask, and ``connections`` says so instead of failing. treq is imported on the first
question to snapd only, and Twisted's HTTP client with them.
"""
import json
import os
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import quote

from twisted.internet import defer
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import Interface, implementer

from pdserver.errors import Unavailable

MAX_ANSWER = 4 * 1024 * 1024
TIMEOUT = 10.0


class ISnapd(Interface):
    def connections():
        """A Deferred of ``{"snap": name or None, "plugs": [...], "slots": [...], "note": text or None}``:
        the node's own snap's plugs and slots as snapd gives them; empty lists and a note off snapd."""


@implementer(IAgentEndpointFactory)
class _Socket:
    def __init__(self, reactor, path: str):
        self._reactor = reactor
        self._path = path

    def endpointForURI(self, uri):
        return UNIXClientEndpoint(self._reactor, self._path, timeout=TIMEOUT)


def snap_name(environ: Mapping[str, str]) -> Optional[str]:
    return environ.get("SNAP_INSTANCE_NAME") or environ.get("SNAP_NAME") or None


@implementer(ISnapd)
class SnapdClient:
    def __init__(self, reactor, socket_path: Path, environ: Mapping[str, str] = os.environ):
        self._reactor = reactor
        self._socket = str(socket_path)
        self._environ = environ

    def connections(self) -> defer.Deferred:
        return defer.ensureDeferred(self._connections())

    async def _connections(self) -> dict:
        name = snap_name(self._environ)
        if name is None or not os.path.exists(self._socket):
            why = "no SNAP_NAME in its environment" if name is None else f"no snapd socket at {self._socket}"
            return {"snap": name, "plugs": [], "slots": [],
                    "note": f"this node does not run under snapd ({why}): it has no snap interfaces"}
        result = await self._get(f"/v2/connections?snap={quote(name, safe='')}")
        if not isinstance(result, dict) or not all(isinstance(result.get(k, []), list) for k in ("plugs", "slots")):
            raise Unavailable("snapd answered /v2/connections without plugs and slots lists", field="snapd")
        return {"snap": name, "plugs": result.get("plugs", []), "slots": result.get("slots", []), "note": None}

    async def _get(self, path: str):
        """snapd's ``result`` of a GET, or Unavailable with snapd's own message."""
        import treq.client
        from twisted.web.client import Agent, HTTPConnectionPool
        agent = Agent.usingEndpointFactory(self._reactor, _Socket(self._reactor, self._socket),
                                           pool=HTTPConnectionPool(self._reactor, persistent=False))
        http = treq.client.HTTPClient(agent)
        try:
            response = await http.get("http://localhost" + path).addTimeout(TIMEOUT, self._reactor)
            raw = await _bounded(response, self._reactor)
        except Unavailable:
            raise
        except Exception as e:
            raise Unavailable(f"snapd does not answer at {self._socket}: {e or type(e).__name__}",
                              field="snapd") from None
        try:
            answer = json.loads(raw)
        except ValueError:
            raise Unavailable(f"snapd answered {path} with something other than JSON", field="snapd") from None
        result = answer.get("result") if isinstance(answer, dict) else None
        if response.code != 200:
            message = result.get("message") if isinstance(result, dict) else None
            raise Unavailable(f"snapd answered {path} with HTTP {response.code}: {message or 'no message'}",
                              field="snapd")
        return result


async def _bounded(response, reactor) -> bytes:
    """The body, at most MAX_ANSWER bytes, within TIMEOUT."""
    import treq
    chunks, size = [], 0

    def take(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > MAX_ANSWER:
            raise Unavailable(f"snapd's answer exceeds {MAX_ANSWER} bytes", field="snapd")
        chunks.append(data)
    await treq.collect(response, take).addTimeout(TIMEOUT, reactor)
    return b"".join(chunks)
