"""hostapd: its configuration file, its command line, and a client of its control socket.

Every value that reaches the config file is validated or hex-encoded here, so no SSID, key or name can add a
line to it (the SSID goes out as ``ssid2=<hex>``). The control socket is hostapd's unix datagram interface,
spoken on the reactor: one command at a time, each bounded by a timeout.

What hostapd 2.10 taught us (driver=wired on a veth, and the nl80211 path of its own hwsim tests):
``SET ssid2 <hex>`` changes only the in-memory config (STATUS shows it at once, the beacon does not change);
``RELOAD`` re-applies that config to the driver, derives the WPA PSK again from the passphrase and the new SSID,
and drops associated stations. So ``set_ssid`` is SET + RELOAD, on both drivers. SIGHUP instead re-reads the
file, which forgets a SET: whoever changes the SSID must also write it into the config. STATUS and GET_CONFIG
print the SSID escaped (``\\xNN``, ``\\"``, ``\\\\``); commands are case-sensitive; ALL_STA and LIST_STA are
hostapd_cli loops over STA-FIRST / STA-NEXT, not commands of the socket.
"""
import ipaddress
import itertools
import os
import re
from dataclasses import dataclass
from errno import ECONNREFUSED, ENOENT
from pathlib import Path
from typing import Dict, List, Optional

from twisted.internet import defer
from twisted.internet.protocol import ConnectedDatagramProtocol
from zope.interface import Interface, implementer

from pdserver.errors import InvalidInput, NotFound, Unavailable

MAX_UNIX_PATH = 107  # sun_path holds 108 bytes with the terminating NUL
MAX_STATIONS = 2007  # hostapd's own limit of associated stations
MAX_REPLY = 65536

_IFNAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,14}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_NASID = re.compile(r"[A-Za-z0-9._:-]{1,48}")
_COUNTRY = re.compile(r"[A-Z]{2}")
_PRINTABLE = re.compile(r"[\x20-\x7e]+")
_HWMODES = {"a": "a", "b": "b", "g": "g", "11a": "a", "11b": "b", "11g": "g"}
_CHANNELS = {"a": range(32, 197), "b": range(1, 15), "g": range(1, 15)}
DRIVERS = ("nl80211", "wired")


@dataclass(frozen=True)
class ApConfig:
    interface: str
    ssid: str
    ctrl_dir: Path
    driver: str = "nl80211"
    key: Optional[str] = None
    hidden: bool = False
    isolate: bool = False
    maxassoc: Optional[int] = None
    hwmode: str = "g"
    channel: int = 1
    country: Optional[str] = None
    bridge: Optional[str] = None
    nasid: Optional[str] = None
    acct_server: Optional[str] = None
    acct_secret: Optional[str] = None
    acct_interval: Optional[int] = None

    @property
    def ctrl_path(self) -> Path:
        """The control socket hostapd makes for this interface."""
        return Path(self.ctrl_dir) / self.interface


def _ifname(value, field: str) -> str:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise InvalidInput(f"{field} must be an interface name (1-15 of A-Z a-z 0-9 _ . -)", field=field)
    return value


