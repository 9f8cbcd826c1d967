"""The node's network devices (admin): what the kernel reports, for the owner choosing what the node may take."""
from typing import Callable

from twisted.internet import defer

from pdserver.api.routing import Call, RouteTable
from pdserver.auth.roles import Permission


def thd_devices() -> list:
    """netlink.thd_devices in the daemon's namespace; pyroute2 (about 23 MB, 0.25 s) is imported when first asked."""
    from pdserver.sysconfig import netlink
    return netlink.thd_devices()


class NetworkResource:
    routes = RouteTable("network")

    def __init__(self, devices: Callable[[], defer.Deferred]):
        """``devices()``: a Deferred of the device list (thd_devices run in a thread)."""
        self._devices = devices

    @routes.route("/api/v1/network/devices", "GET", permission=Permission.WRITE_CONFIG,
                  summary="Network devices: kind, MAC, addresses, state, bridge, default route, radio")
    def devices(self, call: Call):
        return self._devices()
