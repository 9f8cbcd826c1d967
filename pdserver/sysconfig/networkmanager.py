"""NetworkManager over D-Bus (txdbus, on the reactor).

Where NetworkManager runs, it would take over the interfaces the node builds (bridges, VLANs, AP interfaces) and
fight it over addresses: the node reads device state from it and marks its own interfaces unmanaged. Where it
does not run (no system bus, or NetworkManager not on it), `connect` answers None and the node works without it.
Calls go straight to the known object paths (no introspection round trips), each bounded by a timeout on the
injected reactor, and never ask the bus to start NetworkManager.
"""
import os
import re
from typing import List, Optional

from twisted.internet import defer
from twisted.internet.error import ConnectError, ConnectionClosed
from twisted.logger import Logger
from zope.interface import Interface, implementer

from pdserver.errors import Error, InvalidInput, NotFound, Unavailable

log = Logger()

BUS_NAME = "org.freedesktop.DBus"
NM_NAME = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
DEVICE_INTERFACE = "org.freedesktop.NetworkManager.Device"
PROPERTIES = "org.freedesktop.DBus.Properties"
UNKNOWN_DEVICE = "org.freedesktop.NetworkManager.UnknownDevice"
# A device removed between GetDevices and reading its properties.
VANISHED = ("org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod",
            "org.freedesktop.DBus.Error.UnknownInterface")

# NMDeviceType and NMDeviceState of NetworkManager's D-Bus API, named as nmcli names them.
DEVICE_TYPES = {
    0: "unknown", 1: "ethernet", 2: "wifi", 5: "bt", 6: "olpc-mesh", 7: "wimax", 8: "modem", 9: "infiniband",
    10: "bond", 11: "vlan", 12: "adsl", 13: "bridge", 14: "generic", 15: "team", 16: "tun", 17: "ip-tunnel",
    18: "macvlan", 19: "vxlan", 20: "veth", 21: "macsec", 22: "dummy", 23: "ppp", 24: "ovs-interface",
    25: "ovs-port", 26: "ovs-bridge", 27: "wpan", 28: "6lowpan", 29: "wireguard", 30: "wifi-p2p", 31: "vrf",
    32: "loopback", 33: "hsr"}
DEVICE_STATES = {
    0: "unknown", 10: "unmanaged", 20: "unavailable", 30: "disconnected", 40: "prepare", 50: "config",
    60: "need-auth", 70: "ip-config", 80: "ip-check", 90: "secondaries", 100: "activated", 110: "deactivating",
    120: "failed"}

_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
# What "the bus or NetworkManager is not there" looks like, with txdbus's DBusException (added where txdbus is
# imported); anything else is a bug and propagates.
_ABSENT = (ConnectError, ConnectionClosed, OSError, defer.TimeoutError, defer.CancelledError)
# Where txdbus looks for the system bus (txdbus.endpoints.getDBusEnvEndpoints).
SYSTEM_BUS = "unix:path=/var/run/dbus/system_bus_socket"


def check_interface(name) -> str:
    """A Linux interface name (at most 15 characters, no slash or blank), or InvalidInput."""
    if not isinstance(name, str) or not _IFNAME.fullmatch(name) or name in (".", ".."):
        raise InvalidInput("an interface name is 1 to 15 letters, digits, '_', '.' or '-'",
                           field="interface")
    return name


def missing_sockets(address: str) -> List[str]:
    """The socket files a D-Bus address names, when it names only socket files (``unix:path=``) and none of them
    exists; otherwise (one exists, or another kind of address, which only txdbus can try) an empty list."""
    paths = []
    for entry in address.split(";"):
        kind, _, params = entry.partition(":")
        path = dict(p.partition("=")[::2] for p in params.split(",")).get("path")
        if kind != "unix" or not path or os.path.exists(path):
            return []
        paths.append(path)
    return paths


def device_info(props: dict) -> dict:
    """A device as the node shows it, from NetworkManager's Device properties."""
    return {"interface": str(props.get("Interface", "")),
            "type": DEVICE_TYPES.get(props.get("DeviceType"), "unknown"),
            "state": DEVICE_STATES.get(props.get("State"), "unknown"),
            "managed": bool(props.get("Managed", False))}


class INetworkManager(Interface):
    """NetworkManager as the node uses it."""

    def devices():
        """Deferred list of {interface, type, state, managed}, sorted by interface."""

    def device(interface):
        """Deferred {interface, type, state, managed} of one device; NotFound when NetworkManager has none by
        that name (yet: it learns of a new link a moment after the kernel)."""

    def set_managed(interface, managed):
        """Deferred firing once NetworkManager accepted to take (True) or release (False) the interface; its
        device state follows within moments."""

    def disconnect():
        """Close the bus connection."""


