"""The node's network (admin): the devices on its networks, as ParaDrop lists them, and its interfaces.

Since ParaDrop 0.12, GET /api/v1/network/devices lists the DHCP clients of the node's networks (its
backend/network_api.py: one dnsmasq lease per MAC address, fields mac_addr, ip_addr, hostname, client_id,
expires), and ParaDrop's clients read it so (pdtools' ``get_cameras`` matches ``mac_addr`` and takes
``ip_addr``). The kernel's interface list, for the owner choosing what the node may take, is
GET /api/v1/network/interfaces.
"""
from typing import Callable

from twisted.internet import defer

from pdserver.api.routing import Call, RouteTable
from pdserver.auth.roles import Permission
from pdserver.chutes.networks import (ConfiguredNetwork, NetworkFacts, configured_networks, dhcp_child,
                                      host_lan_bridge)


def thd_devices() -> list:
    """netlink.thd_devices in the daemon's namespace; pyroute2 (about 23 MB, 0.25 s) is imported when first asked."""
    from pdserver.sysconfig import netlink
    return netlink.thd_devices()


def _newest(lease: dict) -> float:
    """dnsmasq writes 0 for a lease that never expires."""
    return float("inf") if lease["expires"] == 0 else lease["expires"]


def merge_leases(per_network) -> list:
    """One lease per MAC address (the one that expires last), each naming its chute and network;
    ``per_network``: (ConfiguredNetwork, leases) pairs."""
    by_mac = {}
    for network, leases in per_network:
        for lease in leases:
            entry = {**lease, "chute": network.chute, "network": network.interface}
            mac = entry["mac_addr"].lower()
            if mac not in by_mac or _newest(entry) > _newest(by_mac[mac]):
                by_mac[mac] = entry
    return sorted(by_mac.values(), key=lambda lease: lease["mac_addr"].lower())


class NetworkResource:
    routes = RouteTable("network")

    def __init__(self, interfaces: Callable[[], defer.Deferred], network, chutes, names,
                 network_facts: Callable[[], NetworkFacts] = NetworkFacts):
        """``interfaces()``: a Deferred of the interface list (thd_devices run in a thread); ``network`` the
        node's INetworkConfigurator (leases), ``chutes`` its chute store, ``names`` its ChuteNames,
        ``network_facts()`` the host config's networks (the LAN's DHCP)."""
        self._network_facts = network_facts
        self._interfaces = interfaces
        self._network = network
        self._chutes = chutes
        self._names = names

    @routes.route("/api/v1/network/devices", "GET", permission=Permission.WRITE_CONFIG,
                  summary="The devices on the node's networks: one DHCP lease per MAC address (mac_addr, ip_addr, "
                          "hostname, client_id, expires; chute and network), as ParaDrop 0.12+ lists them")
    @defer.inlineCallbacks
    def devices(self, call: Call):
        networks = [n for n in configured_networks(self._names, self._chutes.list()) if n.dhcp]
        lan = self._network_facts().host_lan
        if lan is not None and lan.dhcp is not None:
            bridge = host_lan_bridge(self._names)
            networks.append(ConfiguredNetwork(None, "host", "lan", "lan", bridge, lan.address, None, None,
                                              (dhcp_child(bridge),)))
        leases = yield defer.gatherResults([self._network.leases(n.bridge) for n in networks],
                                           consumeErrors=True).addErrback(lambda f: f.value.subFailure)
        return merge_leases(zip(networks, leases))

    @routes.route("/api/v1/network/interfaces", "GET", permission=Permission.WRITE_CONFIG,
                  summary="Network interfaces: kind, MAC, addresses, state, bridge, default route, radio")
    def interfaces(self, call: Call):
        return self._interfaces()
