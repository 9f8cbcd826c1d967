"""A node process whose chute networks live in the namespace a real NetworkManager runs in (tests/nm_lab.py), its
bus given by PARADROP_DBUS_SYSTEM_ADDRESS: a Wi-Fi AP chute on a wired radio gets its network, NetworkManager
reports every link of it unmanaged and does not fight the node (a client gets its lease), and the radio is
NetworkManager's again once the chute is gone."""
import os
import subprocess

from tests import nm_lab
from tests.conftest import wait_until
from tests.integration.chute_helpers import unique, wait_change
from tests.integration.network_helpers import ap_chute, install, lease, set_radios
from tests.netns import ip

lab, short_tmp, network_manager = nm_lab.lab, nm_lab.short_tmp, nm_lab.network_manager  # fixtures


def nm_states(nm) -> dict:
    out = subprocess.run(["nmcli", "-t", "-f", "DEVICE,STATE", "device"], capture_output=True, text=True,
                         env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=nm.bus_address), check=True)
    return dict(line.split(":", 1) for line in out.stdout.splitlines())


def test_a_chute_network_is_unmanaged_in_networkmanager_and_its_radio_given_back(network_manager,
                                                                                  node_process_factory, tmp_path):
    radio, client_ns, client_end = network_manager.add_veth()
    wait_until(lambda: nm_states(network_manager).get(radio) not in (None, "unmanaged"),
               message="NetworkManager to manage the free port")
    node = node_process_factory(PARADROP_NETWORK_NETNS=network_manager.netns,
                                PARADROP_DBUS_SYSTEM_ADDRESS=network_manager.bus_address).start()
    session, url = node.session(), node.url
    set_radios(session, url, radio)

    name = unique("nm")
    install(session, url, ap_chute(name, "Managed elsewhere", "secret-psk"))
    [network] = session.get(f"{url}/api/v1/chutes/{name}/networks").json()
    bridge = network["bridge"]

    # The bridge, the radio and the container's veth host end: every one unmanaged in NetworkManager.
    members = [line.split(":")[1].strip().split("@")[0] for line in
               ip("-o", "link", "show", "master", bridge, netns=network_manager.netns).stdout.splitlines()]
    assert radio in members and len(members) == 2, members
    ours = [bridge] + members
    seen = {}

    def all_unmanaged():
        seen.update(nm_states(network_manager))
        return all(seen.get(x) == "unmanaged" for x in ours)
    try:
        wait_until(all_unmanaged, message="the chute network unmanaged in NetworkManager")
    except AssertionError:
        raise AssertionError(f"NetworkManager states of {ours}: {seen}") from None
    assert lease(client_ns, client_end, tmp_path)  # NetworkManager did not fight the node over the network

    answer = session.delete(f"{url}/api/v1/chutes/{name}")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    wait_until(lambda: nm_states(network_manager).get(radio) not in (None, "unmanaged"),
               message="the radio given back to NetworkManager")
    assert bridge not in nm_states(network_manager)
