"""First start of a node on a machine that is not a router: it writes a host config from the interfaces it finds,
claims none that carries an address or the default route, and changes nothing on them; the owner's explicit PUT
takes such an interface over, and later starts keep the owner's config."""
import ipaddress

import yaml

from tests.integration.chute_helpers import wait_change
from tests import netns
from tests.netns import ip

lab = netns.lab  # the fixture


def addresses(netns, link):
    return ip("-4", "-o", "addr", "show", link, netns=netns).stdout


def test_first_start_writes_a_host_config_that_claims_nothing_in_use(lab, node_process_factory):
    host, far = lab.netns("host"), lab.netns("far")
    used, used_far = lab.veth("used", peer_netns=far, host_netns=host)
    free, _ = lab.veth("free", peer_netns=far, host_netns=host)
    ip("addr", "add", "192.0.2.10/24", "dev", used, netns=host)
    ip("addr", "add", "192.0.2.1/24", "dev", used_far, netns=far)
    ip("route", "add", "default", "via", "192.0.2.1", netns=host)
    node = node_process_factory(PARADROP_NETWORK_NETNS=host)
    path = node.state_dir / "hostconfig.yaml"
    assert not path.exists()
    node.start()
    session, url = node.session(), node.url

    written = yaml.safe_load(path.read_text())
    assert session.get(f"{url}/api/v1/config/hostconfig").json() == written
    assert written["wan"] == {"interface": used}  # read only: no proto, the node never configures it
    assert used not in written["lan"]["interfaces"]
    assert not any(radio.get("interface") == used for radio in written["wifi"])
    lan = ipaddress.ip_network(f"{written['lan']['ipaddr']}/{written['lan']['netmask']}", strict=False)
    assert not lan.overlaps(ipaddress.ip_network("192.0.2.0/24"))
    # Nothing was applied: the used interface keeps its address and the default route, the free one stays bare.
    assert "192.0.2.10/24" in addresses(host, used) and addresses(host, free) == ""
    assert ip("route", "show", "default", netns=host).stdout.split()[:5] == ["default", "via", "192.0.2.1", "dev",
                                                                           used]
    assert ip("link", "show", used, netns=host).stdout.count("master") == 0

    # The owner takes the used interface over explicitly (a wired radio); later starts keep that config.
    taken = {**written, "wifi": [{"id": "radio0", "driver": "wired", "interface": used}]}
    answer = session.put(f"{url}/api/v1/config/hostconfig", json=taken)
    assert answer.status_code == 202, answer.text
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    node.stop()
    node.start()
    assert node.session().get(f"{url}/api/v1/config/hostconfig").json()["wifi"] == taken["wifi"]
    assert yaml.safe_load(path.read_text())["wifi"] == taken["wifi"]
