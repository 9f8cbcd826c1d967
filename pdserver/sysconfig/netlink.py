"""Links and addresses of chute networks through rtnetlink (pyroute2): bridges, VLANs, veths into containers.

Thread code (blocking netlink calls): every function opens its own socket, so calls from several pool threads
never share one. Each takes ``netns``: the named network namespace (``ip netns``) to work in, None for the
daemon's own; tests use it to run entirely inside namespaces they made. The ``ensure`` functions converge:
a second call with the same arguments (after a crash between steps, say) leaves the same state.
"""
import ctypes
import errno
import os
import subprocess
import re
import socket
import threading
import time
from contextlib import contextmanager
from ipaddress import IPv4Interface, ip_interface
from typing import Dict, Iterator, List, Optional, Tuple

from pyroute2 import IPRoute, IW
from pyroute2.netlink import NETLINK_GENERIC, NETLINK_ROUTE, NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.exceptions import NetlinkError
from pyroute2.netlink.nl80211 import NL80211_NAMES, nl80211cmd
from pyroute2.netns import NETNS_RUN_DIR

from pdserver.errors import Conflict, InvalidInput, NotFound, Unavailable
from pdserver.sysconfig.linknames import check_name

_IFF_UP = 0x1
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_ARPHRD_LOOPBACK = 772
_KINDS = {"bridge": "bridge", "vlan": "vlan", "veth": "veth"}
_LOCAL_TABLE = 255
# One veth attach at a time: a plan's step and the re-attach after an engine restart may give the same container
# its interface at once, and each would find the other's half-made pair or address.
_ATTACH_LOCK = threading.Lock()
# One radio move at a time, for the same reason: a plan's give and the re-attach after a restart race for it.
_RADIO_LOCK = threading.Lock()
_IFTYPE_MONITOR = 6  # NL80211_IFTYPE_MONITOR
RADIO_WAIT = 10.0  # how long a radio may take to come back from a namespace that died (seconds)
_CLONE_NEWNET = 0x40000000
_PROTOCOLS = {IPRoute: NETLINK_ROUTE, IW: NETLINK_GENERIC}
_libc = ctypes.CDLL(None, use_errno=True)
_RADIO_POLL = 0.05


def _open(cls, target: Optional[str]):
    """A pyroute2 socket in the named namespace or namespace file ``target`` (never created when missing)."""
    if target is None:
        return cls()
    try:
        return cls(fileno=_socket_in(target, _PROTOCOLS[cls]))
    except FileNotFoundError:
        raise NotFound(f"no network namespace {target}", field="netns") from None


def _socket_in(target: str, protocol: int) -> int:
    """The descriptor of a netlink socket made inside namespace ``target`` by a short-lived thread that enters
    it (setns moves only the calling thread, and the socket stays in the namespace it was made in). pyroute2's
    own way forks the daemon for this: a child forked from a process with threads can hang on a lock another
    thread held, and one that hangs answers its SIGTERM with Twisted's handler, so the parent's waitpid, and
    the change that called it, never returned."""
    path = target if "/" in target else f"{NETNS_RUN_DIR}/{target}"
    namespace = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    made: dict = {}

    def enter_and_open():
        try:
            if _libc.setns(namespace, _CLONE_NEWNET) != 0:
                code = ctypes.get_errno()
                raise OSError(code, f"cannot enter network namespace {target}: {os.strerror(code)}")
            made["fd"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                       protocol).detach()
        except OSError as e:
            made["error"] = e

    try:
        worker = threading.Thread(target=enter_and_open, name="pd-netns-socket", daemon=True)
        worker.start()
        worker.join()
    finally:
        os.close(namespace)
    if "error" in made:
        raise made["error"]
    return made["fd"]


@contextmanager
def _rtnl(netns: Optional[str] = None, path: Optional[str] = None) -> Iterator[IPRoute]:
    """An rtnetlink socket in the named namespace (or the namespace file ``path``)."""
    ipr = _open(IPRoute, path or netns)
    try:
        yield ipr
    finally:
        ipr.close()


