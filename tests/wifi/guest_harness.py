"""The guest scenario's side of the test: the clients and stand-ins around the node's configurator.

Everything here is what the node does not make: a process standing in for a chute's container (its own network
namespace), a Wi-Fi station on the second radio in its own namespace, a LAN switch with a tagged and an
untagged client, and probes (DHCP with busybox udhcpc, ping, wpa_cli, /proc). They use iproute2, iw and busybox,
never the code under test. Thread code: every ``thd_`` function blocks.
"""
import json
import os
import subprocess
import time
from pathlib import Path

from twisted.internet import defer

from pdserver.containers.spec import ContainerState

IP = "/usr/bin/ip"  # full paths: the guest's busybox has applets of the same names
IW = "/usr/sbin/iw"
BUSYBOX = "/usr/bin/busybox"
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) /usr/bin/ip addr flush dev "$interface"; /usr/bin/ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
"""
LAN_SWITCH = "lansw"


def thd_run(*argv, netns=None, check=True):
    if netns is not None:
        argv = (IP, "netns", "exec", netns) + argv
    done = subprocess.run(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout.strip()}")
    return done.stdout


def thd_park(netns, deadline=10.0):
    """A new namespace and a process sleeping in it (what a container's main process is to the node)."""
    thd_run(IP, "netns", "add", netns)
    thd_run(IP, "link", "set", "lo", "up", netns=netns)
    parked = subprocess.Popen([IP, "netns", "exec", netns, "sleep", "100000"])
    until = time.monotonic() + deadline
    while not _in_netns(parked.pid, netns):
        if time.monotonic() > until:
            raise RuntimeError(f"process {parked.pid} never entered namespace {netns}")
        time.sleep(0.05)
    return parked


def _in_netns(pid, netns):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
    except FileNotFoundError:
        return False


def thd_unpark(parked, netns):
    if parked is not None:
        parked.kill()
        parked.wait()
    thd_run(IP, "netns", "del", netns, check=False)


class ProcessEngine:
    """The container engine as attach_interface asks it (``inspect_container``): the guest has no Docker, so a
    parked process is the running container of the given name."""

    def __init__(self):
        self._pids = {}

    def run(self, name, pid):
        self._pids[name] = pid

    def inspect_container(self, name):
        pid = self._pids.get(name)
        if pid is None:
            return defer.succeed(None)
        running = os.path.exists(f"/proc/{pid}")
        return defer.succeed(ContainerState(
            id=name, name=name, image="none", image_id="none", status="running" if running else "exited",
            running=running, exit_code=None, health=None, health_output=None, restart_count=0, started_at=None,
            labels={}, addresses={}, pid=pid if running else None))


class Journal:
    """The step journal of the executor (the node's is the change queue's database): progress to the log, and
    how long each step of the last plan took."""

    def __init__(self, log):
        self._log = log
        self._plan, self._started, self.seconds = [], {}, {}

    def progress(self, message):
        self._log.info("step: {message}", message=message)

    def record_plan(self, steps):
        self._plan, self._started, self.seconds = steps, {}, {}

    def step_state(self, index, state, error=None):
        if state == "started":
            self._started[index] = time.monotonic()
        elif state == "finished":
            self.seconds[index] = time.monotonic() - self._started[index]

    def timings(self):
        return ", ".join(f"{self._plan[i]['action']} {s:.1f} s" for i, s in sorted(self.seconds.items()))


# -- the Wi-Fi station

def thd_make_station(netns, phy):
    """Radio ``phy`` into its own namespace (iw moves a phy by the pid of a process inside)."""
    parked = thd_park(netns)
    thd_run(IW, "phy", phy, "set", "netns", str(parked.pid))
    return parked


def station_config(ssid, key, freq):
    return (f"ctrl_interface=/run/wpa_supplicant\nnetwork={{\n    ssid={ssid.encode().hex()}\n"
            f"    psk=\"{key}\"\n    key_mgmt=WPA-PSK\n    proto=RSN\n    pairwise=CCMP\n    group=CCMP\n"
            f"    scan_freq={freq}\n}}\n")


def thd_station_status(netns, ifname):
    status = thd_run("wpa_cli", "-i", ifname, "status", netns=netns, check=False)
    return dict(line.split("=", 1) for line in status.splitlines() if "=" in line)


def thd_scan_sees(netns, ifname, ssid):
    thd_run("wpa_cli", "-i", ifname, "scan", netns=netns, check=False)
    results = thd_run("wpa_cli", "-i", ifname, "scan_results", netns=netns, check=False)
    return any(line.split("\t")[-1] == ssid for line in results.splitlines()[1:])


# -- the LAN: a switch (a plain bridge, which forwards tagged frames as they are) with the node's LAN port

def thd_make_lan(lan_port, clients):
    """The node's LAN port ``lan_port`` and a port per client namespace (``{netns: vlan_id or None}``) on a
    switch in its own namespace; a client with a VLAN id talks through ``lan.<id>``, else on ``lan``.
    Returns {netns: the client's interface}."""
    thd_run(IP, "netns", "add", LAN_SWITCH)
    sw = ("-n", LAN_SWITCH)
    thd_run(IP, *sw, "link", "add", "name", "switch", "type", "bridge")
    thd_run(IP, "link", "add", lan_port, "type", "veth", "peer", "name", "sw0", "netns", LAN_SWITCH)
    thd_run(IP, "link", "set", lan_port, "up")
    ports, interfaces = ["sw0"], {}
    for number, (netns, vlan_id) in enumerate(sorted(clients.items()), start=1):
        thd_run(IP, "netns", "add", netns)
        thd_run(IP, "-n", netns, "link", "add", "lan", "type", "veth", "peer", "name", f"sw{number}", "netns",
                LAN_SWITCH)
        thd_run(IP, "-n", netns, "link", "set", "lan", "up")
        ports.append(f"sw{number}")
        interfaces[netns] = "lan"
        if vlan_id is not None:
            thd_run(IP, "-n", netns, "link", "add", "link", "lan", "name", f"lan.{vlan_id}", "type", "vlan",
                    "id", str(vlan_id))
            thd_run(IP, "-n", netns, "link", "set", f"lan.{vlan_id}", "up")
            interfaces[netns] = f"lan.{vlan_id}"
    for port in ports:
        thd_run(IP, *sw, "link", "set", port, "master", "switch", "up")
    thd_run(IP, *sw, "link", "set", "switch", "up")
    return interfaces


def thd_remove_lan(lan_port, clients):
    for netns in (LAN_SWITCH, *clients):
        thd_run(IP, "netns", "del", netns, check=False)
    thd_run(IP, "link", "del", lan_port, check=False)


# -- probes

def thd_dhcp(netns, ifname, tries):
    """Ask for a lease with busybox udhcpc (one try a second); the address it set, or None."""
    script = Path("/run/udhcpc.script")
    if not script.exists():
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
    thd_run(BUSYBOX, "udhcpc", "-i", ifname, "-n", "-q", "-f", "-t", str(tries), "-T", "1", "-s", str(script),
            netns=netns, check=False)
    return thd_address(netns, ifname)


def thd_address(netns, ifname):
    out = thd_run(IP, "-4", "-o", "addr", "show", "dev", ifname, netns=netns)
    return out.split()[3] if out.strip() else None


def thd_ping(netns, address, count=2):
    """(all answered, ping's summary line)."""
    out = thd_run("ping", "-c", str(count), "-W", "2", address, netns=netns, check=False).strip()
    return " 0% packet loss" in out, out.splitlines()[-1] if out else "no output"


def thd_mac(netns, ifname):
    return Path(f"/sys/class/net/{ifname}/address").read_text().strip() if netns is None else thd_run(
        "cat", f"/sys/class/net/{ifname}/address", netns=netns).strip()


def thd_processes(*names):
    """pid -> command line of the running processes whose program is one of ``names``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0].decode(errors="replace")) in names:
            found[int(entry.name)] = " ".join(a.decode(errors="replace") for a in argv if a)
    return found


def files_under(root):
    return sorted(str(p) for p in Path(root).rglob("*") if not p.is_dir())


# -- radios in namespaces (the monitor chute)

BEACON_CAPTURE = """
import json, socket, struct, sys, time
ifname, ssid, timeout = sys.argv[1], bytes.fromhex(sys.argv[2]), float(sys.argv[3])
def rx():
    with open(f"/sys/class/net/{ifname}/statistics/rx_packets") as f:
        return int(f.read())
before, start, beacons = rx(), time.monotonic(), 0
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
s.bind((ifname, 0))
s.settimeout(0.5)
while time.monotonic() - start < timeout and beacons < 3:
    try:
        frame = s.recv(4096)
    except socket.timeout:
        continue
    dot11 = frame[struct.unpack_from("<H", frame, 2)[0]:]  # past the radiotap header
    # a beacon (frame control 0x80): 24 bytes of header, 12 of fixed fields, then the SSID element (id 0)
    if len(dot11) > 38 and dot11[0] == 0x80 and dot11[36] == 0 and dot11[38:38 + dot11[37]] == ssid:
        beacons += 1
print(json.dumps({"beacons": beacons, "seconds": round(time.monotonic() - start, 2), "rx_before": before,
                  "rx_after": rx()}))
"""


def thd_capture_beacons(netns, ifname, ssid, timeout=5.0):
    """Listen on the monitor interface ``ifname`` inside ``netns`` (a raw socket, as a chute would) until three
    beacons carrying ``ssid`` came or ``timeout`` passed: {beacons, seconds, rx_before, rx_after} (the
    interface's rx packet counter around it)."""
    out = thd_run("python3", "-c", BEACON_CAPTURE, ifname, ssid.encode().hex(), str(timeout), netns=netns)
    return json.loads(out.strip().splitlines()[-1])


def thd_phys(netns):
    """The radios (wiphy names) in ``netns`` (None: the initial namespace), by iw."""
    out = thd_run(IW, "list", netns=netns, check=False)
    return {line.split()[1] for line in out.splitlines() if line.startswith("Wiphy ")}


def thd_wireless_interfaces(netns):
    """name -> {phy, type, channel} of the Wi-Fi interfaces in ``netns``, by ``iw dev``."""
    out, phy, found = thd_run(IW, "dev", netns=netns, check=False), None, {}
    for line in out.splitlines():
        words = line.split()
        if line.startswith("phy#"):
            phy = "phy" + line[4:].strip()
        elif words[:1] == ["Interface"]:
            current = found[words[1]] = {"phy": phy, "type": None, "channel": None}
        elif words[:1] == ["type"]:
            current["type"] = words[1]
        elif words[:1] == ["channel"]:
            current["channel"] = int(words[1])
    return found


def thd_link_up(netns, ifname):
    out = thd_run(IP, "-o", "link", "show", "dev", ifname, netns=netns, check=False)
    return "state UP" in out or ",UP" in out or "<UP" in out
