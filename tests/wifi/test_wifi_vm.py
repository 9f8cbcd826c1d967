"""The real-radio tier: a QEMU guest with three mac80211_hwsim radios runs tests/wifi/guest_scenario.py.

The guest image is built on first use and cached under .cache/wifi-vm/ (tools/wifi-vm/build); each run boots
it with the working tree's code. The node's configurator (HostNetwork, fed by the network plan's steps through
the executor) brings up a chute's access point on a simulated radio and its network on VLAN 42 of a LAN port.
What is asserted is what users would see: a WPA2 station associates, gets a DHCP lease, reaches the chute, is
listed by hostapd and in the lease file, is back on the air after hostapd is killed -9, and sees the renamed
network in a scan; a LAN client tagged 42 gets a lease and reaches the chute, an untagged one gets none; the
teardown leaves no link, process or file. A monitor chute (the node in network_netns mode) is given the third
radio whole and hears the access point's beacons in its namespace, keeps it across a restart of its container,
and the radio is back in the node's namespace when the chute is removed.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXPECTED = {"chute_planned", "plan_set_up", "ap_enabled", "chute_interfaces_attached", "station_associated",
            "lease_obtained", "ping_gateway_over_the_air", "station_reaches_chute", "station_listed_by_hostapd",
            "lease_listed", "vlan_tagged_client_lease", "vlan_tagged_client_reaches_chute",
            "vlan_untagged_client_no_lease", "plan_again_changes_nothing", "hostapd_back_after_kill",
            "station_reassociated", "ssid_change_read_back", "ssid_change_seen_by_station_scan", "teardown_no_link",
            "teardown_no_process", "teardown_no_file", "monitor_planned", "monitor_hears_beacons",
            "monitor_give_again_changes_nothing", "monitor_follows_restarted_container",
            "monitor_undo_takes_radio_from_running_container", "monitor_radio_back_after_removal"}


@pytest.mark.timeout(900)
def test_a_station_joins_the_chute_access_point_over_simulated_radios():
    done = subprocess.run([sys.executable, str(REPO / "tools/wifi-vm/run"), "--python", sys.executable,
                           "--timeout", "400"], text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          timeout=850)
    lines = [re.sub(r"^\[ *[0-9.]+\] ", "", line) for line in done.stdout.splitlines()]
    passed = {line.split()[1].rstrip(":") for line in lines if line.startswith("PASS ")}
    failed = [line for line in lines if line.startswith("FAIL ")]
    tail = "\n".join(done.stdout.splitlines()[-60:])
    assert not failed, tail
    assert passed == EXPECTED, f"missing: {sorted(EXPECTED - passed)}\n{tail}"
    assert "WIFI-VM-DONE rc=0" in done.stdout, tail
    assert done.returncode == 0, tail