@implementer(INetworkManager)
class NetworkManagerClient:
    """One connection to the system bus where NetworkManager is present; build it with `connect`."""

    def __init__(self, reactor, connection, timeout: float):
        self._reactor = reactor
        self._conn = connection
        self._timeout = timeout

    @classmethod
    def connect(cls, reactor, bus_address: Optional[str] = None, timeout: float = 5.0) -> defer.Deferred:
        """A client, or None (logged, not an error) when there is no bus or NetworkManager is not on it.
        `bus_address` is a D-Bus address (`unix:path=...`); None means the system bus. txdbus (and the global
        reactor it imports) is imported only when a bus may be there: not when each address is a socket file
        that does not exist."""
        address = bus_address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", SYSTEM_BUS)
        missing = missing_sockets(address)
        if missing:
            log.info("no NetworkManager: no system bus at {paths}", paths=", ".join(missing))
            return defer.succeed(None)
        from txdbus import client, error

        d = defer.maybeDeferred(client.connect, reactor, bus_address or "system")
        d.addTimeout(timeout, reactor)

        def connected(conn):
            found = cls(reactor, conn, timeout)

            def answer(has_owner):
                if has_owner:
                    return found
                conn.disconnect()
                log.info("NetworkManager is not on the system bus")
                return None

            def failed(failure):
                conn.disconnect()
                return failure
            present = found._remote("/org/freedesktop/DBus", "NameHasOwner", BUS_NAME, "s", [NM_NAME])
            return present.addCallbacks(answer, failed)

        def absent(failure):
            failure.trap(error.DBusException, *_ABSENT)
            log.info("no NetworkManager: {reason}", reason=failure.getErrorMessage() or failure.type.__name__)
            return None
        return d.addCallback(connected).addErrback(absent)

    def devices(self) -> defer.Deferred:
        return defer.ensureDeferred(self._devices())

    async def _devices(self) -> List[dict]:
        paths = await self._call(NM_PATH, "GetDevices", NM_NAME)
        results = await defer.DeferredList([self._properties(path) for path in paths], consumeErrors=True)
        for ok, value in results:
            if not ok:
                value.raiseException()
        return sorted((device_info(props) for ok, props in results if props is not None),
                      key=lambda device: device["interface"])

    def _properties(self, path) -> defer.Deferred:
        """The device's properties, or None when it went away since GetDevices."""
        def vanished(failure):
            from txdbus.error import RemoteError
            if failure.check(RemoteError) and failure.value.errName in VANISHED:
                return None
            return _raise(failure, "GetAll")
        return self._remote(path, "GetAll", PROPERTIES, "s", [DEVICE_INTERFACE]).addErrback(vanished)

    def device(self, interface: str) -> defer.Deferred:
        return defer.ensureDeferred(self._device(interface))

    async def _device(self, interface: str) -> dict:
        check_interface(interface)
        path = await self._call(NM_PATH, "GetDeviceByIpIface", NM_NAME, "s", [interface], what=interface)
        props = await self._properties(path)
        if props is None:
            raise NotFound(f"NetworkManager has no device {interface}", field="interface")
        return device_info(props)

    def set_managed(self, interface: str, managed: bool) -> defer.Deferred:
        return defer.ensureDeferred(self._set_managed(interface, managed))

    async def _set_managed(self, interface: str, managed: bool) -> None:
        check_interface(interface)
        if not isinstance(managed, bool):
            raise InvalidInput("managed is true or false", field="managed")
        path = await self._call(NM_PATH, "GetDeviceByIpIface", NM_NAME, "s", [interface], what=interface)
        await self._call(path, "Set", PROPERTIES, "ssv", [DEVICE_INTERFACE, "Managed", managed], what=interface)

    def disconnect(self) -> None:
        self._conn.disconnect()

    def _call(self, path, method, interface, signature=None, body=None, what=None) -> defer.Deferred:
        return self._remote(path, method, interface, signature, body).addErrback(_raise, method, what)

    def _remote(self, path, method, interface, signature=None, body=None) -> defer.Deferred:
        d = self._conn.callRemote(path, method, interface=interface,
                                  destination=BUS_NAME if interface == BUS_NAME else NM_NAME,
                                  signature=signature, body=body, autoStart=False)
        return d.addTimeout(self._timeout, self._reactor)


def _raise(failure, method: str, what: Optional[str] = None):
    """Bus failures as the node's errors: an unknown device is NotFound, the rest Unavailable."""
    from txdbus.error import RemoteError
    if failure.check(Error):
        failure.raiseException()
    if failure.check(RemoteError) and failure.value.errName == UNKNOWN_DEVICE:
        raise NotFound(f"NetworkManager has no device {what}", field="interface")
    reason = failure.getErrorMessage() or failure.type.__name__
    raise Unavailable(f"NetworkManager: {method}{' ' + what if what else ''} failed: {reason}")
