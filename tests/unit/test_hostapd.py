"""hostapd.py without hostapd: what the config file says per driver, that no hostile value adds a line to it,
how replies are read, and the control client against a stand-in socket (timeouts on a Clock)."""
import os
import tempfile
from pathlib import Path

import pytest
import pytest_twisted
from twisted.internet import reactor, task
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from zope.interface.verify import verifyObject

from pdserver.errors import InvalidInput, NotFound, Unavailable
from pdserver.sysconfig import hostapd
from pdserver.sysconfig.hostapd import ApConfig, HostapdControl, IHostapdControl

CTRL = Path("/run/pd/hostapd")


def keys(text):
    """The settings of a rendered file, in order (comments skipped), as hostapd's parser sees them."""
    return [line.partition("=")[0] for line in text.split("\n") if line and not line.startswith("#")]


def settings(text):
    return dict(line.partition("=")[::2] for line in text.split("\n") if line and not line.startswith("#"))


def test_nl80211_with_every_option():
    text = hostapd.render(ApConfig("wlan0", "café", CTRL, key="pass word#1", hidden=True, isolate=True,
                                   maxassoc=10, hwmode="11a", channel=36, country="US", bridge="pd0a1b2c3d",
                                   nasid="node-1", acct_server="10.0.0.9:1814", acct_secret="s3cret",
                                   acct_interval=300))
    assert settings(text) == {
        "interface": "wlan0", "driver": "nl80211", "ctrl_interface": "/run/pd/hostapd",
        "ssid2": "café".encode().hex(), "bridge": "pd0a1b2c3d", "hw_mode": "a", "channel": "36",
        "country_code": "US", "ieee80211d": "1", "ignore_broadcast_ssid": "1", "ap_isolate": "1",
        "max_num_sta": "10", "auth_algs": "1", "wpa": "2", "wpa_key_mgmt": "WPA-PSK", "rsn_pairwise": "CCMP",
        "wpa_passphrase": "pass word#1", "nas_identifier": "node-1", "acct_server_addr": "10.0.0.9",
        "acct_server_port": "1814", "acct_server_shared_secret": "s3cret", "radius_acct_interim_interval": "300"}
    assert text.endswith("\n")


def test_open_wired_ap_has_no_radio_or_security_settings():
    text = hostapd.render(ApConfig("veth0", "lab", CTRL, driver="wired", channel=6, country="DE"))
    assert keys(text) == ["interface", "driver", "ctrl_interface", "ssid2"]
    assert settings(text)["driver"] == "wired"


def test_defaults_are_an_open_2_4_ghz_ap_on_channel_1():
    assert settings(hostapd.render(ApConfig("wlan0", "x", CTRL)))["hw_mode"] == "g"
    assert settings(hostapd.render(ApConfig("wlan0", "x", CTRL)))["channel"] == "1"
    assert "wpa" not in settings(hostapd.render(ApConfig("wlan0", "x", CTRL)))


def test_ipv6_accounting_server_and_default_port():
    text = hostapd.render(ApConfig("wlan0", "x", CTRL, acct_server="[fd00::9]:1900", acct_secret="k"))
    assert (settings(text)["acct_server_addr"], settings(text)["acct_server_port"]) == ("fd00::9", "1900")
    text = hostapd.render(ApConfig("wlan0", "x", CTRL, acct_server="fd00::9", acct_secret="k"))
    assert (settings(text)["acct_server_addr"], settings(text)["acct_server_port"]) == ("fd00::9", "1813")


HOSTILE_SSIDS = ["x\nctrl_interface=/tmp/evil", "a\rb", "\x00", "#comment", "=", "ssid2=41", " padded ",
                 "\"quoted\"", "\\x41", "Ω" * 16, "😀" * 8, "P\"x\""]


@pytest.mark.parametrize("ssid", HOSTILE_SSIDS)
def test_any_ssid_is_one_hex_line_that_decodes_back(ssid):
    text = hostapd.render(ApConfig("wlan0", ssid, CTRL, driver="wired"))
    assert keys(text) == ["interface", "driver", "ctrl_interface", "ssid2"]
    assert bytes.fromhex(settings(text)["ssid2"]).decode() == ssid


@pytest.mark.parametrize("ssid", ["", "x" * 33, "é" * 17, "\ud800", b"bytes", None, 5])
def test_ssid_outside_1_to_32_utf8_bytes_is_refused(ssid):
    with pytest.raises(InvalidInput) as e:
        hostapd.render(ApConfig("wlan0", ssid, CTRL))
    assert e.value.field == "ssid"


@pytest.mark.parametrize("key", ["1234567", "x" * 64, "12345678\nwpa=0", "12345678\r", "\x00" * 8, "pässword",
                                 "tab\there!", 12345678, b"12345678"])
