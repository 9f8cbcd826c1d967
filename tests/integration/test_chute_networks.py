"""A chute's Wi-Fi access point end to end, radio-less: the node runs its chute networks inside a namespace
the test made (setting network_netns), the "radio" is a veth with hostapd's wired driver, and a client
namespace on the veth's other end gets a DHCP lease from the chute network's dnsmasq."""
import subprocess

from websockets.sync.client import connect

from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, unique, wait_change
from tests.integration.network_helpers import ap_chute, install, lease, set_radios
from tests.netns import in_netns, ip, lab  # noqa: F401 (lab is a fixture)


def test_a_chute_access_point_serves_dhcp_to_a_client_and_leaves_nothing_when_removed(lab, node_process_factory,
                                                                                      tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_end = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    set_radios(session, url, ap_device)

    name = unique("ap")
    install(session, url, ap_chute(name, "Hello chute", "secret-psk"))

    # a router forwards: the node turned IPv4 forwarding on where its chute networks are
    assert in_netns(router, "sysctl", "-n", "net.ipv4.ip_forward").stdout.strip() == "1"

    [network] = session.get(f"{url}/api/v1/chutes/{name}/networks").json()
    assert (network["name"], network["type"], network["radio"]) == ("wlan0", "wifi-ap", "radio0")
    subnet = network["subnet"]
    prefix = subnet.rsplit(".", 1)[0]

    # the chute's container has wlan0 with the network's second address
    inner = subprocess.run(["docker", "exec", container_of(name, "main"), "ip", "-4", "addr", "show", "wlan0"],
                           capture_output=True, text=True)
    assert f"inet {prefix}.2/24" in inner.stdout, inner.stdout + inner.stderr

    # a client on the "radio" gets a lease in the chute's range, sees it in the API, and reaches the chute
    assert lease(client, client_end, tmp_path)
    addresses = ip("-4", "addr", "show", client_end, netns=client).stdout
    assert any(f"inet {prefix}.{n}/24" in addresses for n in range(10, 30)), addresses
    leases = wait_until(lambda: session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/leases").json(),
                        message="the lease in the API")
    assert leases[0]["ip_addr"].startswith(prefix + ".")
    assert in_netns(client, "ping", "-c", "1", "-W", "2", f"{prefix}.2").returncode == 0

    # hostapd reports the access point; an SSID change goes through a change and reads back
    status = session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/hostapd_status").json()
    assert status["state"] == "ENABLED" and status["ssid"] == "Hello chute", status
    answer = session.put(f"{url}/api/v1/chutes/{name}/networks/wlan0/ssid", json={"ssid": "Renamed"})
    assert answer.status_code == 202, answer.text
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    assert session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/ssid").json() == {"ssid": "Renamed"}
    status = wait_until(lambda: (lambda s: s if s.get("ssid") == "Renamed" else None)(
        session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/hostapd_status").json()), message="new SSID")
    assert status["state"] == "ENABLED"
    # the SSID change was an update (a new container): its wlan0 has the old MAC address, so the client's ARP
    # entry still holds and the chute answers at once
    assert in_netns(client, "ping", "-c", "1", "-W", "2", f"{prefix}.2").returncode == 0

    # a restart of the node brings the network back as recorded, with the new SSID
    node.stop()
    assert ip("netns", "pids", router).stdout.split() == [], "children outlived the node"
    node.start()
    session = node.session()
    status = wait_until(lambda: (lambda s: s if s.get("state") == "ENABLED" else None)(
        session.get(f"{url}/api/v1/chutes/{name}/networks/wlan0/hostapd_status").json()), message="AP after restart")
    assert status["ssid"] == "Renamed"
    assert wait_until(lambda: in_netns(client, "ping", "-c", "1", "-W", "1", f"{prefix}.2").returncode == 0,
                      message="the chute again after the restart")

    # the hostapd control websocket answers whitelisted commands only
    ws_url = url.replace("http://", "ws://") + f"/api/v1/chutes/{name}/networks/wlan0/hostapd_control/ws"
    with connect(ws_url, additional_headers={"Authorization": session.headers["Authorization"]}) as ws:
        ws.send("STATUS")
        assert "state=ENABLED" in ws.recv(timeout=10)
        ws.send("SET ssid2 41")
        assert ws.recv(timeout=10).startswith("FAIL allowed commands")
        ws.send("STATUS\nRELOAD")
        assert ws.recv(timeout=10).startswith("FAIL")
        ws.send("STA " + "a" * 300)
        assert ws.recv(timeout=10).startswith("FAIL commands are text of at most")

    # hostile input on the network routes: a 4xx naming the field, nothing changed
    base = f"{url}/api/v1/chutes/{name}/networks"
    for method, path, body, status, field in [
            ("PUT", "/wlan0/ssid", {"ssid": "x" * 33}, 400, "ssid"),
            ("PUT", "/wlan0/ssid", {"ssid": "ok", "key": "extra"}, 400, "key"),
            ("DELETE", "/wlan0/stations/not-a-mac", None, 400, "mac"),
            ("GET", "/wlan0/stations/02:00:00:00:00:99", None, 404, "mac"),
            ("GET", "/nope/leases", None, 404, "network")]:
        answer = session.request(method, base + path, json=body)
        assert (answer.status_code, answer.json()["error"]["field"]) == (status, field), (path, answer.text)
    assert session.get(f"{base}/wlan0/ssid").json() == {"ssid": "Renamed"}

    # removed: no bridge, no child process, no config or lease file
    answer = session.delete(f"{url}/api/v1/chutes/{name}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    links = ip("-o", "link", "show", netns=router).stdout
    assert network["bridge"] not in links, links
    assert ip("netns", "pids", router).stdout.split() == []
    assert list((node.state_dir / "sysconfig").iterdir()) == []


def test_a_monitor_interface_on_a_node_whose_radio_is_wired_is_refused_naming_the_interface(lab,
                                                                                             node_process_factory):
    router = lab.netns("router")
    ap_device, _ = lab.veth("ap", peer_netns=lab.netns("client"), host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    set_radios(session, url, ap_device)
    config = {"name": unique("mon"), "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": "sleep 100000",
        "interfaces": {"mon0": {"type": "monitor"}}}}}
    answer = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert answer.status_code == 409, answer.text
    error = answer.json()["error"]
    assert error["field"] == "services.main.interfaces.mon0" and "radio0 is wired" in error["message"], error
    assert session.get(f"{url}/api/v1/chutes").json() == []
