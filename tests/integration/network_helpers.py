"""What the chute network tests share: wired "radios" in the host config, Wi-Fi AP chutes, and a client's DHCP
lease taken with busybox udhcpc inside the client's namespace."""
import ipaddress

from tests.integration.chute_helpers import wait_change
from tests.netns import in_netns, ip


def udhcpc_script(tmp_path):
    """udhcpc's hook: on a lease, the address (and the default route through the router) on the interface."""
    script = tmp_path / "udhcpc.sh"
    script.write_text('#!/bin/sh\n[ "$1" = bound ] || exit 0\nip addr add "$ip/$mask" dev "$interface"\n'
                      '[ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"\nexit 0\n')
    script.chmod(0o755)
    return script


def lease(client, device, tmp_path, tries=3):
    """A DHCP lease for ``device`` in namespace ``client`` (busybox udhcpc); its address, or None."""
    ip("addr", "flush", "dev", device, netns=client)
    done = in_netns(client, "busybox", "udhcpc", "-i", device, "-n", "-q", "-t", str(tries), "-T", "1",
                    "-s", str(udhcpc_script(tmp_path)), timeout=30)
    if done.returncode != 0:
        return None
    shown = ip("-4", "-o", "addr", "show", device, netns=client).stdout.split()
    return ipaddress.IPv4Interface(shown[shown.index("inet") + 1]).ip if "inet" in shown else None


def set_radios(session, url, *devices):
    """The host config's radios: ``radio0``, ``radio1``... wired (hostapd's wired driver) on ``devices``."""
    current = session.get(f"{url}/api/v1/config/hostconfig").json()
    current["wifi"] = [{"id": f"radio{i}", "driver": "wired", "interface": d} for i, d in enumerate(devices)]
    answer = session.put(f"{url}/api/v1/config/hostconfig", json=current)
    assert answer.status_code == 202, answer.text
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"


def ap_chute(name, ssid, key=None, command="sleep 100000"):
    """An image chute whose service ``main`` has a Wi-Fi AP ``wlan0`` with DHCP (20 addresses from .10)."""
    wireless = {"ssid": ssid, **({"key": key} if key else {})}
    return {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": command,
        "interfaces": {"wlan0": {"type": "wifi-ap", "dhcp": {"start": 10, "limit": 20, "leasetime": "1h"},
                                 "wireless": wireless}}}}}


def install(session, url, config) -> dict:
    """Install a chute from its description; the change once it succeeded."""
    answer = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert answer.status_code == 202, answer.text
    change = wait_change(session, url, answer.json()["change_id"])
    assert change["state"] == "succeeded", change
    return change