def _integer(value, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{field} must be an integer from {low} to {high}", field=field)
    return value


def _flag(value, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", field=field)
    return value


def _printable(value, field: str, low: int, high: int) -> str:
    if not isinstance(value, str) or not low <= len(value) <= high or not _PRINTABLE.fullmatch(value):
        raise InvalidInput(f"{field} must be {low} to {high} printable ASCII characters", field=field)
    return value


def ssid_hex(ssid, field: str = "ssid") -> str:
    """The SSID as hostapd's ``ssid2`` hex: any 1-32 bytes of UTF-8, nothing that a parser could misread."""
    try:
        raw = ssid.encode("utf-8") if isinstance(ssid, str) else None
    except UnicodeEncodeError:
        raw = None
    if raw is None or not 1 <= len(raw) <= 32:
        raise InvalidInput("ssid must be text of 1 to 32 bytes in UTF-8", field=field)
    return raw.hex()


def validate_mac(mac) -> str:
    """A station address in hostapd's form (lower case, colons)."""
    if isinstance(mac, str) and _MAC.fullmatch(mac.lower()):
        return mac.lower()
    raise InvalidInput("mac must be a MAC address like 02:00:00:00:00:01", field="mac")


def _ctrl_dir(value) -> str:
    text = str(value)
    if not Path(text).is_absolute() or not _PRINTABLE.fullmatch(text):
        raise InvalidInput("ctrl_dir must be an absolute path of printable ASCII", field="ctrl_dir")
    return text


def _acct_server(value) -> tuple:
    """``addr`` or ``IPv4:port`` or ``[IPv6]:port`` -> (address, port); hostapd wants an IP literal."""
    text, port = value if isinstance(value, str) else "", "1813"
    match = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([0-9.]+):(\d{1,5})", text)
    if match:
        text, port = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise InvalidInput("acct_server must be an IP address, optionally with :port", field="acct_server")
    return str(address), _integer(int(port), "acct_server", 1, 65535)


def render(cfg: ApConfig) -> str:
    """The hostapd config file for ``cfg``; InvalidInput naming the field for any value it cannot hold."""
    if cfg.driver not in DRIVERS:
        raise InvalidInput(f"driver must be one of {', '.join(DRIVERS)}", field="driver")
    interface = _ifname(cfg.interface, "interface")
    ctrl_dir = _ctrl_dir(cfg.ctrl_dir)
    if len(os.path.join(ctrl_dir, interface).encode()) > MAX_UNIX_PATH:
        raise InvalidInput(f"ctrl_dir is too long for a unix socket path ({MAX_UNIX_PATH} bytes)", field="ctrl_dir")
    lines = ["# written by pdserver: change the chute or the host config, not this file",
             f"interface={interface}", f"driver={cfg.driver}", f"ctrl_interface={ctrl_dir}",
             f"ssid2={ssid_hex(cfg.ssid)}"]
    if cfg.bridge is not None:
        lines.append(f"bridge={_ifname(cfg.bridge, 'bridge')}")
    if cfg.driver == "nl80211":
        lines += _radio_lines(cfg)
    if _flag(cfg.hidden, "hidden"):
        lines.append("ignore_broadcast_ssid=1")
    if _flag(cfg.isolate, "isolate"):
        lines.append("ap_isolate=1")
    if cfg.maxassoc is not None:
        lines.append(f"max_num_sta={_integer(cfg.maxassoc, 'maxassoc', 1, MAX_STATIONS)}")
    if cfg.key is not None:
        key = _printable(cfg.key, "key", 8, 63)
        lines += ["auth_algs=1", "wpa=2", "wpa_key_mgmt=WPA-PSK", "rsn_pairwise=CCMP", f"wpa_passphrase={key}"]
    if cfg.nasid is not None:
        if not isinstance(cfg.nasid, str) or not _NASID.fullmatch(cfg.nasid):
            raise InvalidInput("nasid must be 1-48 of A-Z a-z 0-9 . _ : -", field="nasid")
        lines.append(f"nas_identifier={cfg.nasid}")
    lines += _accounting_lines(cfg)
    return "\n".join(lines) + "\n"


def _radio_lines(cfg: ApConfig) -> List[str]:
    mode = _HWMODES.get(cfg.hwmode) if isinstance(cfg.hwmode, str) else None
    if mode is None:
        raise InvalidInput("hwmode must be one of 11a, 11b, 11g (or a, b, g)", field="hwmode")
    channels = _CHANNELS[mode]
    lines = [f"hw_mode={mode}", f"channel={_integer(cfg.channel, 'channel', channels.start, channels.stop - 1)}"]
    if cfg.country is not None:
        if not isinstance(cfg.country, str) or not _COUNTRY.fullmatch(cfg.country):
            raise InvalidInput("country must be two capital letters (ISO 3166-1)", field="country")
        lines += [f"country_code={cfg.country}", "ieee80211d=1"]
    return lines


def _accounting_lines(cfg: ApConfig) -> List[str]:
    if cfg.acct_server is None:
        for field in ("acct_secret", "acct_interval"):
            if getattr(cfg, field) is not None:
                raise InvalidInput(f"{field} needs acct_server", field=field)
        return []
    address, port = _acct_server(cfg.acct_server)
    if cfg.acct_secret is None:
        raise InvalidInput("acct_server needs acct_secret", field="acct_secret")
    lines = [f"acct_server_addr={address}", f"acct_server_port={port}",
             f"acct_server_shared_secret={_printable(cfg.acct_secret, 'acct_secret', 1, 128)}"]
    if cfg.acct_interval is not None:
        lines.append(f"radius_acct_interim_interval={_integer(cfg.acct_interval, 'acct_interval', 60, 86400)}")
    return lines


def argv(conf_path, binary: str = "hostapd") -> list:
    """hostapd in the foreground (the Supervisor owns it) with only our config file."""
    if not Path(conf_path).is_absolute():
        raise InvalidInput("conf_path must be an absolute path", field="conf_path")
    return [binary, str(conf_path)]


# The control socket's replies.

_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "e": b"\x1b", "\\": b"\\", '"': b'"'}


def printf_decode(text: str) -> bytes:
    """Undo hostapd's printf_encode (how STATUS prints an SSID): ``\\xNN``, octal, ``\\n`` and friends."""
    out, i = bytearray(), 0
    while i < len(text):
        char = text[i]
        if char != "\\" or i + 1 == len(text):
            out += char.encode("utf-8", "surrogateescape")
            i += 1
            continue
        nxt = text[i + 1]
        hexa = re.match(r"[0-9a-fA-F]{1,2}", text[i + 2:i + 4]) if nxt == "x" else None
        octal = re.match(r"[0-7]{1,3}", text[i + 1:i + 4])
        if hexa:
            out.append(int(hexa.group(), 16))
            i += 2 + len(hexa.group())
        elif octal:
            out.append(int(octal.group(), 8) & 0xFF)
            i += 1 + len(octal.group())
        else:
            out += _ESCAPES.get(nxt, nxt.encode("utf-8", "surrogateescape"))
            i += 2
    return bytes(out)


def parse_fields(text: str) -> Dict[str, str]:
    """``key=value`` lines into a dict; lines without ``=`` are skipped (it is another program's output)."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key:
            fields[key] = value
    return fields


def parse_status(text: str) -> Dict[str, str]:
    """STATUS as a dict, SSIDs (``ssid[N]``) decoded to text, and ``ssid`` for the first BSS."""
    fields = parse_fields(text)
    for key in [k for k in fields if re.fullmatch(r"ssid\[\d+\]", k)]:
        fields[key] = printf_decode(fields[key]).decode("utf-8", "replace")
    if "ssid[0]" in fields:
        fields.setdefault("ssid", fields["ssid[0]"])
    return fields


def parse_station(text: str) -> Optional[dict]:
    """A STA / STA-FIRST / STA-NEXT reply: the MAC line, then hostapd's fields; None for "" or FAIL."""
    mac, _, rest = text.partition("\n")
    if not _MAC.fullmatch(mac.strip()):
        return None
    return {**parse_fields(rest), "mac": mac.strip()}


# The control socket client.

class IHostapdControl(Interface):
    """hostapd's control socket. Every method returns a Deferred; a hostapd that is not there or does not
    answer in time fails it with pdserver.errors.Unavailable."""

    def status():
        """-> STATUS as a dict (``state``, ``ssid``, and hostapd's other fields)."""

    def stations():
        """-> a list of dicts: ``mac`` and hostapd's fields of each station."""

    def deauthenticate(mac):
        """Kick a station; NotFound when hostapd does not know it."""

    def set_ssid(ssid):
        """Change the SSID now (stations are dropped and must associate again)."""

    def command(text):
        """-> hostapd's raw answer to a whitelisted command (for the websocket)."""

    def close():
        """Fail what is pending and release the local socket."""


class _Endpoint(ConnectedDatagramProtocol):
    def __init__(self, owner):
        self.owner = owner
        self.failure = None
        self.refused = False

    def datagramReceived(self, data):
        self.owner._received(data)

    def connectionFailed(self, failure):
        self.failure = failure

    def connectionRefused(self):
        self.refused = True


_ids = itertools.count()

# command() verb -> takes a MAC argument. Queries, plus the kick that the stations route already allows;
# never SET, RELOAD, ATTACH (its events would be read as replies), DISABLE or TERMINATE.
WEBSOCKET_COMMANDS = {"PING": False, "STATUS": False, "MIB": False, "GET_CONFIG": False, "STA-FIRST": False,
                      "ALL_STA": False, "STA": True, "STA-NEXT": True, "DEAUTHENTICATE": True,
                      "DISASSOCIATE": True}


@implementer(IHostapdControl)
class HostapdControl:
    """One command in flight at a time (hostapd answers in order and its replies carry no id). After a
    timeout or a failed send the local socket is replaced, so a late answer is never taken for the next one;
    a hostapd restarted by the Supervisor is found again on the next command."""

    def __init__(self, reactor, ctrl_path: str, local_dir: Path, timeout: float = 2.0):
        self._reactor = reactor
        self._ctrl_path = str(ctrl_path)
        self._local_dir = Path(local_dir)
        self._timeout = timeout
        self._lock = defer.DeferredLock()
        self._port = self._endpoint = self._local = None
        self._pending = self._timer = None
        self._closed = False
        if len(self._ctrl_path.encode()) > MAX_UNIX_PATH:
            raise InvalidInput("ctrl_path is too long for a unix socket path", field="ctrl_path")
        if len(str(self._local_path(10 ** 9)).encode()) > MAX_UNIX_PATH:
            raise InvalidInput("local_dir is too long for a unix socket path", field="local_dir")

    def status(self):
        return self._request("STATUS").addCallback(parse_status)

    @defer.inlineCallbacks
    def stations(self):
        found, reply = {}, (yield self._request("STA-FIRST"))
        while len(found) < MAX_STATIONS:
            station = parse_station(reply)
            if station is None or station["mac"] in found:
                break
            found[station["mac"]] = station
            reply = yield self._request(f"STA-NEXT {station['mac']}")
        return list(found.values())

    @defer.inlineCallbacks
    def deauthenticate(self, mac):
        mac = validate_mac(mac)
        if parse_station((yield self._request(f"STA {mac}"))) is None:
            raise NotFound(f"no station {mac} on this access point", field="mac")
        yield self._expect_ok(f"DEAUTHENTICATE {mac}")

    @defer.inlineCallbacks
    def set_ssid(self, ssid):
        yield self._expect_ok(f"SET ssid2 {ssid_hex(ssid)}")
        yield self._expect_ok("RELOAD")

    def command(self, text):
        words = text.split(" ") if isinstance(text, str) and _PRINTABLE.fullmatch(text) else []
        verb = words[0].upper() if words else ""
        if verb not in WEBSOCKET_COMMANDS or len(words) != 1 + WEBSOCKET_COMMANDS[verb]:
            return defer.fail(InvalidInput(f"allowed commands: {', '.join(sorted(WEBSOCKET_COMMANDS))} "
                                           "(a MAC after STA, STA-NEXT, DEAUTHENTICATE, DISASSOCIATE)",
                                           field="command"))
        if verb == "ALL_STA":
            return self.stations().addCallback(_format_stations)
        try:
            args = [validate_mac(word) for word in words[1:]]
        except InvalidInput as e:
            return defer.fail(e)
        return self._request(" ".join([verb] + args))

    def close(self):
        self._closed = True
        self._drop_port()
        self._finish(Unavailable("hostapd control closed"))

    # The exchange.

    @defer.inlineCallbacks
    def _expect_ok(self, command):
        reply = yield self._request(command)
        if reply.strip() != "OK":
            verb = command.split(" ")[0]
            raise Unavailable(f"hostapd refused {verb}: {reply.strip()[:200] or 'no answer'}")

    def _request(self, command: str):
        return self._lock.run(self._exchange, command.encode())

    def _exchange(self, command: bytes, retry: bool = True):
        if self._closed:
            return defer.fail(Unavailable("hostapd control closed"))
        fresh = self._port is None
        if fresh:
            try:
                self._open()
            except Unavailable as e:
                return defer.fail(e)
        self._pending = defer.Deferred()
        pending = self._pending
        self._timer = self._reactor.callLater(self._timeout, self._timed_out)
        try:
            self._port.write(command)
            sent = not self._endpoint.refused
        except OSError:
            sent = False
        if sent:
            return pending
        self._finish(None)
        self._drop_port()
        if retry and not fresh:
            return self._exchange(command, retry=False)  # hostapd restarted since our last command
        return defer.fail(Unavailable(f"hostapd is not running (control socket {self._ctrl_path} refused)"))

    def _open(self):
        self._local = self._local_path(next(_ids))
        self._local_dir.mkdir(parents=True, exist_ok=True)
        _unlink(self._local)
        endpoint = _Endpoint(self)
        port = self._reactor.connectUNIXDatagram(self._ctrl_path, endpoint, maxPacketSize=MAX_REPLY,
                                                 mode=0o600, bindAddress=str(self._local))
        if endpoint.failure is not None:
            _unlink(self._local)
            reason = endpoint.failure.value
            errno = getattr(reason, "errno", None)
            if errno == ENOENT:
                raise Unavailable(f"hostapd is not running (no control socket {self._ctrl_path})")
            if errno == ECONNREFUSED:
                raise Unavailable(f"hostapd is not running (control socket {self._ctrl_path} refused)")
            raise Unavailable(f"cannot reach hostapd at {self._ctrl_path}: {reason}")
        self._port, self._endpoint = port, endpoint

    def _received(self, data: bytes):
        if data.startswith(b"<"):
            return  # an unsolicited event (a monitor's; we never ATTACH), not an answer
        self._finish(data.decode("utf-8", "replace"))

    def _timed_out(self):
        self._timer = None
        self._drop_port()  # first: whoever the failure wakes may send the next command at once
        self._finish(Unavailable(f"hostapd did not answer within {self._timeout:g} s ({self._ctrl_path})"))

    def _finish(self, result):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        pending, self._pending = self._pending, None
        if pending is None or result is None:
            return
        if isinstance(result, Exception):
            pending.errback(result)
        else:
            pending.callback(result)

    def _drop_port(self):
        port, self._port, self._endpoint = self._port, None, None
        if port is not None:
            port.stopListening()
        if self._local is not None:
            _unlink(self._local)
            self._local = None

    def _local_path(self, number: int) -> Path:
        return self._local_dir / f"c{os.getpid()}-{number}"


def _format_stations(stations: List[dict]) -> str:
    """ALL_STA as hostapd_cli prints it: each station's MAC line, then its fields."""
    blocks = []
    for station in stations:
        fields = [f"{k}={v}" for k, v in station.items() if k != "mac"]
        blocks.append("\n".join([station["mac"]] + fields) + "\n")
    return "".join(blocks)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
