"""The host network configurator in memory: the same state transitions as HostNetwork, no kernel or children.

For the unit tier: failure paths of chute network plans (a step that fails, an undo, a repeat on recovery)
run against it in milliseconds; the real configurator's tests in namespaces stay the proof.
"""
from typing import Dict, Optional

from twisted.internet import defer
from zope.interface import implementer

from pdserver import errors
from pdserver.sysconfig.interfaces import INetworkConfigurator


@implementer(INetworkConfigurator)
class MemoryNetwork:
    def __init__(self, links=("lan0", "wan0")):
        """``links`` exist from the start (the host's own ports); ``fail`` maps a method name to an error it
        raises next time."""
        self.links: Dict[str, dict] = {name: {"kind": "ethernet", "master": None} for name in links}
        self.children: Dict[str, dict] = {}
        self.firewall: Optional[dict] = None
        self.attached: Dict[str, dict] = {}
        self.radios: Dict[str, dict] = {}  # phy -> the process holding it, its monitor interface, the frequency
        self.fail: Dict[str, Exception] = {}

    def _check(self, method):
        error = self.fail.pop(method, None)
        if error is not None:
            raise error

    def _call(self, method, f):
        try:
            self._check(method)
            return defer.succeed(f())
        except Exception as e:
            return defer.fail(e)

    def _link(self, name, **attrs):
        self.links[name] = {**self.links.get(name, {"master": None}), **attrs}

    def ensure_bridge(self, name, address):
        return self._call("ensure_bridge", lambda: self._link(name, kind="bridge", address=address))

    def ensure_vlan(self, parent, vlan_id, name, master):
        def run():
            if parent not in self.links:
                raise errors.Conflict(f"no interface {parent}", field="lan.interfaces")
            self._link(name, kind="vlan", parent=parent, vlan_id=vlan_id, master=master)
        return self._call("ensure_vlan", run)

    def ensure_ap_interface(self, phy, name):
        return self._call("ensure_ap_interface", lambda: self._link(name, kind="ap", phy=phy))

    def set_master(self, link, master):
        def run():
            if link not in self.links:
                if master is None:
                    return
                raise errors.Conflict(f"no interface {link}", field="wifi")
            self.links[link]["master"] = master
        return self._call("set_master", run)

    def remove_link(self, name):
        def run():
            self.links.pop(name, None)
            for link in self.links.values():
                if link.get("master") == name:
                    link["master"] = None
            for key in [k for k, v in self.attached.items() if v["bridge"] == name]:
                del self.attached[key]
        return self._call("remove_link", run)

    def start_dhcp(self, child, bridge, address, start, limit, leasetime, dns):
        return self._call("start_dhcp", lambda: self.children.__setitem__(child, {
            "program": "dnsmasq", "bridge": bridge, "address": address, "start": start, "limit": limit,
            "leasetime": leasetime, "dns": list(dns)}))

    def stop_dhcp(self, child, bridge):
        return self._call("stop_dhcp", lambda: self.children.pop(child, None) and None)

    def start_ap(self, child, options):
        return self._call("start_ap", lambda: self.children.__setitem__(child, {"program": "hostapd", **options}))

    def stop_ap(self, child):
        return self._call("stop_ap", lambda: self.children.pop(child, None) and None)

    def attach_interface(self, pid, bridge, host_name, inner, address, mac):
        def run():
            if bridge not in self.links:
                raise errors.Conflict(f"no bridge {bridge}", field=None)
            self.attached[host_name] = {"pid": pid, "bridge": bridge, "inner": inner, "address": address, "mac": mac}
        return self._call("attach_interface", run)

    def give_radio(self, pid, phy, inner, frequency):
        return self._call("give_radio", lambda: self.radios.__setitem__(
            phy, {"pid": pid, "inner": inner, "frequency": frequency}))

    def release_radio(self, phy, pid):
        return self._call("release_radio", lambda: self.radios.pop(phy, None) and None)

    def apply_firewall(self, wan, networks):
        return self._call("apply_firewall", lambda: setattr(self, "firewall", {
            "wan": wan, "networks": list(networks)}))

    def leases(self, bridge):
        return defer.succeed([])

    def access_point(self, child):
        return None

    def status(self):
        return defer.succeed({"links": dict(self.links), "children": dict(self.children),
                              "radios": dict(self.radios), "firewall": self.firewall})
