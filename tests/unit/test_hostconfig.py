"""The host configuration: ParaDrop's keys validated with errors naming the field, and the first configuration
(new_config) that never takes what the machine already uses."""
import pytest
import yaml

from pdserver.errors import InvalidInput
from pdserver.sysconfig.hostconfig import DEFAULT, HostConfigStore, new_config, validate


def device(name, kind="ethernet", addresses=(), default_route=False, master=None, phy=None, up=True):
    return {"name": name, "kind": kind, "mac": "02:00:00:00:00:01", "addresses": list(addresses), "up": up,
            "master": master, "default_route": default_route, "phy": phy}


LAPTOP = [
    device("lo", "loopback", ["127.0.0.1/8", "::1/128"]),
    device("eth0", addresses=["10.0.0.23/24", "fe80::1/64"], default_route=True),  # the laptop's network
    device("eth1", addresses=["fe80::2/64"]),  # free: only a link-local address
    device("eth2", master="br0"),  # in the host's own bridge
    device("br0", "bridge", ["192.168.50.1/24"]),
    device("wlp2s0", "wifi", ["192.168.1.40/24"], phy="phy0"),  # the laptop's Wi-Fi, in use
    device("wlan1", "wifi", phy="phy1"),  # a free radio
    device("docker0", "bridge", ["172.17.0.1/16"]),
    device("veth12ab", "veth", master="docker0"),
]


def test_new_config_claims_nothing_in_use_and_reads_the_wan():
    config = new_config(LAPTOP)
    assert config["wan"] == {"interface": "eth0"}  # no proto: read, never configured
    assert config["lan"]["interfaces"] == ["eth1"]
    assert config["wifi"] == [{"id": "phy1", "channel": 1, "hwmode": "11g"}]
    assert config["wifi-interfaces"] == []
    # The LAN subnet avoids the 10.0.0.0/24 the laptop is on.
    assert config["lan"]["ipaddr"] == "10.0.1.1" and config["lan"]["netmask"] == "255.255.255.0"
    assert validate(config) == config


def test_new_config_of_a_router_takes_its_free_ports_and_radios():
    router = [device("lo", "loopback", ["127.0.0.1/8"]), device("eth0", addresses=["203.0.113.5/24"],
                                                                  default_route=True),
              device("eth1"), device("eth2", up=False),
              device("wlan0", "wifi", phy="phy0"), device("wlan1", "wifi", phy="phy1"),
              device("wlan2", "wifi", phy="phy2")]
    config = new_config(router)
    assert config["lan"]["interfaces"] == ["eth1", "eth2"] and config["lan"]["ipaddr"] == "10.0.0.1"
    assert [(r["id"], r["channel"]) for r in config["wifi"]] == [("phy0", 1), ("phy1", 6), ("phy2", 11)]
    validate(config)


def test_new_config_without_a_default_route_has_no_wan_and_prefers_an_ipv4_default():
    assert new_config([device("eth0")])["wan"] == {}
    both = [device("eth0", addresses=["2001:db8::5/64"], default_route=True),
            device("eth1", addresses=["198.51.100.7/24"], default_route=True)]
    assert new_config(both)["wan"] == {"interface": "eth1"}
    assert new_config(both)["lan"]["interfaces"] == []


def test_paradrops_own_generated_host_config_is_accepted():
    """The keys ParaDrop's generateHostConfig writes (firewall blocks, zerotier, autoUpdate, radio profiles)."""
    paradrop = {
        "firewall": {"defaults": {"input": "ACCEPT", "output": "ACCEPT", "forward": "ACCEPT"}},
        "lan": {"interfaces": ["eth1"], "proto": "static", "ipaddr": "10.0.0.1", "netmask": "255.255.255.0",
                "dhcp": {"start": 100, "limit": 100, "leasetime": "12h"},
                "firewall": {"defaults": {"conntrack": "1", "input": "ACCEPT", "output": "ACCEPT",
                                          "forward": "ACCEPT"}, "forwarding": [{"src": "lan", "dest": "wan"}]}},
        "wan": {"interface": "eth0", "proto": "dhcp", "firewall": {"defaults": {
            "conntrack": "1", "masq": "1", "input": "ACCEPT", "output": "ACCEPT", "forward": "ACCEPT",
            "masq_src": ["10.0.0.0/24", "10.128.0.0/9"]}}},
        "wifi": [{"id": "pci-wifi-0", "htmode": "VHT20", "tx_stbc": 1, "rx_stbc": 1, "short_gi_20": True,
                  "short_gi_40": True, "short_gi_80": True, "channel": 36, "hwmode": "11a"}],
        "wifi-interfaces": [{"device": "pci-wifi-0", "ssid": "ParaDrop", "mode": "ap", "network": "lan",
                             "encryption": "psk2", "key": "password123"}],
        "system": {"autoUpdate": True, "chuteSubnetPool": "10.128.0.0/9", "chutePrefixSize": 24,
                   "onMissingWiFi": None},
        "telemetry": {"enabled": True, "interval": 60},
        "zerotier": {"enabled": True, "networks": []},
    }
    assert validate(paradrop)["zerotier"] == {"enabled": True, "networks": []}