def test_key_must_be_8_to_63_printable_ascii(key):
    with pytest.raises(InvalidInput) as e:
        hostapd.render(ApConfig("wlan0", "x", CTRL, key=key))
    assert e.value.field == "key"


@pytest.mark.parametrize("key", ["12345678", "~" * 63, " spaces and # kept "])
def test_printable_keys_are_kept_verbatim(key):
    assert settings(hostapd.render(ApConfig("wlan0", "x", CTRL, key=key)))["wpa_passphrase"] == key


HOSTILE_FIELDS = [
    ("interface", "wlan0\ndriver=none"), ("interface", "-wlan0"), ("interface", "a" * 16), ("interface", ""),
    ("interface", "wl an"), ("interface", "../x"), ("driver", "wired\nx=1"), ("driver", "madwifi"),
    ("ctrl_dir", "relative/dir"), ("ctrl_dir", "/run/x\nwpa=0"), ("ctrl_dir", "/" + "d" * 110),
    ("bridge", "br0\nx=1"), ("bridge", ""), ("hidden", "yes"), ("isolate", 1), ("maxassoc", 0),
    ("maxassoc", 2008), ("maxassoc", "5"), ("maxassoc", True), ("hwmode", "11n"), ("hwmode", "g\nx"),
    ("hwmode", None), ("channel", 0), ("channel", 15), ("channel", True), ("channel", "6"),
    ("country", "us"), ("country", "USA"), ("country", "U\n"), ("nasid", "a b"), ("nasid", "n\nx=1"),
    ("nasid", "x" * 49), ("acct_server", "radius.example"), ("acct_server", "10.0.0.1\nx=1"),
    ("acct_server", "10.0.0.1:0"), ("acct_server", "10.0.0.1:99999"), ("acct_server", 5),
]


@pytest.mark.parametrize("field,value", HOSTILE_FIELDS)
def test_hostile_values_are_refused_naming_their_field(field, value):
    values = dict(interface="wlan0", ssid="x", ctrl_dir=CTRL, acct_secret="k", acct_server="10.0.0.1")
    values[field] = value
    with pytest.raises(InvalidInput) as e:
        hostapd.render(ApConfig(**values))
    assert e.value.field == field


@pytest.mark.parametrize("extra,field", [
    (dict(acct_server="10.0.0.1", acct_secret="s\nx=1"), "acct_secret"),
    (dict(acct_server="10.0.0.1", acct_secret=""), "acct_secret"),
    (dict(acct_server="10.0.0.1"), "acct_secret"),
    (dict(acct_secret="s"), "acct_secret"),
    (dict(acct_interval=60), "acct_interval"),
    (dict(acct_server="10.0.0.1", acct_secret="s", acct_interval=59), "acct_interval"),
    (dict(hwmode="11a", channel=11), "channel"),
])
def test_accounting_and_channel_combinations(extra, field):
    with pytest.raises(InvalidInput) as e:
        hostapd.render(ApConfig("wlan0", "x", CTRL, **extra))
    assert e.value.field == field


def test_argv_runs_hostapd_in_the_foreground_on_our_file_only():
    assert hostapd.argv(Path("/s/hostapd.conf")) == ["hostapd", "/s/hostapd.conf"]
    assert hostapd.argv("/s/h.conf", binary="/usr/sbin/hostapd") == ["/usr/sbin/hostapd", "/s/h.conf"]
    with pytest.raises(InvalidInput):
        hostapd.argv("-B")


def test_ctrl_path_is_the_interface_socket_in_ctrl_dir():
    assert ApConfig("wlan0", "x", CTRL).ctrl_path == CTRL / "wlan0"


# Replies.

def test_printf_decode_undoes_hostapds_escapes():
    assert hostapd.printf_decode(r'\xc3\xa9\"\\ \n\t\e#x') == 'é"\\ \n\t\x1b#x'.encode()
    assert hostapd.printf_decode("\\101\\") == b"A\\"
    assert hostapd.printf_decode("plain") == b"plain"


def test_status_decodes_ssids_and_skips_odd_lines():
    status = hostapd.parse_status("state=ENABLED\ngarbage line\n=nokey\nbss[0]=wlan0\n"
                                  "ssid[0]=caf\\xc3\\xa9 \\\"x\\\"\nssid[1]=bad\\xff\nnum_sta[0]=2\n")
    assert status["state"] == "ENABLED"
    assert status["ssid"] == status["ssid[0]"] == 'café "x"'
    assert status["ssid[1]"] == "bad\ufffd"
    assert status["num_sta[0]"] == "2"
    assert "" not in status and "garbage line" not in status


def test_station_reply_is_the_mac_then_fields():
    assert hostapd.parse_station("02:00:00:00:00:01\nflags=[AUTHORIZED]\naid=1\nrx_bytes=5\n") == {
        "mac": "02:00:00:00:00:01", "flags": "[AUTHORIZED]", "aid": "1", "rx_bytes": "5"}
    for empty in ("", "FAIL\n", "UNKNOWN COMMAND\n", "02:00:00:00:00\n"):
        assert hostapd.parse_station(empty) is None


