"""A real NetworkManager for tests, confined to a network namespace the test makes (shared by the tests of the
client, the node's NetworkManager service and a node process that runs its chute networks there).

dbus-daemon (a system bus of its own, its socket in a temp dir), systemd-udevd (NetworkManager manages a device
only once udev has seen it) and NetworkManager share one network namespace and one private mount namespace whose
tmpfs mounts hide the host's /run, /dev, udev rules and NetworkManager state: the daemons see only the namespace's
links and write only to tmpfs or the temp dir. udev runs without rules, so it only records the devices and its
stock rule that leaves veths unmanaged does not apply. The fixture stops every daemon and removes every file and
namespace, also when the test fails.
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from twisted.internet import reactor, task

from tests.conftest import wait_until
from tests import netns
from tests.netns import ip, popen_in_netns

lab = netns.lab  # the fixture of namespaces and links, removed after each test
UDEVD = "/usr/lib/systemd/systemd-udevd"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
"""
# No <servicedir>: nothing is ever activated on this bus.

NM_CONFIG = """[main]
plugins=keyfile
no-auto-default=*
dns=none
rc-manager=unmanaged
hostname-mode=none
auth-polkit=false
systemd-resolved=false

[keyfile]
path={connections}

[connectivity]
enabled=false
"""

# Run by `ip netns exec` (which already gives a mount namespace of its own, with the namespace's /sys): hide
# what the daemons could write to or act on, keep /dev/null and friends, then hold the namespaces open.
MOUNTS = """set -e
mount -t tmpfs -o mode=0755 pdt-run /run
mkdir /run/udev /run/NetworkManager /run/hostdev
mount --bind /dev /run/hostdev
mount -t tmpfs -o mode=0755 pdt-dev /dev
for node in null zero full random urandom; do
    touch /dev/$node
    mount --bind /run/hostdev/$node /dev/$node
done
umount /run/hostdev
mount -t tmpfs -o mode=0755 pdt-nm-state /var/lib/NetworkManager
mount -t tmpfs -o mode=0755 pdt-rules /usr/lib/udev/rules.d
mount -t tmpfs -o mode=0755 pdt-rules /etc/udev/rules.d
echo ready
exec sleep infinity
"""
HOST_PATHS = ("/etc/NetworkManager", "/var/lib/NetworkManager", "/usr/lib/udev/rules.d", "/etc/udev/rules.d")


def _listing(paths):
    return {path: sorted(os.listdir(path)) for path in paths if os.path.isdir(path)}


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if proc.stdout:
        proc.stdout.close()


def _bus_has(address: str, name: str) -> bool:
    out = subprocess.run(["dbus-send", f"--bus={address}", "--print-reply", "--dest=org.freedesktop.DBus", "/",
                          "org.freedesktop.DBus.NameHasOwner", f"string:{name}"], capture_output=True, text=True)
    return "boolean true" in out.stdout