def test_a_radio_may_name_its_interface_and_the_wired_driver_needs_one():
    config = {"wifi": [{"id": "lan-ap", "driver": "wired", "interface": "eth3"}],
              "wifi-interfaces": [{"device": "lan-ap", "mode": "ap", "ssid": "chutes"}]}
    assert validate(config)["wifi"][0]["driver"] == "wired"
    assert validate({"wifi": [{"id": "phy0", "driver": "nl80211"}]})
    with pytest.raises(InvalidInput) as e:
        validate({"wifi": [{"id": "lan-ap", "driver": "wired"}]})
    assert e.value.field == "wifi[0].interface"
    with pytest.raises(InvalidInput) as e:
        validate({"wifi": [{"id": "lan-ap", "driver": "madwifi", "interface": "eth3"}]})
    assert e.value.field == "wifi[0].driver"


@pytest.mark.parametrize("config, field", [
    ({"wan": {"proto": "carrier-pigeon"}}, "wan.proto"),
    ({"wan": {"interface": "eth0 -o x"}}, "wan.interface"),
    ({"wan": {"interface": "-eth0"}}, "wan.interface"),
    ({"wan": {"interface": "eth0\n"}}, "wan.interface"),
    ({"wan": {"ipaddr": "300.1.1.1"}}, "wan.ipaddr"),
    ({"wan": {"netmask": "255.0.255.0"}}, "wan.netmask"),
    ({"lan": {"interfaces": ["eth1", "eth1"]}}, "lan.interfaces"),
    ({"lan": {"netmask": "255.255.255.0", "dhcp": {"start": 200, "limit": 100}}}, "lan.dhcp"),
    ({"lan": {"dhcp": {"leasetime": "12h\ndhcp-script=/tmp/x"}}}, "lan.dhcp.leasetime"),
    ({"lan": {"dhcp": {"leasetime": "--port=53"}}}, "lan.dhcp.leasetime"),
    ({"lan": {"interfaces": ["eth0"]}, "wan": {"interface": "eth0"}}, "lan.interfaces"),
    ({"lan": {"firewall": {"forwarding": [{"src": "lan", "dest": "wan;drop"}]}}}, "lan.firewall.forwarding[0].dest"),
    ({"wifi": [{"id": "radio0", "channel": "six"}]}, "wifi[0].channel"),
    ({"wifi": [{"id": "r"}, {"id": "r"}]}, "wifi[1].id"),
    ({"wifi-interfaces": [{"device": "ghost", "mode": "ap"}]}, "wifi-interfaces[0].device"),
    ({"wifi": [{"id": "r"}], "wifi-interfaces": [{"device": "r", "mode": "ap", "ssid": "a\nb"}]},
     "wifi-interfaces[0].ssid"),
    ({"wifi": [{"id": "r"}], "wifi-interfaces": [{"device": "r", "mode": "ap", "key": "short"}]},
     "wifi-interfaces[0].key"),
    ({"wifi": [{"id": "r"}], "wifi-interfaces": [{"device": "r", "mode": "ap", "key": "12345678\n"}]},
     "wifi-interfaces[0].key"),
    ({"system": {"chuteSubnetPool": "10.128.0.1/9"}}, "system.chuteSubnetPool"),
    ({"system": {"chuteSubnetPool": "10.128.0.0/24", "chutePrefixSize": 16}}, "system.chutePrefixSize"),
    ({"system": {"chutePrefixSize": 2 ** 70}}, "system.chutePrefixSize"),
    ({"firewall": {"defaults": {"input": "accept all"}}}, "firewall.defaults.input"),
    ({"zerotier": {"networks": ["not-a-network-id"]}}, "zerotier.networks[0]"),
    ({"vpn": {}}, "vpn"),
])
def test_invalid_and_hostile_values_are_refused_naming_the_field(config, field):
    with pytest.raises(InvalidInput) as e:
        validate(config)
    assert e.value.field == field, e.value.message


def test_the_default_is_valid_and_reads_the_wan_only():
    assert validate({}) == DEFAULT
    assert "proto" not in DEFAULT["wan"]


def test_the_store_round_trips_a_validated_config(tmp_path):
    store = HostConfigStore(tmp_path / "hostconfig.yaml")
    config = validate(new_config(LAPTOP))
    store.save(config)
    assert store.load() == config
    assert yaml.safe_load((tmp_path / "hostconfig.yaml").read_text()) == config
    assert (tmp_path / "hostconfig.yaml").stat().st_mode & 0o777 == 0o600
