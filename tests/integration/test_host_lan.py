"""The host config's LAN applied for real, inside a namespace the test made: a PUT bridges the named port,
addresses it and serves DHCP on it; a client on the port gets a lease and shows in /network/devices; a PUT
without LAN ports takes it all down again."""
from tests.integration.chute_helpers import wait_change
from tests.integration.network_helpers import lease
from tests.netns import ip, lab  # noqa: F401 (lab is a fixture)


def put_hostconfig(session, url, config):
    answer = session.put(f"{url}/api/v1/config/hostconfig", json=config)
    assert answer.status_code == 202, answer.text
    change = wait_change(session, url, answer.json()["change_id"])
    assert change["state"] == "succeeded", change


def test_the_lan_of_the_host_config_is_applied_and_taken_back(lab, node_process_factory, tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    port, client_end = lab.veth("lan", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    config = session.get(f"{url}/api/v1/config/hostconfig").json()
    config["lan"] = {**config["lan"], "interfaces": [port], "ipaddr": "192.168.77.1", "netmask": "255.255.255.0",
                     "dhcp": {"start": 100, "limit": 10, "leasetime": "1h"}}
    put_hostconfig(session, url, config)

    assert lease(client, client_end, tmp_path)
    addresses = ip("-4", "addr", "show", client_end, netns=client).stdout
    assert any(f"inet 192.168.77.{n}/24" in addresses for n in range(100, 110)), addresses
    devices = session.get(f"{url}/api/v1/network/devices").json()
    assert [(d["network"], d["ip_addr"].rsplit(".", 1)[0]) for d in devices] == [("lan", "192.168.77")], devices
    links = ip("-o", "link", "show", netns=router).stdout
    assert f"{port}@" in links and "master pb" in links

    config["lan"]["interfaces"] = []
    put_hostconfig(session, url, config)
    links = ip("-o", "link", "show", netns=router).stdout
    assert "master" not in links and " pb" not in links, links
    assert ip("netns", "pids", router).stdout.split() == []