def start_bus(tmp: Path, prefix=()) -> (subprocess.Popen, str):
    """A dbus-daemon with a system-bus config of its own; its socket in `tmp`."""
    sock = tmp / "bus"
    (tmp / "bus.conf").write_text(BUS_CONFIG.format(socket=sock))
    proc = subprocess.Popen(list(prefix) + ["dbus-daemon", f"--config-file={tmp / 'bus.conf'}", "--nofork",
                                            "--nopidfile"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"unix:path={sock}"
    wait_until(lambda: proc.poll() is not None or _bus_has(address, "org.freedesktop.DBus"), 10, message="the bus")
    assert proc.poll() is None, "dbus-daemon exited"
    return proc, address


class NetworkManagerLab:
    """dbus-daemon, systemd-udevd and NetworkManager in the namespace `netns`."""

    def __init__(self, lab, tmp: Path):
        self.lab, self.tmp = lab, tmp
        self.netns = lab.netns("nm")
        self.procs = []
        self.bus_address = None
        self.start_seconds = None

    def start(self) -> None:
        began = time.monotonic()
        holder = popen_in_netns(self.netns, "sh", "-c", MOUNTS, stdout=subprocess.PIPE, text=True)
        self.procs.append(holder)
        assert holder.stdout.readline().strip() == "ready", "the private mounts failed"
        inside = ("nsenter", "-t", str(holder.pid), "-m", "-n", "--")
        bus, self.bus_address = start_bus(self.tmp, inside)
        self.procs.append(bus)
        udevd = self._spawn("udevd", inside + (UDEVD,))
        wait_until(lambda: Path(f"/proc/{holder.pid}/root/run/udev/control").exists(), 10, message="udevd")
        (self.tmp / "connections").mkdir()
        (self.tmp / "conf.d").mkdir()
        (self.tmp / "NetworkManager.conf").write_text(NM_CONFIG.format(connections=self.tmp / "connections"))
        nm = self._spawn("NetworkManager", inside + (
            "NetworkManager", "--no-daemon", "--debug", f"--config={self.tmp / 'NetworkManager.conf'}",
            f"--config-dir={self.tmp / 'conf.d'}", f"--system-config-dir={self.tmp / 'conf.d'}",
            f"--state-file={self.tmp / 'NetworkManager.state'}", f"--intern-config={self.tmp / 'intern.conf'}",
            "--pid-file=/run/NetworkManager/NetworkManager.pid"))
        wait_until(lambda: nm.poll() is not None or _bus_has(self.bus_address, "org.freedesktop.NetworkManager"),
                   15, message="NetworkManager on the bus")
        assert udevd.poll() is None and nm.poll() is None, self.logs()
        self.start_seconds = time.monotonic() - began

    def _spawn(self, name, argv) -> subprocess.Popen:
        with open(self.tmp / f"{name}.log", "wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address))
        self.procs.append(proc)
        return proc

    def logs(self) -> str:
        return "\n".join(path.read_text(errors="replace")[-3000:] for path in self.tmp.glob("*.log"))

    def add_veth(self) -> tuple:
        """A veth made in the namespace (it never exists outside), its peer in a second namespace: (the end
        NetworkManager sees, the peer's namespace, the peer)."""
        peer_ns = self.lab.netns("nmpeer")
        name, peer = f"nm{self.lab.tag}a", f"nm{self.lab.tag}b"
        ip("link", "add", name, "type", "veth", "peer", "name", peer, "netns", peer_ns, netns=self.netns)
        ip("link", "set", name, "up", netns=self.netns)
        ip("link", "set", peer, "up", netns=peer_ns)
        return name, peer_ns, peer

    def nmcli_state(self, interface: str) -> str:
        """The device's state as nmcli, NetworkManager's own client, reports it."""
        out = subprocess.run(["nmcli", "-t", "-f", "DEVICE,STATE", "device"], capture_output=True, text=True,
                             env=dict(os.environ, DBUS_SYSTEM_BUS_ADDRESS=self.bus_address), check=True)
        return dict(line.split(":", 1) for line in out.stdout.splitlines()).get(interface, "")

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc)
        self.procs.clear()


@pytest.fixture
def short_tmp():
    """A temp dir with a short path (unix socket paths stay < 108 bytes); removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="pdt-nm-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def network_manager(lab, short_tmp):
    """A running NetworkManager in its namespace; every daemon stopped, the host's NetworkManager and udev
    paths checked untouched, the namespaces removed by `lab`."""
    before = _listing(HOST_PATHS)
    made = NetworkManagerLab(lab, short_tmp)
    try:
        made.start()
        print(f"\nNetworkManager fixture: dbus-daemon, udevd and NetworkManager ready in {made.start_seconds:.2f} s")
        yield made
    finally:
        made.stop()
        assert _listing(HOST_PATHS) == before, "a daemon wrote to the host's NetworkManager or udev paths"


async def eventually(probe, what: str, timeout: float = 15.0):
    """Await `probe()` until it answers something true; fail after `timeout` seconds."""
    deadline = reactor.seconds() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if reactor.seconds() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await task.deferLater(reactor, 0.05, lambda: None)
