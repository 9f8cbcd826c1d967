"""pdconf's sections (ParaDrop's shape, what pdtools 0.13.2 prints) and the merged lease list of /network/devices."""
from pdserver.api import pdconf
from pdserver.api.network import merge_leases
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.networks import configured_networks
from pdserver.chutes.store import ChuteRecord
from pdserver.sysconfig import hostconfig

# pdtools 0.13.2, pdtools/node.py print_pdconf: one line per section, sorted by age.
PDTOOLS_LINE = "{age:<3d} {type:12s} {name:20s} {comment:30s} {success}"
NAMES = ChuteNames("node-1")


def record(name, interfaces, networks):
    description = {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": "busybox", "command": "sleep 1", "interfaces": interfaces}}}
    return ChuteRecord(name=name, version="1", state="running", description=description, deployment=1,
                       source_dir=None, installed=0.0, updated=0.0, volume=f"{name}-data", networks=networks)


AP = record("ap", {"wlan0": {"type": "wifi-ap", "dhcp": {"start": 10, "limit": 20, "leasetime": "1h"},
                             "wireless": {"ssid": "x"}}},
            {"main.wlan0": {"subnet": "10.128.0.0/24", "radio": "radio0"}})
BARE = record("bare", {"wlan0": {"type": "wifi-ap", "wireless": {"ssid": "y"}}},
              {"main.wlan0": {"subnet": "10.128.1.0/24", "radio": "radio1"}})


def child(running=True, restarts=0, crash_loop=False, pid=42):
    return {"running": running, "pid": pid if running else None, "restarts": restarts, "crash_loop": crash_loop,
            "last_exit": None if not restarts else "exit 1"}


def host_config():
    return {**hostconfig.DEFAULT, "lan": {**hostconfig.DEFAULT["lan"], "interfaces": ["eth1"]},
            "wifi": [{"id": "radio0", "driver": "wired", "interface": "veth0"}]}


def by_name(sections):
    return {s["name"]: s for s in sections}


def test_configured_networks_name_the_bridge_and_the_children_that_serve_it():
    ap, bare = configured_networks(NAMES, [AP, BARE])
    assert (ap.chute, ap.interface, ap.type, ap.subnet, ap.radio) == ("ap", "wlan0", "wifi-ap", "10.128.0.0/24",
                                                                     "radio0")
    assert ap.children == (f"dnsmasq-{ap.bridge}", f"hostapd-{ap.bridge}") and ap.dhcp
    assert bare.children == (f"hostapd-{bare.bridge}",) and not bare.dhcp


def test_every_section_prints_in_pdtools_describe_pdconf():
    [net] = configured_networks(NAMES, [AP])
    status = {"netns": None, "children": {c: child() for c in net.children}, "firewall": {"wan": "eth0",
                                                                                         "networks": 1}}
    sections = pdconf.sections(status, [net], host_config())
    assert [(s["type"], s["name"], s["comment"], s["success"]) for s in sections] == [
        ("interface", "lan", "hostconfig", True), ("interface", "wan", "hostconfig", True),
        ("wifi-device", "radio0", "hostconfig", True), ("interface", net.bridge, "ap", True),
        ("dnsmasq", f"dnsmasq-{net.bridge}", "ap", True), ("wifi-iface", f"hostapd-{net.bridge}", "ap", True),
        ("firewall", "paradrop", "nftables", True)]
    for section in sections:
        assert PDTOOLS_LINE.format(**section).startswith("0   ")


def test_a_crash_loop_and_a_missing_child_fail_their_network_and_an_unapplied_firewall_fails():
    ap, bare = configured_networks(NAMES, [AP, BARE])
    status = {"children": {ap.children[0]: child(running=False, restarts=5, crash_loop=True),
                           ap.children[1]: child(), "dnsmasq-stray": child()}, "firewall": None}
    sections = by_name(pdconf.sections(status, [ap, bare], {}))
    dhcp = sections[ap.children[0]]
    assert (dhcp["success"], dhcp["crash_loop"], dhcp["restarts"], dhcp["last_exit"]) == (False, True, 5, "exit 1")
    assert (sections[ap.bridge]["success"], sections[ap.bridge]["failing_children"]) == (False, [ap.children[0]])
    assert (sections[bare.bridge]["success"], sections[bare.bridge]["missing_children"]) == (
        False, [bare.children[0]])
    assert (sections["dnsmasq-stray"]["comment"], sections["dnsmasq-stray"]["success"]) == ("node", True)
    assert (sections["paradrop"]["comment"], sections["paradrop"]["success"]) == ("not applied", False)


def test_no_firewall_section_without_networks_and_networkmanager_as_the_configurator_reports_it():
    assert pdconf.sections({"children": {}, "firewall": None}, [], {}) == []
    for reported, comment, success in [({"present": False}, "not in use", True),
                                       ({"present": True, "unmanaged": ["pd1"]}, "in use", True),
                                       ({"present": True, "errors": {"pd1": "timed out"}}, "in use", False)]:
        [section] = pdconf.sections({"network_manager": reported}, [], {})
        assert (section["type"], section["name"], section["comment"], section["success"]) == (
            "networkmanager", "NetworkManager", comment, success)
        assert section["unmanaged"] == reported.get("unmanaged", []) and PDTOOLS_LINE.format(**section)


def test_devices_keep_one_lease_per_mac_the_one_that_expires_last():
    ap, bare = configured_networks(NAMES, [AP, BARE])

    def lease(mac, ip, expires):
        return {"expires": expires, "mac_addr": mac, "ip_addr": ip, "hostname": None, "client_id": None}

    merged = merge_leases([(ap, [lease("02:00:00:00:00:02", "10.128.0.10", 100),
                                 lease("02:00:00:00:00:01", "10.128.0.11", 100)]),
                           (bare, [lease("02:00:00:00:00:02", "10.128.1.10", 200),
                                   lease("02:00:00:00:00:01".upper(), "10.128.1.11", 0)])])
    assert [(d["mac_addr"], d["ip_addr"], d["chute"], d["network"]) for d in merged] == [
        ("02:00:00:00:00:01".upper(), "10.128.1.11", "bare", "wlan0"),
        ("02:00:00:00:00:02", "10.128.1.10", "bare", "wlan0")]
    assert merge_leases([]) == []