def _index(ipr: IPRoute, name: str) -> Optional[int]:
    found = ipr.link_lookup(ifname=name)
    return found[0] if found else None


def _require(ipr: IPRoute, name: str, field: str) -> int:
    index = _index(ipr, name)
    if index is None:
        raise NotFound(f"no interface {name}", field=field)
    return index


def _link(ipr: IPRoute, index: int):
    return ipr.get_links(index)[0]


def _kind(link) -> Optional[str]:
    return link.get_nested("IFLA_LINKINFO", "IFLA_INFO_KIND")


def _add_link(ipr: IPRoute, **spec) -> None:
    try:
        ipr.link("add", **spec)
    except NetlinkError as e:
        if e.code != errno.EEXIST:  # a concurrent or earlier call made it: the caller checks what is there
            raise


def _set_address(ipr: IPRoute, index: int, address: IPv4Interface) -> None:
    """``address`` as the link's only IPv4 address."""
    present = False
    for msg in ipr.get_addr(family=socket.AF_INET, index=index):
        current = ip_interface(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        if current == address:
            present = True
        else:
            ipr.addr("del", index=index, address=str(current.ip), prefixlen=current.network.prefixlen)
    if not present:
        ipr.addr("add", index=index, address=str(address.ip), prefixlen=address.network.prefixlen,
                 broadcast=str(address.network.broadcast_address))


def thd_ensure_bridge(name: str, address: IPv4Interface, netns: Optional[str] = None) -> None:
    """A bridge ``name`` carrying ``address`` (its only IPv4 address), up."""
    check_name(name)
    with _rtnl(netns) as ipr:
        if _index(ipr, name) is None:
            _add_link(ipr, ifname=name, kind="bridge")
        index = _require(ipr, name, "name")
        if _kind(_link(ipr, index)) != "bridge":
            raise Conflict(f"{name} exists and is not a bridge", field="name")
        _set_address(ipr, index, address)
        ipr.link("set", index=index, state="up")


def thd_ensure_vlan(parent: str, vlan_id: int, name: str, master: Optional[str] = None,
                    netns: Optional[str] = None) -> None:
    """A VLAN subinterface ``name`` of ``parent`` tagged ``vlan_id``, up, in the bridge ``master`` when given."""
    check_name(parent, "parent")
    check_name(name)
    if isinstance(vlan_id, bool) or not isinstance(vlan_id, int) or not 1 <= vlan_id <= 4094:
        raise InvalidInput(f"VLAN id {vlan_id!r} is not between 1 and 4094", field="vlan-id")
    with _rtnl(netns) as ipr:
        parent_index = _require(ipr, parent, "parent")
        if _index(ipr, name) is None:
            try:
                _add_link(ipr, ifname=name, kind="vlan", link=parent_index, vlan_id=vlan_id)
            except NetlinkError as e:
                if e.code == errno.EOPNOTSUPP:
                    raise Unavailable("this kernel has no 802.1Q VLAN support", field="vlan-id") from None
                raise
        index = _require(ipr, name, "name")
        link = _link(ipr, index)
        same = (_kind(link) == "vlan" and link.get_attr("IFLA_LINK") == parent_index
                and link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_VLAN_ID") == vlan_id)
        if not same:
            raise Conflict(f"{name} exists and is not VLAN {vlan_id} of {parent}", field="name")
        if master is not None:
            ipr.link("set", index=index, master=_require(ipr, check_name(master, "master"), "master"))
        ipr.link("set", index=index, state="up")


def thd_set_master(link: str, bridge: str, netns: Optional[str] = None) -> None:
    """Enslave an existing link (an AP interface) to ``bridge`` and bring it up."""
    with _rtnl(netns) as ipr:
        index = _require(ipr, check_name(link, "link"), "link")
        bridge_index = _require(ipr, check_name(bridge, "bridge"), "bridge")
        ipr.link("set", index=index, master=bridge_index)
        ipr.link("set", index=index, state="up")


def _netns_path(pid: int) -> str:
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        raise InvalidInput(f"{pid!r} is not a process id", field="pid")
    path = f"/proc/{pid}/ns/net"
    if not os.path.exists(path):
        raise NotFound(f"no process {pid}", field="pid")
    return path


def thd_attach_veth(bridge: str, host_name: str, pid: int, inner_name: str, address: IPv4Interface,
                    netns: Optional[str] = None, mac: Optional[str] = None) -> None:
    """A veth from ``bridge`` into the network namespace of process ``pid`` (a container's): the host end
    ``host_name`` in the bridge, the other end named ``inner_name`` there with ``address`` (and the MAC address
    ``mac`` when given), both up.

    The peer is created directly in the target namespace under its final name, so ``inner_name`` never
    collides with a link of the host. Idempotent: an existing pair is checked and completed.
    """
    for value, field in ((bridge, "bridge"), (host_name, "host_name"), (inner_name, "inner_name")):
        check_name(value, field)
    target = _netns_path(pid)
    with _ATTACH_LOCK, _rtnl(netns) as ipr, _rtnl(path=target) as inner:
        bridge_index = _require(ipr, bridge, "bridge")
        host_index, inner_index = _index(ipr, host_name), _index(inner, inner_name)
        if host_index is not None and inner_index is None:
            ipr.link("del", index=host_index)  # a host end whose peer is elsewhere: make the pair again
            host_index = None
        if host_index is None:
            if inner_index is not None:
                raise Conflict(f"process {pid} already has an interface {inner_name}", field="inner_name")
            _add_link(ipr, ifname=host_name, kind="veth", peer={"ifname": inner_name, "net_ns_pid": pid})
            host_index, inner_index = _require(ipr, host_name, "host_name"), _require(inner, inner_name, "inner_name")
        if _kind(_link(inner, inner_index)) != "veth":
            raise Conflict(f"{inner_name} in process {pid} is not a veth", field="inner_name")
        if mac is not None and _link(inner, inner_index).get_attr("IFLA_ADDRESS") != mac:
            inner.link("set", index=inner_index, address=_check_mac(mac))
        ipr.link("set", index=host_index, master=bridge_index)
        ipr.link("set", index=host_index, state="up")
        _set_address(inner, inner_index, address)
        inner.link("set", index=inner_index, state="up")


def _check_mac(mac: str) -> str:
    if not isinstance(mac, str) or not _MAC.fullmatch(mac) or int(mac[:2], 16) & 1:
        raise InvalidInput(f"{mac!r} is not a unicast MAC address", field="mac")
    return mac


def thd_remove_link(name: str, netns: Optional[str] = None) -> None:
    """Delete the link ``name`` (a veth's peer goes with it); an absent link is fine."""
    check_name(name)
    with _rtnl(netns) as ipr:
        index = _index(ipr, name)
        if index is None:
            return
        try:
            ipr.link("del", index=index)
        except NetlinkError as e:
            if e.code == errno.EOPNOTSUPP:  # a Wi-Fi interface (an AP's): cfg80211 removes it only through nl80211
                _remove_wireless_interface(index, netns)
            elif e.code != errno.ENODEV:
                raise


def _remove_wireless_interface(index: int, netns: Optional[str]) -> None:
    iw = _open(IW, netns)
    try:
        iw.del_interface(index)
    except NetlinkError as e:
        if e.code != errno.ENODEV:
            raise
    finally:
        iw.close()


def _default_route_links(ipr: IPRoute) -> set:
    """Indexes of the links any default route (IPv4 or IPv6, any table but the local one) leaves through."""
    out = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.get_routes(family=family):
            if route["dst_len"] != 0 or route.get_attr("RTA_TABLE", route["table"]) == _LOCAL_TABLE:
                continue
            if route.get_attr("RTA_OIF") is not None:
                out.add(route.get_attr("RTA_OIF"))
            for hop in route.get_attr("RTA_MULTIPATH") or ():
                out.add(hop["oif"])
    return out


def _radios(netns: Optional[str]) -> Dict[int, str]:
    """Link index -> wiphy name of the Wi-Fi interfaces (nl80211); none where the kernel has no nl80211."""
    try:
        iw = _open(IW, netns)
    except NetlinkError as e:
        if e.code == errno.ENOENT:  # no nl80211 family: a kernel without wireless support
            return {}
        raise
    try:
        phys = {msg.get_attr("NL80211_ATTR_WIPHY"): msg.get_attr("NL80211_ATTR_WIPHY_NAME")
                for msg in iw.list_wiphy()}
        return {msg.get_attr("NL80211_ATTR_IFINDEX"): phys.get(msg.get_attr("NL80211_ATTR_WIPHY"))
                for msg in iw.get_interfaces_dump()}
    finally:
        iw.close()


def _device_kind(link, radios: Dict[int, str]) -> str:
    if link["ifi_type"] == _ARPHRD_LOOPBACK:
        return "loopback"
    if link["index"] in radios:
        return "wifi"
    kind = _kind(link)
    if kind is None and link["ifi_type"] == 1:  # ARPHRD_ETHER without a link kind: a physical NIC
        return "ethernet"
    return _KINDS.get(kind, "other")


def thd_devices(netns: Optional[str] = None) -> List[dict]:
    """Every link with its kind (ethernet, wifi, bridge, vlan, veth, loopback, other), MAC, addresses
    (``ip/prefix``, IPv4 and IPv6), state, bridge master, whether a default route leaves through it, and its
    radio (wiphy) for Wi-Fi interfaces. Sorted by name."""
    radios = _radios(netns)
    with _rtnl(netns) as ipr:
        links = list(ipr.get_links())
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in links}
        addresses: Dict[int, List[str]] = {}
        for msg in ipr.get_addr():
            addresses.setdefault(msg["index"], []).append(f"{msg.get_attr('IFA_ADDRESS')}/{msg['prefixlen']}")
        default = _default_route_links(ipr)
    devices = []
    for link in links:
        index = link["index"]
        devices.append({
            "name": names[index], "kind": _device_kind(link, radios), "mac": link.get_attr("IFLA_ADDRESS"),
            "addresses": addresses.get(index, []), "up": bool(link["flags"] & _IFF_UP),
            "master": names.get(link.get_attr("IFLA_MASTER")), "default_route": index in default,
            "phy": radios.get(index),
        })
    return sorted(devices, key=lambda d: d["name"])


def thd_release(link: str, netns: Optional[str] = None) -> None:
    """Take ``link`` out of its bridge (an AP device the chute network held); an absent link is fine."""
    with _rtnl(netns) as ipr:
        index = _index(ipr, check_name(link, "link"))
        if index is not None:
            ipr.link("set", index=index, master=0)


def thd_ensure_ap_interface(phy: str, name: str, netns: Optional[str] = None) -> None:
    """An AP-mode (``__ap``) interface ``name`` on radio ``phy``, added with iw (nl80211); idempotent."""
    check_name(phy, "phy")
    check_name(name)
    with _rtnl(netns) as ipr:
        if _index(ipr, name) is not None:
            return
    argv = (["ip", "netns", "exec", netns] if netns else []) + ["iw", "phy", phy, "interface", "add", name,
                                                                  "type", "__ap"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise Unavailable(f"cannot add an AP interface on radio {phy}: {done.stderr.strip()[:200]}", field="wifi")


def thd_enable_forwarding(netns: Optional[str] = None) -> None:
    """IPv4 forwarding on (a router's chute networks reach the WAN through it); a no-op when it is on."""
    if netns is None:
        path = "/proc/sys/net/ipv4/ip_forward"
        with open(path) as f:
            if f.read().strip() == "1":
                return
        with open(path, "w") as f:
            f.write("1\n")
        return
    done = subprocess.run(["ip", "netns", "exec", netns, "sysctl", "-qw",
                           "net.ipv4.ip_forward=1"], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise Unavailable(f"cannot turn IPv4 forwarding on: {done.stderr.strip()[:200]}", field="netns")


# -- radios given whole to a container (monitor interfaces)

@contextmanager
def _nl80211(target: Optional[str]) -> Iterator[IW]:
    """An nl80211 socket in the named namespace or namespace file ``target`` (None: the daemon's own)."""
    try:
        iw = _open(IW, target)
    except NetlinkError as e:
        if e.code == errno.ENOENT:  # no nl80211 family: a kernel without wireless support
            raise Unavailable("this kernel has no wireless (nl80211) support", field="wifi") from None
        raise
    try:
        yield iw
    finally:
        iw.close()


def _wiphy(iw: IW, phy: str) -> Optional[int]:
    """The index of radio ``phy`` in the namespace of ``iw``; None when it is not there."""
    for msg in iw.list_wiphy():
        if msg.get_attr("NL80211_ATTR_WIPHY_NAME") == phy:
            return msg.get_attr("NL80211_ATTR_WIPHY")
    return None


def _wireless_interfaces(iw: IW, wiphy: int) -> List[Tuple[int, str, int]]:
    """(ifindex, name, nl80211 interface type) of the network interfaces on radio ``wiphy``."""
    return [(m.get_attr("NL80211_ATTR_IFINDEX"), m.get_attr("NL80211_ATTR_IFNAME"), m.get_attr("NL80211_ATTR_IFTYPE"))
            for m in iw.get_interfaces_dump()
            if m.get_attr("NL80211_ATTR_WIPHY") == wiphy and m.get_attr("NL80211_ATTR_IFINDEX")]


def _netns_file(netns: Optional[str]) -> str:
    """The file of the named namespace, or of the daemon's own (None)."""
    return f"/proc/{os.getpid()}/ns/net" if netns is None else f"{NETNS_RUN_DIR}/{netns}"


def _has_radio(target: str, phy: str) -> bool:
    with _nl80211(target) as iw:
        return _wiphy(iw, phy) is not None


def _move_radio(phy: str, source: Optional[str], target_file: str) -> bool:
    """Move radio ``phy`` with all its interfaces from ``source`` (a namespace name or file, None: the
    daemon's) into the namespace of ``target_file``; False when ``source`` does not have it."""
    with _nl80211(source) as iw:
        index = _wiphy(iw, phy)
        if index is None:
            return False
        fd = os.open(target_file, os.O_RDONLY)
        try:
            iw.set_wiphy_netns_by_fd(index, fd)
        except NetlinkError as e:
            if e.code == errno.EOPNOTSUPP:
                raise Unavailable(f"radio {phy} cannot change network namespace (its driver does not allow it)",
                                  field="wifi") from None
            if e.code not in (errno.ENODEV, errno.ENOENT):  # gone meanwhile: the caller looks again
                raise
            return False
        finally:
            os.close(fd)
    return True


def _bring(phy: str, target_file: str, sources: List[Optional[str]], wait: float) -> None:
    """Radio ``phy`` into the namespace of ``target_file`` from one of ``sources``. A namespace that dies hands
    its radios to the initial namespace a moment later, so a radio found nowhere is looked for until ``wait``
    seconds have passed."""
    deadline = time.monotonic() + wait
    while not _has_radio(target_file, phy):
        if any(_move_radio(phy, source, target_file) for source in sources):
            continue
        if time.monotonic() >= deadline:
            raise Unavailable(f"radio {phy} is not in the node's network namespace and did not come back within "
                              f"{wait:g} s (another namespace holds it, or it is gone)", field="wifi")
        time.sleep(_RADIO_POLL)


def _set_frequency(iw: IW, ifindex: int, frequency: int) -> None:
    msg = nl80211cmd()
    msg["cmd"] = NL80211_NAMES["NL80211_CMD_SET_WIPHY"]
    msg["attrs"] = [["NL80211_ATTR_IFINDEX", ifindex], ["NL80211_ATTR_WIPHY_FREQ", frequency]]
    try:
        tuple(iw.nlm_request(msg, msg_type=iw.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK))
    except NetlinkError as e:
        raise Unavailable(f"the monitor interface cannot listen on {frequency} MHz: {os.strerror(e.code)}",
                          field="wifi") from None


def _ensure_monitor(iw: IW, ipr: IPRoute, phy: str, inner: str, frequency: int) -> None:
    """A monitor interface ``inner`` on ``phy``, up; tuned to ``frequency`` when it is made or comes back
    (one already up is left on the channel the chute chose)."""
    wiphy = _wiphy(iw, phy)
    interfaces = _wireless_interfaces(iw, wiphy)
    mine = [i for i in interfaces if i[1] == inner]
    if mine and mine[0][2] == _IFTYPE_MONITOR and _link(ipr, mine[0][0])["flags"] & _IFF_UP:
        return
    if not mine:
        if _index(ipr, inner) is not None:
            raise Conflict(f"the container already has an interface {inner}", field="inner_name")
        monitors = [i for i in interfaces if i[2] == _IFTYPE_MONITOR]
        if monitors:  # the one it had before its last namespace died, under its name then
            ipr.link("set", index=monitors[0][0], state="down")
            ipr.link("set", index=monitors[0][0], ifname=inner)
        else:
            iw.add_interface(inner, "monitor", phy=wiphy)
    elif mine[0][2] != _IFTYPE_MONITOR:
        ipr.link("set", index=mine[0][0], state="down")
        iw.set_interface_type(mine[0][0], "monitor")
    index = _require(ipr, inner, "inner_name")
    ipr.link("set", index=index, state="up")
    _set_frequency(iw, index, frequency)


def _check_frequency(frequency: int) -> int:
    if isinstance(frequency, bool) or not isinstance(frequency, int) or not 2400 <= frequency <= 7125:
        raise InvalidInput(f"{frequency!r} is not a Wi-Fi frequency in MHz", field="frequency")
    return frequency


def thd_give_radio(phy: str, pid: int, inner: str, frequency: int, netns: Optional[str] = None,
                   wait: float = RADIO_WAIT) -> None:
    """Radio ``phy`` with its interfaces into the network namespace of process ``pid`` (a container's), found
    in ``netns`` (the node's) or, back from a namespace that died, in the daemon's own; there, a monitor
    interface ``inner`` on it, up, listening on ``frequency`` MHz. Idempotent."""
    check_name(phy, "phy")
    check_name(inner, "inner_name")
    _check_frequency(frequency)
    target = _netns_path(pid)
    with _RADIO_LOCK:
        _bring(phy, target, [netns] if netns is None else [netns, None], wait)
        with _nl80211(target) as iw, _rtnl(path=target) as ipr:
            _ensure_monitor(iw, ipr, phy, inner, frequency)


def thd_release_radio(phy: str, pid: Optional[int] = None, netns: Optional[str] = None,
                      wait: float = RADIO_WAIT) -> None:
    """Radio ``phy`` back in ``netns`` (the node's namespace, None: the daemon's) with no monitor interface
    on it: taken from the namespace of process ``pid`` while that runs; without a process, waited for (a
    namespace that dies gives it to the initial namespace, from where it is moved home). Idempotent."""
    check_name(phy, "phy")
    home = _netns_file(netns)
    sources = [] if netns is None else [None]
    with _RADIO_LOCK:
        if pid is not None:
            try:
                _move_radio(phy, _netns_path(pid), home)
            except NotFound:
                pid = None  # the process ended meanwhile: its namespace gives the radio back
        if pid is not None and not _has_radio(home, phy) and not any(_has_radio(s, phy) for s in sources):
            return  # the running container does not hold it, and no namespace of its is dying
        _bring(phy, home, sources, wait)
        with _nl80211(netns) as iw:
            for ifindex, _, kind in _wireless_interfaces(iw, _wiphy(iw, phy)):
                if kind == _IFTYPE_MONITOR:
                    try:
                        iw.del_interface(ifindex)
                    except NetlinkError as e:
                        if e.code != errno.ENODEV:
                            raise
