"""The real hostapd (driver=wired on a veth inside a namespace the test makes) runs the config render() writes,
and HostapdControl reads and changes it through the control socket: status, an SSID change, a station that
appears and is kicked, and clear errors in bounded time when hostapd is stopped, gone or restarted."""
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task

from pdserver.errors import NotFound, Unavailable
from pdserver.sysconfig import hostapd
from pdserver.sysconfig.hostapd import ApConfig, HostapdControl
from tests import netns
from tests.netns import in_netns, ip, popen_in_netns

lab = netns.lab  # the fixture

pytestmark = pytest.mark.skipif(shutil.which("hostapd") is None, reason="hostapd is not installed")

SSID = 'café "lab"\n#1'
TIMEOUT = 0.5

# An EAPOL-Start from the peer end: hostapd's wired driver takes its sender as a new station.
EAPOL_START = """
import socket, sys
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
s.send(bytes.fromhex("0180c2000003") + s.getsockname()[4] + bytes.fromhex("888e02010000"))
"""


class Ap:
    """hostapd on one end of a veth in its own namespace; the other end is where stations come from."""

    def __init__(self, lab, workdir: Path, key: str = None):
        self.netns = lab.netns("ap")
        self.interface, self.peer = lab.veth("ap", peer_netns=self.netns, host_netns=self.netns)
        self.config = ApConfig(self.interface, SSID, workdir / "run", driver="wired", key=key,
                               hidden=True, isolate=True, maxassoc=8, nasid="node-1")
        self.conf = workdir / "hostapd.conf"
        self.conf.write_text(hostapd.render(self.config))
        self.log = workdir / "hostapd.log"
        self.process = None

    def start(self):
        with open(self.log, "ab") as log:
            self.process = popen_in_netns(self.netns, *hostapd.argv(self.conf), stdout=log, stderr=log)

    def stop(self, sig=signal.SIGTERM):
        if self.process and self.process.poll() is None:
            os.kill(self.hostapd_pid(), sig)
            self.process.wait(timeout=10)

    def hostapd_pid(self) -> int:
        """`ip netns exec` execs hostapd, so the child is hostapd itself."""
        return self.process.pid

    def station_says_hello(self) -> str:
        in_netns(self.netns, sys.executable, "-c", EAPOL_START, self.peer, check=True)
        return ip("-br", "link", "show", self.peer, netns=self.netns).stdout.split()[2]


