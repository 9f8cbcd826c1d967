"""The interface of the node's host network configurator: what chute network steps ask of sysconfig.

Every method is idempotent (recovery runs steps again) and returns a Deferred. ``HostNetwork`` is the real
implementation (pyroute2, dnsmasq, hostapd, nftables, the Supervisor); ``MemoryNetwork`` keeps the same state
in memory for the unit tier's failure-path tests.
"""
from zope.interface import Interface


class INetworkConfigurator(Interface):
    def ensure_bridge(name, address):
        """A bridge ``name`` with ``address`` (``10.128.1.1/24``), up."""

    def ensure_vlan(parent, vlan_id, name, master):
        """A VLAN subinterface ``name`` of ``parent`` tagged ``vlan_id``, in bridge ``master``, up."""

    def ensure_ap_interface(phy, name):
        """An AP-mode interface ``name`` on radio ``phy`` (nl80211)."""

    def set_master(link, master):
        """Put an existing link into bridge ``master`` (None: take it out)."""

    def remove_link(name):
        """Remove a link we made; absent is fine."""

    def start_dhcp(child, bridge, address, start, limit, leasetime, dns):
        """Serve DHCP (and DNS) on the bridge: a supervised dnsmasq named ``child``; a changed config restarts it."""

    def stop_dhcp(child, bridge):
        """Stop that dnsmasq and remove its config and lease file."""

    def start_ap(child, options):
        """Run a supervised hostapd named ``child`` with ``options`` (interface, driver, ssid, key, ...)."""

    def stop_ap(child):
        """Stop that hostapd and remove its config."""

    def attach_interface(pid, bridge, host_name, inner, address, mac):
        """A veth from bridge ``bridge`` into the network namespace of process ``pid``, named ``inner`` there with
        ``address`` and the MAC address ``mac``."""

    def give_radio(pid, phy, inner, frequency):
        """Radio ``phy`` (the whole wiphy: Linux moves Wi-Fi interfaces between namespaces only so) into the
        network namespace of process ``pid``, with a monitor interface ``inner`` on it there, up, listening on
        ``frequency`` (MHz). Found in the node's namespace or, given back by a namespace that died, in the
        initial one (waited for a while: a dying namespace returns it late)."""

    def release_radio(phy, pid):
        """Radio ``phy`` back in the node's namespace with no monitor interface left on it: taken from the
        namespace of process ``pid`` while it runs (None: waited for from a namespace that died)."""

    def apply_firewall(wan, networks):
        """Replace the node's firewall of chute networks with one for ``networks`` (dicts: chute, bridge,
        subnet, gateway)."""

    def leases(bridge):
        """The DHCP leases of a chute network's bridge (a list of dicts)."""

    def access_point(child):
        """The control client of a running hostapd (pdserver.sysconfig.hostapd.HostapdControl), or None."""

    def status():
        """What is configured: links, children and their state, the firewall (for pdconf)."""