# The client, against a stand-in for hostapd's socket.

class FakeHostapd(DatagramProtocol):
    """Answers commands from `replies` (a dict or a function) with a datagram, a list of them, or none (None).
    Records what it got and from where."""

    def __init__(self, replies):
        self.replies = replies
        self.received = []
        self.senders = []

    def datagramReceived(self, data, addr):
        command = data.decode()
        self.received.append(command)
        self.senders.append(addr)
        reply = self.replies(command) if callable(self.replies) else self.replies.get(command, "UNKNOWN COMMAND\n")
        for datagram in [reply] if isinstance(reply, str) else reply or []:
            self.transport.write(datagram.encode(), addr)


class ClockedReactor:
    """The real reactor's sockets with a Clock's time: timeouts happen when the test says."""

    def __init__(self, clock):
        self.callLater = clock.callLater
        self.connectUNIXDatagram = reactor.connectUNIXDatagram


@pytest.fixture
def sockdir():
    with tempfile.TemporaryDirectory(prefix="pdh-") as name:  # short: unix socket paths are < 108 bytes
        yield Path(name)


@pytest.fixture
def fake(sockdir):
    servers = []

    def start(replies):
        server = FakeHostapd(replies)
        servers.append(reactor.listenUNIXDatagram(str(sockdir / "wlan0"), server))
        return server
    yield start
    for port in servers:
        port.stopListening()


def control(sockdir, timeout=2.0, clock=None):
    return HostapdControl(ClockedReactor(clock) if clock else reactor, str(sockdir / "wlan0"),
                          sockdir / "local", timeout=timeout)


TWO_STATIONS = {"STA-FIRST": "02:00:00:00:00:01\nflags=[AUTHORIZED]\n",
                "STA-NEXT 02:00:00:00:00:01": "02:00:00:00:00:02\nflags=[]\n",
                "STA-NEXT 02:00:00:00:00:02": ""}


def test_control_provides_its_interface(sockdir):
    verifyObject(IHostapdControl, control(sockdir))


@pytest_twisted.ensureDeferred
async def test_status_and_stations(sockdir, fake):
    fake({"STATUS": "state=ENABLED\nssid[0]=lab\n", **TWO_STATIONS})
    ctl = control(sockdir)
    assert (await ctl.status())["ssid"] == "lab"
    assert [s["mac"] for s in await ctl.stations()] == ["02:00:00:00:00:01", "02:00:00:00:00:02"]
    ctl.close()
    assert os.listdir(sockdir / "local") == []


@pytest_twisted.ensureDeferred
async def test_station_list_stops_on_a_cycle(sockdir, fake):
    server = fake({"STA-FIRST": "02:00:00:00:00:01\n", "STA-NEXT 02:00:00:00:00:01": "02:00:00:00:00:01\n"})
    assert len(await control(sockdir).stations()) == 1
    assert len(server.received) == 2


@pytest_twisted.ensureDeferred
async def test_set_ssid_sets_hex_then_reloads(sockdir, fake):
    server = fake(lambda command: "OK\n")
    await control(sockdir).set_ssid("a\nb")
    assert server.received == ["SET ssid2 610a62", "RELOAD"]


@pytest_twisted.ensureDeferred
async def test_an_event_before_the_answer_is_not_the_answer(sockdir, fake):
    fake({"PING": ["<3>AP-STA-CONNECTED 02:00:00:00:00:01", "PONG\n"]})
    assert await control(sockdir).command("PING") == "PONG\n"


@pytest_twisted.ensureDeferred
async def test_a_refusal_is_an_error_that_names_the_command(sockdir, fake):
    fake(lambda command: "FAIL\n")
    with pytest.raises(Unavailable, match="refused SET: FAIL"):
        await control(sockdir).set_ssid("x")


@pytest_twisted.ensureDeferred
async def test_deauthenticate_known_and_unknown_station(sockdir, fake):
    server = fake({"STA 02:00:00:00:00:01": "02:00:00:00:00:01\nflags=[AUTHORIZED]\n",
                   "STA 02:00:00:00:00:09": "FAIL\n", "DEAUTHENTICATE 02:00:00:00:00:01": "OK\n"})
    ctl = control(sockdir)
    await ctl.deauthenticate("02:00:00:00:00:01".upper())
    with pytest.raises(NotFound):
        await ctl.deauthenticate("02:00:00:00:00:09")
    with pytest.raises(InvalidInput):
        await ctl.deauthenticate("02:00:00:00:00:01\nRELOAD")
    assert server.received[-1] == "STA 02:00:00:00:00:09"


