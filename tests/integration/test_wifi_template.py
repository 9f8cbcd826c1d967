"""The project `pdtools chute init --template wifi` writes installs on a node (radio-less, as in
test_chute_networks.py), and its page lists a client that got a lease from the chute's access point."""
import pytest
import requests
from click.testing import CliRunner

from pdtools.main import pdtools
from tests.conftest import free_port, wait_until
from tests.integration.chute_helpers import install, unique
from tests.integration.network_helpers import lease, set_radios
from tests.netns import ip, lab  # noqa: F401 (lab is a fixture)

pytestmark = pytest.mark.docker


def test_the_wifi_template_installs_and_its_page_lists_a_clients_lease(lab, node_process_factory, tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_end = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    set_radios(session, url, ap_device)

    name, port = unique("wifi"), free_port()
    project = tmp_path / name
    result = CliRunner().invoke(pdtools, ["chute", "init", str(project), "--template", "wifi",
                                          "--host-port", str(port)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    change = install(session, url, project)
    assert change["state"] == "succeeded", change

    def page():
        try:
            answer = requests.get(f"http://127.0.0.1:{port}/", timeout=5)
        except requests.RequestException:
            return None
        return answer.text if answer.ok else None
    before = wait_until(page, timeout=20, message="the chute's page")
    assert "Clients of wlan0" in before and "error" not in before, before

    assert lease(client, client_end, tmp_path)
    address = ip("-4", "-o", "addr", "show", client_end, netns=client).stdout.split()[3].split("/")[0]
    mac = ip("-o", "link", "show", client_end, netns=client).stdout.split("link/ether ")[1].split()[0]
    listed = wait_until(lambda: (lambda text: text if text and address in text else None)(page()),
                        timeout=20, message="the client on the chute's page")
    assert mac in listed and "<h2>Stations</h2>" in listed