@pytest.fixture(params=[" pass word #1 ", None], ids=["wpa2-psk", "open"])
def ap(lab, request):
    """Both a WPA2-PSK AP and an open one: on the wired driver only the open one authorizes a station at once
    (the PSK one waits for a 4-way handshake that a wired peer never starts)."""
    workdir = Path(tempfile.mkdtemp(prefix="pdh-"))  # short: unix socket paths must stay < 108 bytes
    made = Ap(lab, workdir, key=request.param)
    made.start()
    try:
        yield made
    finally:
        made.stop(signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def control(ap, timeout=TIMEOUT):
    return HostapdControl(reactor, str(ap.config.ctrl_path), ap.conf.parent / "local", timeout=timeout)


async def sleep(seconds):
    await task.deferLater(reactor, seconds, lambda: None)


async def eventually(check, timeout=10.0, what="condition"):
    """Poll an async check until it returns a true value (hostapd starting, a station leaving)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            value = await check()
            if value:
                return value
        except Unavailable as e:
            last = e
        await sleep(0.05)
    raise AssertionError(f"timed out waiting for {what} (last error: {last})")


async def enabled(ctl):
    return await eventually(lambda: _enabled(ctl), what="hostapd ENABLED")


async def _enabled(ctl):
    status = await ctl.status()
    return status if status["state"] == "ENABLED" else None


@pytest_twisted.ensureDeferred
async def test_status_reads_back_enabled_and_the_hostile_ssid(ap):
    ctl = control(ap)
    status = await enabled(ctl)
    assert status["ssid"] == SSID
    assert status["bss[0]"] == ap.interface
    assert "AP-ENABLED" in ap.log.read_text()
    ctl.close()


@pytest_twisted.ensureDeferred
async def test_ssid_change_reads_back_and_drops_stations(ap):
    ctl = control(ap)
    await enabled(ctl)
    mac = ap.station_says_hello()
    await eventually(lambda: _has_station(ctl, mac), what="the station")
    await ctl.set_ssid("new ☃ net")
    status = await ctl.status()
    assert (status["state"], status["ssid"]) == ("ENABLED", "new ☃ net")
    assert "ssid=new \\xe2\\x98\\x83 net" in await ctl.command("GET_CONFIG")
    assert await ctl.stations() == []
    ctl.close()


async def _has_station(ctl, mac):
    return [s for s in await ctl.stations() if s["mac"] == mac]


@pytest_twisted.ensureDeferred
async def test_a_station_appears_and_is_kicked(ap):
    ctl = control(ap)
    await enabled(ctl)
    mac = ap.station_says_hello()
    [station] = await eventually(lambda: _has_station(ctl, mac), what="the station")
    assert mac in await ctl.command("ALL_STA")
    if ap.config.key is None:
        assert "AUTHORIZED" in station["flags"]
    assert station["timeout_next"] != "REMOVE"
    await ctl.deauthenticate(mac)
    await eventually(lambda: _kicked(ctl, mac), what="the station deauthenticated")
    if ap.config.key is None:
        assert f"AP-STA-DISCONNECTED {mac}" in ap.log.read_text()
    with pytest.raises(NotFound):
        await ctl.deauthenticate("02:00:00:00:00:99")
    ctl.close()


async def _kicked(ctl, mac):
    """hostapd keeps a deauthenticated station a few seconds, unauthorized and due for removal."""
    return all("AUTHORIZED" not in s["flags"] and s["timeout_next"] == "REMOVE"
               for s in await _has_station(ctl, mac))


@pytest_twisted.ensureDeferred
async def test_a_stopped_hostapd_is_an_error_within_the_timeout(ap):
    ctl = control(ap)
    await enabled(ctl)
    os.kill(ap.hostapd_pid(), signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(Unavailable, match="did not answer within 0.5 s"):
            await ctl.status()
        assert TIMEOUT <= time.monotonic() - started < TIMEOUT + 0.5
    finally:
        os.kill(ap.hostapd_pid(), signal.SIGCONT)
    assert (await ctl.status())["state"] == "ENABLED"  # and it answers again once it runs
    ctl.close()


@pytest_twisted.ensureDeferred
async def test_a_terminated_hostapd_means_no_socket_and_a_fast_error(ap):
    ctl = control(ap)
    await enabled(ctl)
    ap.stop(signal.SIGTERM)
    assert not ap.config.ctrl_path.exists()
    started = time.monotonic()
    with pytest.raises(Unavailable, match="no control socket"):
        await ctl.status()
    assert time.monotonic() - started < TIMEOUT


@pytest_twisted.ensureDeferred
async def test_a_killed_then_restarted_hostapd(ap):
    ctl = control(ap)
    await enabled(ctl)
    ap.stop(signal.SIGKILL)
    assert ap.config.ctrl_path.exists()  # a socket file nobody reads
    started = time.monotonic()
    with pytest.raises(Unavailable, match="not running"):
        await ctl.status()
    assert time.monotonic() - started < TIMEOUT
    ap.start()  # what the Supervisor does: the same control object finds the new hostapd
    status = await enabled(ctl)
    assert status["ssid"] == SSID
    ctl.close()


def test_hostapd_parses_everything_render_writes_for_nl80211(lab):
    """There is no radio here, but hostapd reads the whole file before it asks for its driver: a line it does
    not understand would be reported (and it stops) before "Failed to initialize driver"."""
    netns = lab.netns("nl")
    with tempfile.TemporaryDirectory(prefix="pdh-") as workdir:
        conf = Path(workdir) / "hostapd.conf"
        conf.write_text(hostapd.render(ApConfig("wlan9", SSID, Path(workdir), key="12345678", hidden=True,
                                                isolate=True, maxassoc=5, hwmode="11a", channel=36, country="US",
                                                nasid="n1", acct_server="10.0.0.9", acct_secret="s e#cret",
                                                acct_interval=120)))
        result = in_netns(netns, *hostapd.argv(conf), timeout=10)
    output = result.stdout + result.stderr
    assert "errors found in configuration file" not in output
    assert "Failed to initialize driver 'nl80211'" in output
