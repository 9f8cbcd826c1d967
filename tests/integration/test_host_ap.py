"""The node's own access point (the host config's wifi-interfaces) for real, inside a namespace the test made:
the "radio" is a veth with hostapd's wired driver, bridged into the LAN, and a client on its other end gets a
LAN lease through it. A change that fails leaves the old access point, a restart brings it back, a PUT without
it takes it down; a chute cannot have its radio, and a PUT cannot take a chute's."""
import subprocess

from pdserver.sysconfig import hostapd
from tests.conftest import wait_until
from tests.integration.chute_helpers import unique, wait_change
from tests.integration.network_helpers import lease
from tests.integration.test_host_lan import put_hostconfig
from tests.netns import ip, lab  # noqa: F401 (lab is a fixture)

CHILD = "hostapd-host-radio0"


def hostapd_status(node, device):
    """hostapd's own STATUS through its control socket (the node's run dir), as a dict; {} while it is not up."""
    done = subprocess.run(["hostapd_cli", "-p", str(node.state_dir / "run" / "hostapd"), "-i", device, "status"],
                          capture_output=True, text=True, timeout=10)
    return hostapd.parse_status(done.stdout) if done.returncode == 0 else {}


def serving(node, device, ssid):
    status = hostapd_status(node, device)
    return status if status.get("state") == "ENABLED" and status.get("ssid") == ssid else None


def with_access_point(config, device, **extra):
    config = {**config, "wifi": [{"id": "radio0", "driver": "wired", "interface": device}],
              "wifi-interfaces": [{"device": "radio0", "mode": "ap", "network": "lan", "ssid": "Node AP",
                                   "encryption": "psk2", "key": "node-secret", **extra}]}
    config["lan"] = {**config["lan"], "interfaces": [], "ipaddr": "192.168.79.1", "netmask": "255.255.255.0",
                     "dhcp": {"start": 100, "limit": 10, "leasetime": "1h"}}
    return config


def in_lan(client, device):
    addresses = ip("-4", "addr", "show", device, netns=client).stdout
    return any(f"inet 192.168.79.{n}/24" in addresses for n in range(100, 110))


def test_the_node_access_point_serves_the_lan_survives_a_failed_change_and_a_restart_and_goes(
        lab, node_process_factory, tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    radio_port, client_end = lab.veth("hap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    config = with_access_point(session.get(f"{url}/api/v1/config/hostconfig").json(), radio_port)
    put_hostconfig(session, url, config)

    # a client behind the access point gets a LAN lease; hostapd serves it, and pdconf says so
    assert lease(client, client_end, tmp_path) and in_lan(client, client_end)
    assert "master pb" in ip("-o", "link", "show", radio_port, netns=router).stdout
    assert wait_until(lambda: serving(node, radio_port, "Node AP"), message="hostapd ENABLED")
    sections = session.get(f"{url}/api/v1/config/pdconf").json()
    [section] = [s for s in sections if s["name"] == CHILD]
    assert (section["type"], section["comment"], section["success"], section["running"]) == (
        "wifi-iface", "node", True, True), section

    # a chute asking for an access point finds no free radio: the node's own holds it
    chute = {"name": unique("ap"), "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": "sleep 100000",
        "interfaces": {"wlan0": {"type": "wifi-ap", "wireless": {"ssid": "Chute"}}}}}}
    answer = session.post(f"{url}/api/v1/chutes", json={"config": chute})
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["field"] == "services.main.interfaces.wlan0" and "the node's own access point" in error["message"]

    # a station (client) mode is refused clearly
    answer = session.put(f"{url}/api/v1/config/hostconfig", json=with_access_point(config, radio_port, mode="sta"))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["field"] == "wifi-interfaces[0].mode", answer.text

    # a change that fails halfway (a second access point on a radio that is not there) leaves the old one
    failing = with_access_point(config, radio_port, ssid="Renamed")
    failing["wifi"].append({"id": "nophy9"})
    failing["wifi-interfaces"].append({"device": "nophy9", "mode": "ap", "ssid": "Two"})
    answer = session.put(f"{url}/api/v1/config/hostconfig", json=failing)
    assert answer.status_code == 202, answer.text
    change = wait_change(session, url, answer.json()["change_id"])
    assert change["state"] == "failed" and "nophy9" in str(change), change
    assert wait_until(lambda: serving(node, radio_port, "Node AP"), message="the old access point back")
    assert session.get(f"{url}/api/v1/config/hostconfig").json()["wifi-interfaces"] == config["wifi-interfaces"]

    # a restart of the node sets it up again (reconcile), its children gone while it is down
    node.stop()
    assert ip("netns", "pids", router).stdout.split() == [], "children outlived the node"
    node.start()
    session = node.session()
    assert wait_until(lambda: serving(node, radio_port, "Node AP"), message="the access point after a restart")
    ip("addr", "flush", "dev", client_end, netns=client)
    assert lease(client, client_end, tmp_path) and in_lan(client, client_end)

    # taken out of the host config: no hostapd, the port out of the bridge, no LAN bridge (no LAN ports left)
    put_hostconfig(session, url, {**config, "wifi-interfaces": []})
    links = ip("-o", "link", "show", netns=router).stdout
    assert "master" not in links and " pb" not in links, links
    assert ip("netns", "pids", router).stdout.split() == []
    assert hostapd_status(node, radio_port) == {}


def test_a_put_that_takes_the_radio_of_a_chute_access_point_is_refused_naming_the_field(
        lab, node_process_factory):
    router, client = lab.netns("router"), lab.netns("client")
    radio_port, _ = lab.veth("hap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    config = with_access_point(session.get(f"{url}/api/v1/config/hostconfig").json(), radio_port)
    put_hostconfig(session, url, {**config, "wifi-interfaces": []})
    name = unique("ap")
    chute = {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": "sleep 100000",
        "interfaces": {"wlan0": {"type": "wifi-ap", "wireless": {"ssid": "Chute"}}}}}}
    answer = session.post(f"{url}/api/v1/chutes", json={"config": chute})
    assert answer.status_code == 202, answer.text
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"

    answer = session.put(f"{url}/api/v1/config/hostconfig", json=config)
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["field"] == "wifi-interfaces[0].device" and f"chute {name}" in error["message"], error
    assert hostapd_status(node, radio_port).get("ssid") == "Chute"  # the chute's access point is untouched

    answer = session.delete(f"{url}/api/v1/chutes/{name}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    put_hostconfig(session, url, config)  # the radio is free again
    assert wait_until(lambda: serving(node, radio_port, "Node AP"), message="the node's access point")