@pytest.mark.parametrize("text", ["SET ssid x", "RELOAD", "ATTACH", "TERMINATE", "DISABLE", "PING\nRELOAD",
                                  "STATUS ", "STA", "STA 02:00:00:00:00:01 x", "STA ../../x", "DEAUTHENTICATE",
                                  "", None, "STATUS\x00"])
@pytest_twisted.ensureDeferred
async def test_command_outside_the_whitelist_never_reaches_hostapd(sockdir, fake, text):
    server = fake(lambda command: "OK\n")
    with pytest.raises(InvalidInput):
        await control(sockdir).command(text)
    assert server.received == []


@pytest_twisted.ensureDeferred
async def test_whitelisted_commands_pass_through_and_all_sta_is_assembled(sockdir, fake):
    server = fake({"PING": "PONG\n", "STA 02:00:00:00:00:0a": "FAIL\n", **TWO_STATIONS})
    ctl = control(sockdir)
    assert await ctl.command("ping") == "PONG\n"
    assert await ctl.command("sta 02:00:00:00:00:0A") == "FAIL\n"
    assert await ctl.command("ALL_STA") == "02:00:00:00:00:01\nflags=[AUTHORIZED]\n02:00:00:00:00:02\nflags=[]\n"
    assert server.received[:2] == ["PING", "STA 02:00:00:00:00:0a"]


@pytest_twisted.ensureDeferred
async def test_silent_hostapd_times_out_and_a_late_answer_is_not_taken_for_the_next(sockdir, fake):
    server = fake(lambda command: "state=ENABLED\n" if command == "STATUS" else None)
    clock = Clock()
    ctl = control(sockdir, timeout=2.0, clock=clock)
    ping, fired = ctl.command("PING"), []
    ping.addBoth(lambda result: fired.append(result) or result)
    await wait_for(lambda: server.received == ["PING"])
    clock.advance(1.9)
    assert fired == []
    clock.advance(0.1)
    with pytest.raises(Unavailable, match="did not answer within 2 s"):
        await ping
    try:  # the late answer goes to the socket that asked (gone now), never to the next request
        server.transport.write(b"PONG\n", server.senders[0])
    except OSError:
        pass
    assert (await ctl.status())["state"] == "ENABLED"
    assert server.senders[1] != server.senders[0]


@pytest_twisted.ensureDeferred
async def test_a_command_sent_by_whoever_the_timeout_wakes_gets_its_own_answer(sockdir, fake):
    silent = iter([True])
    server = fake(lambda command: None if next(silent, False) else "state=ENABLED\n")
    clock = Clock()
    ctl = control(sockdir, timeout=2.0, clock=clock)
    retried = ctl.status().addErrback(lambda failure: ctl.status())
    await wait_for(lambda: len(server.received) == 1)
    clock.advance(2.0)
    assert (await retried.addTimeout(5, reactor))["state"] == "ENABLED"


@pytest_twisted.ensureDeferred
async def test_missing_and_dead_sockets_fail_at_once(sockdir):
    with pytest.raises(Unavailable, match="no control socket"):
        await control(sockdir).status()
    # what a kill -9'd hostapd leaves behind: a socket file that nobody reads
    port = reactor.listenUNIXDatagram(str(sockdir / "wlan0"), DatagramProtocol())
    await port.stopListening()
    with pytest.raises(Unavailable, match="not running"):
        await control(sockdir).status()


@pytest_twisted.ensureDeferred
async def test_a_restarted_hostapd_is_found_again(sockdir):
    first = reactor.listenUNIXDatagram(str(sockdir / "wlan0"), FakeHostapd({"PING": "PONG 1\n"}))
    ctl = control(sockdir)
    assert await ctl.command("PING") == "PONG 1\n"
    await first.stopListening()
    os.unlink(sockdir / "wlan0")
    second = reactor.listenUNIXDatagram(str(sockdir / "wlan0"), FakeHostapd({"PING": "PONG 2\n"}))
    try:
        assert await ctl.command("PING") == "PONG 2\n"
    finally:
        await second.stopListening()


def test_paths_too_long_for_a_unix_socket_are_refused(sockdir):
    with pytest.raises(InvalidInput):
        HostapdControl(reactor, "/" + "x" * 120, sockdir)
    with pytest.raises(InvalidInput):
        HostapdControl(reactor, str(sockdir / "wlan0"), Path("/" + "d" * 100))


@pytest_twisted.ensureDeferred
async def test_closed_control_fails_pending_and_new_requests(sockdir, fake):
    fake(lambda command: None)
    ctl = control(sockdir, timeout=30.0)
    pending = ctl.status()
    queued = ctl.status()
    ctl.close()
    for d in (pending, queued):
        with pytest.raises(Unavailable, match="closed"):
            await d


async def wait_for(predicate, timeout=5.0):
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("condition not met")
