"""The host network configurator: links through pyroute2, dnsmasq and hostapd under the Supervisor, nftables.

It works in one network namespace: the host's (None) on a node, one the test made in tests. Config files
are written atomically under ``<state>/sysconfig``; hostapd control sockets live in ``<state>/run/hostapd``.
Where NetworkManager runs, every link the node makes or takes is set unmanaged there first
(nm_service.NetworkManagerService); where Docker's FORWARD policy drops forwarded traffic, the chute networks
get accept rules of ours in DOCKER-USER (docker_forward.DockerForward).
"""
import ipaddress
import os
from pathlib import Path
from typing import Optional

from twisted.internet import defer
from zope.interface import implementer

from pdserver.sysconfig import dnsmasq, firewall, hostapd
from pdserver.sysconfig.interfaces import INetworkConfigurator
from pdserver.sysconfig.linknames import check_name
from pdserver.sysconfig.supervisor import ChildSpec

_HWMODES = {"11a": "a", "11b": "b", "11g": "g"}


def _netlink():
    """pyroute2 (about 23 MB resident) is imported by the first chute network, not at start."""
    from pdserver.sysconfig import netlink
    return netlink


def thd_write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def thd_remove_files(*paths: Path) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


@implementer(INetworkConfigurator)
class HostNetwork:
    def __init__(self, reactor, run_in_thread, supervisor, state_dir: Path, netns: Optional[str] = None,
                 network_manager=None, docker_forward=None):
        """``network_manager`` (NetworkManagerService) and ``docker_forward`` (DockerForward) are optional:
        without them the node does without NetworkManager and leaves iptables alone."""
        self._reactor = reactor
        self._nm = network_manager
        self._docker_forward = docker_forward
        self._in_thread = run_in_thread
        self._supervisor = supervisor
        self._netns = netns
        self._dir = state_dir / "sysconfig"
        self._ctrl_dir = state_dir / "run" / "hostapd"
        self._firewall = firewall.NftFirewall(reactor, netns=netns)
        self._firewall_state = None

    def _prepare(self):
        for directory in (self._dir, self._ctrl_dir):
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _argv(self, argv) -> tuple:
        return tuple((["ip", "netns", "exec", self._netns] if self._netns else []) + list(argv))

    # -- links

    def _unmanaged(self, _, name):
        """Once a link exists, NetworkManager is told to leave it alone."""
        return self._nm.release(name) if self._nm else None

    def ensure_bridge(self, name, address):
        d = self._in_thread(_netlink().thd_ensure_bridge, name, ipaddress.IPv4Interface(address), self._netns)
        return d.addCallback(self._unmanaged, name)

    def ensure_vlan(self, parent, vlan_id, name, master):
        d = self._in_thread(_netlink().thd_ensure_vlan, parent, vlan_id, name, master, self._netns)
        return d.addCallback(self._unmanaged, name)

    def ensure_ap_interface(self, phy, name):
        d = self._in_thread(_netlink().thd_ensure_ap_interface, phy, name, self._netns)
        return d.addCallback(self._unmanaged, name)

    @defer.inlineCallbacks
    def set_master(self, link, master):
        """An existing port (a wired radio) into a bridge: taken from NetworkManager first; out of it: given back
        to NetworkManager if it managed the port before."""
        if master is None:
            yield self._in_thread(_netlink().thd_release, link, self._netns)
            if self._nm:
                yield self._nm.give_back(link)
            return
        yield self._unmanaged(None, check_name(link, "link"))
        yield self._in_thread(_netlink().thd_set_master, link, master, self._netns)

    def remove_link(self, name):
        d = self._in_thread(_netlink().thd_remove_link, name, self._netns)
        if self._nm:
            d.addCallback(lambda _: self._nm.forget(name))
        return d

    def attach_interface(self, pid, bridge, host_name, inner, address, mac):
        d = self._in_thread(_netlink().thd_attach_veth, bridge, host_name, pid, inner,
                            ipaddress.IPv4Interface(address), self._netns, mac)
        return d.addCallback(self._unmanaged, host_name)

    # -- radios (monitor interfaces): the whole radio moves; nothing of NetworkManager's in the container

    def give_radio(self, pid, phy, inner, frequency):
        return self._in_thread(_netlink().thd_give_radio, phy, pid, inner, frequency, self._netns)

    def release_radio(self, phy, pid):
        return self._in_thread(_netlink().thd_release_radio, phy, pid, self._netns)

    # -- DHCP

    def _lease_file(self, bridge) -> Path:
        return self._dir / f"{check_name(bridge, 'bridge')}.leases"

    @defer.inlineCallbacks
    def start_dhcp(self, child, bridge, address, start, limit, leasetime, dns):
        self._prepare()
        config = dnsmasq.DhcpConfig(interface=bridge, address=ipaddress.IPv4Interface(address), start=start,
                                    limit=limit, leasetime=leasetime, dns=tuple(dns),
                                    lease_file=self._lease_file(bridge))
        conf = self._dir / f"{child}.conf"
        text = dnsmasq.render(config)
        changed = not conf.exists() or conf.read_text() != text
        yield self._in_thread(thd_write_atomically, conf, text)
        spec = ChildSpec(child, self._argv(dnsmasq.argv(conf)))
        if changed:
            yield self._supervisor.remove(child)  # same argv, new file: start it again to read it
        yield self._supervisor.ensure(spec)

    @defer.inlineCallbacks
    def stop_dhcp(self, child, bridge):
        yield self._supervisor.remove(child)
        yield self._in_thread(thd_remove_files, self._dir / f"{child}.conf", self._lease_file(bridge))

    def leases(self, bridge):
        d = self._in_thread(dnsmasq.thd_read_leases, self._lease_file(bridge))
        d.addCallback(lambda leases: [{"expires": lease.expires, "mac_addr": lease.mac, "ip_addr": lease.ip,
                                       "hostname": lease.hostname, "client_id": lease.client_id}
                                      for lease in leases])
        return d

    # -- access points

    @defer.inlineCallbacks
    def start_ap(self, child, options):
        self._prepare()
        config = hostapd.ApConfig(
            interface=options["interface"], ssid=options["ssid"], ctrl_dir=self._ctrl_dir,
            driver=options.get("driver", "nl80211"), key=options.get("key"), hidden=options.get("hidden", False),
            isolate=options.get("isolate", False), maxassoc=options.get("maxassoc"),
            hwmode=_HWMODES.get(options.get("hwmode"), "g"), channel=options.get("channel") or 1,
            country=options.get("country"),
            bridge=options.get("bridge") if options.get("driver", "nl80211") == "nl80211" else None,
            nasid=options.get("nasid"), acct_server=options.get("acct_server"),
            acct_secret=options.get("acct_secret"), acct_interval=options.get("acct_interval"))
        conf = self._dir / f"{child}.conf"
        text = hostapd.render(config)
        changed = not conf.exists() or conf.read_text() != text
        yield self._in_thread(thd_write_atomically, conf, text)
        if changed:
            yield self._supervisor.remove(child)
        yield self._supervisor.ensure(ChildSpec(child, self._argv(hostapd.argv(conf))))

    @defer.inlineCallbacks
    def stop_ap(self, child):
        yield self._supervisor.remove(child)
        yield self._in_thread(thd_remove_files, self._dir / f"{child}.conf")

    def access_point(self, child):
        """A control client of the hostapd ``child`` runs (its config names the control socket)."""
        conf = self._dir / f"{child}.conf"
        if not conf.exists():
            return None
        interface = next((line.split("=", 1)[1] for line in conf.read_text().splitlines()
                          if line.startswith("interface=")), None)
        if interface is None:
            return None
        return hostapd.HostapdControl(self._reactor, str(self._ctrl_dir / interface), self._dir)

    # -- firewall

    def apply_firewall(self, wan, networks):
        state = firewall.FirewallState(
            wan=wan,
            networks=tuple(firewall.ChuteNet(chute=n["chute"], bridge=n["bridge"],
                                             subnet=ipaddress.IPv4Network(n["subnet"]),
                                             gateway=ipaddress.IPv4Address(n["gateway"])) for n in networks))
        d = self._firewall.apply(state)
        d.addCallback(lambda _: setattr(self, "_firewall_state", state))
        if state.networks:
            d.addCallback(lambda _: self._in_thread(_netlink().thd_enable_forwarding, self._netns))
        if self._docker_forward:
            d.addCallback(lambda _: self._docker_forward.sync(wan, [n.bridge for n in state.networks]))
        return d.addCallback(lambda _: None)

    @defer.inlineCallbacks
    def status(self):
        network_manager = (yield self._nm.status()) if self._nm else {"present": False}
        return {
            "netns": self._netns,
            "network_manager": network_manager,
            "forward": dict(self._docker_forward.state) if self._docker_forward else None,
            "children": {name: {"running": c.running, "pid": c.pid, "restarts": c.restarts,
                                "crash_loop": c.crash_loop, "last_exit": c.last_exit}
                         for name, c in self._supervisor.children().items()},
            "firewall": None if self._firewall_state is None else {
                "wan": self._firewall_state.wan, "networks": len(self._firewall_state.networks)}}
