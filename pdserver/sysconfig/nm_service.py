"""NetworkManager as a part of the node: found at start without holding the start up, asked to keep its hands
off every link the node configures, and given back the interfaces it managed when the node lets them go.

Where NetworkManager is absent (no system bus, or nothing on it) every call succeeds at once and does nothing:
the node works the same without it. A NetworkManager that fails mid-way is logged and reported in the status,
never a reason to fail a chute's network: the link is ours either way.
"""
from typing import Dict, List, Optional

from twisted.application.service import Service
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.python.failure import Failure

from pdserver.errors import NotFound, Unavailable
from pdserver.sysconfig.networkmanager import NetworkManagerClient, check_interface

log = Logger()


class NetworkManagerService(Service):
    """One connection to NetworkManager for the node's lifetime (connect at start, disconnect at stop).

    ``seen_within``: how long to wait for NetworkManager to learn of a link the node has just made (it hears of
    it from the kernel and udev a moment later); a link it never learns of is not its to manage.
    """

    def __init__(self, reactor, bus_address: Optional[str] = None, timeout: float = 5.0, seen_within: float = 3.0,
                 poll: float = 0.05, connect=NetworkManagerClient.connect):
        self._reactor = reactor
        self._bus_address = bus_address
        self._timeout = timeout
        self._seen_within = seen_within
        self._poll = poll
        self._connect = connect
        self._client = None
        self._connecting: Optional[defer.Deferred] = None
        self._waiters: List[defer.Deferred] = []
        self._taken: Dict[str, bool] = {}  # interface -> whether NetworkManager managed it before we took it
        self._errors: Dict[str, str] = {}

    # -- lifetime

    def startService(self):
        super().startService()
        self._connecting = self._connect(self._reactor, self._bus_address, timeout=self._timeout)
        self._connecting.addBoth(self._connected)

    def _connected(self, result):
        self._connecting = None
        if isinstance(result, Failure):
            log.failure("looking for NetworkManager failed", result)
            result = None
        self._client = result
        if result is not None:
            log.info("NetworkManager is on the system bus: the node's links will be unmanaged there")
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(result)

    def stopService(self):
        super().stopService()
        if self._connecting is not None:
            self._connecting.cancel()
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    def _ready(self) -> defer.Deferred:
        """The client once the start-up search is over (None: no NetworkManager)."""
        if self._connecting is None:
            return defer.succeed(self._client)
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        return waiter

    # -- what HostNetwork asks

    def release(self, interface: str) -> defer.Deferred:
        """Make NetworkManager leave ``interface`` alone (unmanaged) before the node configures it."""
        check_interface(interface)
        return defer.ensureDeferred(self._release(interface))

    async def _release(self, interface: str) -> None:
        client = await self._ready()
        if client is None:
            return
        try:
            device = await self._seen(client, interface)
            if device is None:
                log.info("NetworkManager has not seen {interface}: nothing to unmanage", interface=interface)
                return
            # Set even when it reads unmanaged: a link udev has not finished with reads unmanaged, then managed.
            await client.set_managed(interface, False)
            self._taken.setdefault(interface, device["managed"])
            self._errors.pop(interface, None)
        except Unavailable as e:
            self._errors[interface] = e.message
            log.warn("NetworkManager could not unmanage {interface}: {reason}", interface=interface,
                     reason=e.message)

    async def _seen(self, client, interface: str) -> Optional[dict]:
        deadline = self._reactor.seconds() + self._seen_within
        while True:
            try:
                return await client.device(interface)
            except NotFound:
                if self._reactor.seconds() >= deadline:
                    return None
            await task.deferLater(self._reactor, self._poll, lambda: None)

    def give_back(self, interface: str) -> defer.Deferred:
        """The node is done with ``interface`` (an existing port it had taken): NetworkManager manages it again
        if it did before."""
        check_interface(interface)
        return defer.ensureDeferred(self._give_back(interface))

    async def _give_back(self, interface: str) -> None:
        managed_before = self._taken.pop(interface, False)
        self._errors.pop(interface, None)
        if not managed_before or self._client is None:
            return
        try:
            await self._client.set_managed(interface, True)
        except (NotFound, Unavailable) as e:
            log.warn("NetworkManager could not take {interface} back: {reason}", interface=interface,
                     reason=e.message)

    def forget(self, interface: str) -> None:
        """A link the node removed: nothing to give back."""
        self._taken.pop(interface, None)
        self._errors.pop(interface, None)

    def status(self) -> defer.Deferred:
        """For pdconf: whether NetworkManager is there, and its view of the interfaces the node took from it."""
        return defer.ensureDeferred(self._status())

    async def _status(self) -> dict:
        client = self._client
        out = {"present": client is not None, "searching": self._connecting is not None,
               "unmanaged": sorted(self._taken), "devices": [], "errors": dict(self._errors)}
        if client is None or not self._taken:
            return out
        try:
            out["devices"] = [d for d in await client.devices() if d["interface"] in self._taken]
        except Unavailable as e:
            out["errors"]["devices"] = e.message
        return out
