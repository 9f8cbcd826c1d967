"""dnsmasq's config, command line and lease file: ParaDrop's dhcp semantics, and no value that can inject."""
import ipaddress
from pathlib import Path

import pytest

from pdserver.errors import InvalidInput
from pdserver.sysconfig.dnsmasq import DhcpConfig, Lease, argv, parse_leases, render, thd_read_leases

LEASES = Path("/var/lib/pd/sysconfig/pd0a1b2c3d.leases")


def cfg(**kwargs) -> DhcpConfig:
    values = dict(interface="pd0a1b2c3d", address=ipaddress.IPv4Interface("10.128.5.1/24"), lease_file=LEASES)
    values.update(kwargs)
    return DhcpConfig(**values)


def options(text: str) -> dict:
    """The config as {key: [values]}, comments left out (dnsmasq's own reading: `key[=value]` per line)."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


class TestRender:
    def test_defaults_serve_paradrops_range_with_the_bridge_as_gateway_and_dns(self):
        assert options(render(cfg())) == {
            "interface": ["pd0a1b2c3d"],
            "dhcp-range": ["10.128.5.100,10.128.5.199,255.255.255.0,12h"],
            "dhcp-option": ["option:router,10.128.5.1", "option:dns-server,10.128.5.1"],
            "dhcp-leasefile": [str(LEASES)],
            "dhcp-authoritative": [""], "domain-needed": [""], "bogus-priv": [""],
        }

    def test_start_is_the_host_offset_and_limit_the_count(self):
        assert options(render(cfg(start=3, limit=250)))["dhcp-range"] == ["10.128.5.3,10.128.5.252,255.255.255.0,12h"]
        assert options(render(cfg(start=10, limit=1)))["dhcp-range"] == ["10.128.5.10,10.128.5.10,255.255.255.0,12h"]

    def test_the_range_is_cut_at_the_last_host_of_the_subnet(self):
        rendered = render(cfg(start=200, limit=150))
        assert options(rendered)["dhcp-range"] == ["10.128.5.200,10.128.5.254,255.255.255.0,12h"]

    def test_offsets_count_from_the_network_not_from_the_address(self):
        rendered = render(cfg(address=ipaddress.IPv4Interface("10.130.0.1/16"), start=256, limit=10, leasetime="1d"))
        assert options(rendered)["dhcp-range"] == ["10.130.1.0,10.130.1.9,255.255.0.0,1d"]

    def test_dns_servers_and_domain(self):
        rendered = options(render(cfg(dns=("192.0.2.53", ipaddress.IPv4Address("198.51.100.1")), domain="chute.lan")))
        assert rendered["dhcp-option"][1] == "option:dns-server,192.0.2.53,198.51.100.1"
        assert rendered["domain"] == ["chute.lan"] and rendered["local"] == ["/chute.lan/"]

    @pytest.mark.parametrize("leasetime", ["12h", "30m", "3600", "120s", "2d", "1w", "infinite"])
    def test_dnsmasq_lease_times(self, leasetime):
        assert options(render(cfg(leasetime=leasetime)))["dhcp-range"][0].endswith("," + leasetime)


class TestParadropLimits:
    @pytest.mark.parametrize("start", [0, 1, 2, -5])
    def test_start_below_3_would_lease_the_gateway_or_the_chutes_own_address(self, start):
        with pytest.raises(InvalidInput) as error:
            render(cfg(start=start))
        assert error.value.field == "start"

    @pytest.mark.parametrize("start", [255, 256, 1000])
    def test_start_past_the_subnet(self, start):
        with pytest.raises(InvalidInput) as error:
            render(cfg(start=start))
        assert error.value.field == "start"

    def test_a_range_over_the_interfaces_own_address_is_refused(self):
        with pytest.raises(InvalidInput) as error:
            render(cfg(address=ipaddress.IPv4Interface("10.0.0.150/24"), start=100, limit=100))
        assert error.value.field == "start" and "10.0.0.150" in error.value.message

    @pytest.mark.parametrize("limit", [0, -1])
    def test_limit_at_least_one(self, limit):
        with pytest.raises(InvalidInput) as error:
            render(cfg(limit=limit))
        assert error.value.field == "limit"

    @pytest.mark.parametrize("network", ["10.0.0.1/31", "10.0.0.1/32", "10.0.0.0/24", "10.0.0.255/24"])
    def test_address_must_be_a_host_of_a_subnet_with_room(self, network):
        with pytest.raises(InvalidInput) as error:
            render(cfg(address=ipaddress.IPv4Interface(network)))
        assert error.value.field == "address"


# Each value tries to end the line, start a comment, or add an option or a second value.
HOSTILE = [
    ("interface", "eth0\ndhcp-script=/tmp/x"), ("interface", "eth0 #"), ("interface", "eth0,lo"),
    ("interface", "-x"), ("interface", ""), ("interface", "a" * 16), ("interface", "eth0\x00"), ("interface", 5),
    ("interface", "eth0\r"), ("interface", "ethé"),
    ("address", "10.0.0.1/24"), ("address", "10.0.0.1/24\nport=0"), ("address", None),
    ("address", ipaddress.IPv6Interface("fd00::1/64")),
    ("start", "100"), ("start", "100\nport=0"), ("start", True), ("start", 100.0), ("start", None),
    ("limit", "100"), ("limit", False), ("limit", 2.5),
    ("leasetime", "12h\ndhcp-script=/bin/sh"), ("leasetime", "12h,foo"), ("leasetime", "12h #"),
    ("leasetime", "-1"), ("leasetime", ""), ("leasetime", "0"), ("leasetime", "1e9"), ("leasetime", "12H"),
    ("leasetime", "99999999999h"), ("leasetime", "\u0661\u0662h"), ("leasetime", 3600), ("leasetime", "infinite\n"),
    ("dns", ("10.0.0.1\nserver=8.8.8.8",)), ("dns", ("10.0.0.1,8.8.8.8",)), ("dns", "10.0.0.1"),
    ("dns", ("0.0.0.0",)), ("dns", ("224.0.0.1",)), ("dns", ("255.255.255.255",)), ("dns", ("fd00::1",)),
    ("dns", (167772161,)), ("dns", ("10.0.0.1",) * 9), ("dns", None),
    ("domain", "lan\naddress=/#/192.0.2.1"), ("domain", "lan/"), ("domain", "a..b"), ("domain", "-a.b"),
    ("domain", ""), ("domain", "x" * 64), ("domain", ".".join(["a" * 60] * 5)), ("domain", "lan #x"),
    ("domain", "l\u0430n"), ("domain", 7),
    ("lease_file", Path("/tmp/a.leases\ndhcp-script=/tmp/x")), ("lease_file", "/tmp/a b"),
    ("lease_file", "/tmp/a #b"), ("lease_file", 'relative.leases'), ("lease_file", '/tmp/"a"'),
    ("lease_file", "/tmp/a\\n"), ("lease_file", "/tmp/a,b"), ("lease_file", "/tmp/../etc/x"), ("lease_file", None),
]


class TestHostile:
    @pytest.mark.parametrize("name,value", HOSTILE, ids=[f"{n}-{i}" for i, (n, _) in enumerate(HOSTILE)])
    def test_refused_naming_the_field(self, name, value):
        with pytest.raises(InvalidInput) as error:
            render(cfg(**{name: value}))
        assert error.value.field == name

    def test_any_accepted_config_has_exactly_our_lines(self):
        """Whatever the values, a rendered config has one line per option we write: the pieces that vary are
        checked, so nothing can slip a line or option in between."""
        accepted = [cfg(), cfg(domain="a-b.c-d", leasetime="infinite", dns=("192.0.2.1",) * 8, start=3, limit=1),
                    cfg(interface="veth.42", lease_file="/s/x_y-z.+@%.leases")]
        for config in accepted:
            lines = render(config).splitlines()
            keys = [line.partition("=")[0] for line in lines if not line.startswith("#")]
            expected = ["interface", "dhcp-range", "dhcp-option", "dhcp-option", "dhcp-leasefile",
                        "dhcp-authoritative", "domain-needed", "bogus-priv"]
            assert keys == expected + (["domain", "local"] if config.domain else [])
            assert all(line.isprintable() and " " not in line for line in lines if not line.startswith("#"))

    @pytest.mark.parametrize("path", ["/tmp/a.conf\n--dhcp-script=/x", "relative.conf", "/tmp/a b.conf"])
    def test_argv_refuses_a_conf_path_dnsmasq_would_misread(self, path):
        with pytest.raises(InvalidInput):
            argv(Path(path))


def test_argv_runs_in_the_foreground_on_our_file_alone():
    assert argv(Path("/s/sysconfig/dnsmasq-pd1.conf"), binary="/usr/sbin/dnsmasq") == [
        "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/s/sysconfig/dnsmasq-pd1.conf", "--pid-file=",
        "--log-facility=-", "--bind-interfaces", "--except-interface=lo", "--no-hosts", "--no-ping"]


LEASE_FILE = """\
1767225600 02:42:ac:11:00:02 10.128.5.123 sensor1 01:02:42:ac:11:00:02
0 52:54:00:AB:CD:EF 10.128.5.124 * *
duid 00:01:00:01:2c:5e:7a:11:52:54:00:12:34:56
1767225600 1234 fd00::5 host6 00:01:00:01:2c
"""


class TestLeases:
    def test_dnsmasq_lines(self):
        assert parse_leases(LEASE_FILE) == [
            Lease(1767225600, "02:42:ac:11:00:02", "10.128.5.123", "sensor1", "01:02:42:ac:11:00:02"),
            Lease(0, "52:54:00:ab:cd:ef", "10.128.5.124", None, None),
        ]

    @pytest.mark.parametrize("garbage", [
        "", "\n\n", "garbage", "1767225600 02:42:ac:11:00:02 10.128.5.123 sensor1",  # half-written
        "1767225600 02:42:ac:11:00:02 10.128.5.123 a b c", "x 02:42:ac:11:00:02 10.128.5.1 h *",
        "-1 02:42:ac:11:00:02 10.128.5.1 h *", "\u0661\u0662 02:42:ac:11:00:02 10.128.5.1 h *",
        "1 02:42:ac:11:00:0 10.128.5.1 h *", "1 zz:42:ac:11:00:02 10.128.5.1 h *", "1 02:42:ac:11:00:02 10.128.5 h *",
        "1 02:42:ac:11:00:02 999.1.1.1 h *", "9" * 5000 + " 02:42:ac:11:00:02 10.0.0.1 h *", "\x00" * 100,
        "1 " + "ab:" * 100000 + "ab 10.0.0.1 h *",
    ])
    def test_garbage_lines_are_skipped(self, garbage):
        good = "5 02:42:ac:11:00:02 10.128.5.9 ok *"
        expected = [Lease(5, "02:42:ac:11:00:02", "10.128.5.9", "ok", None)]
        assert parse_leases(f"{garbage}\n{good}\n{garbage}") == expected

    @pytest.mark.parametrize("hostname,client_id", [("a/b", "xyz"), ("-x", "01:zz"), ("h" * 300, "1:2")])
    def test_odd_hostname_or_client_id_keeps_the_lease_without_them(self, hostname, client_id):
        [lease] = parse_leases(f"5 02:42:ac:11:00:02 10.128.5.9 {hostname} {client_id}")
        assert (lease.ip, lease.hostname, lease.client_id) == ("10.128.5.9", None, None)

    def test_missing_file_has_no_leases(self, tmp_path):
        assert thd_read_leases(tmp_path / "absent.leases") == []

    def test_file_with_invalid_utf8_and_a_truncated_tail(self, tmp_path):
        path = tmp_path / "x.leases"
        path.write_bytes(b"\xff\xfe bad\n7 02:42:ac:11:00:02 10.128.5.9 h\xc3\xa9 *\n8 02:42:ac:11:00:03 10.1")
        assert thd_read_leases(path) == [Lease(7, "02:42:ac:11:00:02", "10.128.5.9", None, None)]
