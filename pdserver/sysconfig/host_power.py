"""Rebooting or powering off the node's host, through systemd-logind on the system bus (txdbus).

The node may do it only where it owns its machine: the owner turned ``allow_host_power`` on, the node does not
run in a container (whose "host" is someone else's), and logind is on the bus and says the action is possible.
``check`` names the first of these that fails, as the error the API answers; nothing is done then.
"""
import os
from typing import Iterable, Optional

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import Interface, implementer

from pdserver.errors import Conflict, Error, Unavailable
from pdserver.sysconfig.networkmanager import BUS_NAME, SYSTEM_BUS, missing_sockets

log = Logger()

LOGIND_NAME = "org.freedesktop.login1"
LOGIND_PATH = "/org/freedesktop/login1"
MANAGER = "org.freedesktop.login1.Manager"
# Files a container runtime leaves (docker, podman, systemd-nspawn and LXC with systemd).
CONTAINER_MARKERS = ("/.dockerenv", "/run/.containerenv", "/run/systemd/container")
ACTIONS = {"reboot": ("Reboot", "CanReboot"), "poweroff": ("PowerOff", "CanPowerOff")}


class IHostPower(Interface):
    def check(action):
        """A Deferred firing None when the node may do ``action`` ("reboot" or "poweroff") now; it fails with
        Conflict (not allowed here) or Unavailable (no logind) naming why."""

    def act(action):
        """A Deferred firing once ``action`` was asked of the host (which then goes down)."""


def container_marker(markers: Iterable[str]) -> Optional[str]:
    return next((path for path in markers if os.path.exists(path)), None)


@implementer(IHostPower)
class LogindPower:
    def __init__(self, reactor, allowed: bool, bus_address: Optional[str] = None,
                 container_markers: Iterable[str] = CONTAINER_MARKERS, timeout: float = 5.0):
        """``bus_address``: a D-Bus address (``unix:path=...``); None: the machine's system bus."""
        self._reactor = reactor
        self._allowed = allowed
        self._bus = bus_address
        self._markers = tuple(container_markers)
        self._timeout = timeout

    def check(self, action: str) -> defer.Deferred:
        return defer.ensureDeferred(self._check(action))

    async def _check(self, action: str) -> None:
        _, can = ACTIONS[action]
        if not self._allowed:
            raise Conflict("this node may not reboot or power off its host: allow_host_power is off in its "
                           "settings (turn it on where the node owns its machine)", field="allow_host_power",
                           code="host_power_disallowed")
        marker = container_marker(self._markers)
        if marker is not None:
            raise Conflict(f"the node runs in a container ({marker} exists): its host is not the node's to "
                           f"reboot or power off", field="allow_host_power", code="host_power_in_container")
        conn = await self._connect()
        try:
            answer = await self._call(conn, can)
        finally:
            conn.disconnect()
        if answer != "yes":
            raise Unavailable(f"systemd-logind answers {can}: {answer!r}; the host cannot be asked to "
                              f"{action} from here", field="allow_host_power", code="host_power_unavailable")

    def act(self, action: str) -> defer.Deferred:
        return defer.ensureDeferred(self._act(action))

    async def _act(self, action: str) -> None:
        method, _ = ACTIONS[action]
        conn = await self._connect()
        try:
            await self._call(conn, method, "b", [False])  # interactive=False: no polkit prompt
        finally:
            conn.disconnect()
        log.warn("asked systemd-logind to {action} the host", action=action)

    async def _connect(self):
        """A connection to the bus on which logind is, or Unavailable."""
        address = self._bus or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS)
        if missing_sockets(address):
            raise self._absent(f"no system bus at {address}")
        from txdbus import client
        try:
            conn = await client.connect(self._reactor, self._bus or "system").addTimeout(self._timeout,
                                                                                        self._reactor)
        except Exception as e:
            raise self._absent(f"the system bus does not answer: {e or type(e).__name__}") from None
        try:
            present = await self._call(conn, "NameHasOwner", "s", [LOGIND_NAME], destination=BUS_NAME)
        except Error:
            conn.disconnect()
            raise
        if not present:
            conn.disconnect()
            raise self._absent("systemd-logind is not on the system bus")
        return conn

    async def _call(self, conn, method: str, signature=None, body=None, destination: str = LOGIND_NAME):
        interface, path = (BUS_NAME, "/org/freedesktop/DBus") if destination == BUS_NAME else (MANAGER, LOGIND_PATH)
        try:
            return await conn.callRemote(path, method, interface=interface, destination=destination,
                                         signature=signature, body=body, autoStart=False).addTimeout(
                                             self._timeout, self._reactor)
        except Exception as e:
            raise self._absent(f"{method} failed: {getattr(e, 'message', None) or e or type(e).__name__}") from None

    @staticmethod
    def _absent(reason: str) -> Unavailable:
        return Unavailable(f"the host cannot be rebooted or powered off from here: {reason}",
                           field="allow_host_power", code="host_power_unavailable")
