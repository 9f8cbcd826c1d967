"""ParaDrop's own client, pdtools 0.13.2, reads a node's network configuration and a chute network's clients.

A chute with a Wi-Fi AP on a wired "radio" (hostapd's wired driver on a veth) runs in a lab namespace, as in
test_chute_networks; a client namespace on the veth's other end holds a DHCP lease. The old client then runs
describe-pdconf (ParaDrop's list of config sections, printed as a table), generate-configuration, list-devices
(ParaDrop 0.12+: the DHCP clients), list-chute-networks, list-chute-network-clients and
remove-chute-network-client. It exits 0 whatever the node answers and prints error bodies as YAML, so each
answer is checked for the data it must show.
"""
import contextlib
import json
import os
import signal
import subprocess

import yaml

from tests.conftest import wait_until
from tests.integration import test_pdtools_compat as compat
from tests.integration.chute_helpers import unique, write_project
from tests.integration.network_helpers import ap_chute, lease, set_radios
from tests.integration.test_pdtools_compat import pdtools_runner, progress_messages
from tests.netns import ip, lab, popen_in_netns  # noqa: F401 (lab is a fixture)

pytestmark = compat.pytestmark  # Docker, and pdtools 0.13.2 installed


def pdconf_rows(output):
    """pdtools' describe-pdconf table ("Age Type Name Comment Pass") as (type, name, comment, pass) tuples."""
    lines = output.splitlines()
    assert lines and lines[0].split() == ["Age", "Type", "Name", "Comment", "Pass"], output
    rows = []
    for line in lines[1:]:
        fields = line.split()
        assert fields[0] == "0", line
        rows.append((fields[1], fields[2], " ".join(fields[3:-1]), fields[-1]))
    return rows


@contextlib.contextmanager
def station(netns, interface, tmp_path):
    """wpa_supplicant on the client's wired port: its 802.1X EAPOL-Start makes hostapd's wired driver take the
    client's MAC address as a station (an open access point keeps it)."""
    conf = tmp_path / "supplicant.conf"
    conf.write_text('ap_scan=0\nnetwork={\n key_mgmt=IEEE8021X\n eap=MD5\n identity="client"\n'
                    ' password="client-password"\n}\n')
    proc = popen_in_netns(netns, "wpa_supplicant", "-D", "wired", "-i", interface, "-c", str(conf),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pdtools_0_13_reads_pdconf_devices_and_a_chute_network_s_clients(lab, node_process_factory, tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_end = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    old_pdtools = pdtools_runner(node, tmp_path)
    set_radios(session, url, ap_device)

    name = unique("compat-ap")
    project = write_project(tmp_path / "project", ap_chute(name, "pdtools compat"))
    install = old_pdtools("install-chute", "-d", str(project))
    assert progress_messages(install)[-1].endswith(f"succeeded: installed {name} 1"), install.stdout
    [network] = session.get(f"{url}/api/v1/chutes/{name}/networks").json()
    bridge = network["bridge"]
    assert lease(client, client_end, tmp_path)
    mac = ip("-j", "link", "show", client_end, netns=client).stdout
    mac = json.loads(mac)[0]["address"]
    address = json.loads(ip("-j", "-4", "addr", "show", client_end, netns=client).stdout)[0]["addr_info"][0]["local"]

    rows = pdconf_rows(old_pdtools("describe-pdconf").stdout)
    assert ("wifi-device", "radio0", "hostconfig", "True") in rows, rows
    assert ("interface", bridge, name, "True") in rows, rows
    assert ("dnsmasq", f"dnsmasq-{bridge}", name, "True") in rows, rows
    assert ("wifi-iface", f"hostapd-{bridge}", name, "True") in rows, rows
    assert ("firewall", "paradrop", "nftables", "True") in rows, rows

    generated = json.loads(old_pdtools("generate-configuration").stdout)
    assert generated == session.get(f"{url}/api/v1/config/new-config").json()

    devices = yaml.safe_load(old_pdtools("list-devices").stdout)
    assert [(d["mac_addr"], d["ip_addr"], d["chute"], d["network"]) for d in devices] == [
        (mac, address, name, "wlan0")], devices

    networks = yaml.safe_load(old_pdtools("list-chute-networks", name).stdout)
    assert [(n["name"], n["type"], n["bridge"]) for n in networks] == [("wlan0", "wifi-ap", bridge)], networks

    # a station: the supplicant's EAPOL-Start makes it one, and it stays one once the supplicant is gone
    with station(client, client_end, tmp_path):
        wait_until(lambda: api_stations(session, url, name), message="the station in the API")
    clients = yaml.safe_load(old_pdtools("list-chute-network-clients", name, "wlan0").stdout)
    assert [(c["mac"], c["flags"]) for c in clients] == [(mac, "[AUTHORIZED]")], clients
    removed = yaml.safe_load(old_pdtools("remove-chute-network-client", name, "wlan0", mac).stdout)
    assert removed == {"mac": mac, "removed": True}, removed
    # hostapd takes the station's authorization at once and forgets it 5 s later (AP_MAX_INACTIVITY_AFTER_DEAUTH)
    assert "AUTHORIZED" not in "".join(s["flags"] for s in api_stations(session, url, name))
    wait_until(lambda: api_stations(session, url, name) == [], timeout=15, message="the station gone")

    # pdconf follows the children: a dnsmasq killed -9 is back, with its restart counted
    [dhcp] = [s for s in api_pdconf(session, url) if s["name"] == f"dnsmasq-{bridge}"]
    os.kill(dhcp["pid"], signal.SIGKILL)
    back = wait_until(lambda: [s for s in api_pdconf(session, url) if s["name"] == dhcp["name"] and s["running"]
                               and s["pid"] != dhcp["pid"]], message="dnsmasq back in pdconf")
    assert (back[0]["restarts"], back[0]["success"], back[0]["crash_loop"]) == (1, True, False), back

    # removed: neither pdconf nor the device list knows the network any more
    remove = old_pdtools("remove-chute", name)
    assert progress_messages(remove)[-1].endswith(f"removed {name}"), remove.stdout
    assert [row for row in pdconf_rows(old_pdtools("describe-pdconf").stdout) if bridge in row[1]] == []
    assert old_pdtools("list-devices").stdout.strip() == ""


def api_stations(session, url, chute):
    return session.get(f"{url}/api/v1/chutes/{chute}/networks/wlan0/stations", timeout=10).json()


def api_pdconf(session, url):
    return session.get(f"{url}/api/v1/config/pdconf", timeout=10).json()
