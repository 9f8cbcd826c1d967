"""The network routes over real HTTP: /network/interfaces (the kernel's), /network/devices (DHCP clients, as
ParaDrop 0.12+ lists them), /config/new-config (takes nothing this machine uses; it only reads the host's
interfaces) and /config/pdconf (ParaDrop's config sections): admin only and documented."""
import ipaddress

import pytest_twisted
from twisted.internet import threads

from pdserver.sysconfig import hostconfig, netlink
from tests.integration.http import get_json, post_json, put_json

ROUTES = ("/api/v1/network/interfaces", "/api/v1/config/new-config", "/api/v1/network/devices",
          "/api/v1/config/pdconf")
PDCONF_KEYS = {"type", "name", "comment", "success", "age"}  # what ParaDrop's pdtools prints of each section


def in_use(device):
    routable = [a for a in device["addresses"] if not ipaddress.ip_interface(a).is_link_local]
    return bool(routable or device["default_route"] or device["master"])


@pytest_twisted.ensureDeferred
async def test_interfaces_are_the_kernels_and_new_config_claims_none_in_use(node):
    token = await node.login()
    code, devices = await get_json(node.url + ROUTES[0], token)
    assert code == 200
    by_name = {d["name"]: d for d in devices}
    kernel = {d["name"]: d for d in await threads.deferToThread(netlink.thd_devices)}
    assert set(by_name) == set(kernel) and by_name["lo"]["kind"] == "loopback"
    assert {d["name"]: d["default_route"] for d in devices} == {n: d["default_route"] for n, d in kernel.items()}
    assert all(set(d) == {"name", "kind", "mac", "addresses", "up", "master", "default_route", "phy"}
               for d in devices)

    code, config = await get_json(node.url + ROUTES[1], token)
    assert code == 200
    assert hostconfig.validate(config) == config
    assert not any(in_use(by_name[name]) for name in config["lan"]["interfaces"])
    assert "proto" not in config["wan"]
    default = [d["name"] for d in devices if d["default_route"]]
    assert config["wan"] == ({"interface": config["wan"]["interface"]} if default else {})
    assert not default or config["wan"]["interface"] in default
    lan = ipaddress.ip_network(f"{config['lan']['ipaddr']}/{config['lan']['netmask']}", strict=False)
    assert not any(lan.overlaps(ipaddress.ip_interface(a).network) for d in devices for a in d["addresses"]
                   if ipaddress.ip_interface(a).version == 4)
    # Without chute networks, no DHCP client and pdconf shows the host config's WAN only.
    assert await get_json(node.url + ROUTES[2], token) == (200, [])
    code, pdconf = await get_json(node.url + ROUTES[3], token)
    assert code == 200 and [(s["type"], s["name"], s["success"]) for s in pdconf] == [
        ("interface", "wan", True), ("networkmanager", "NetworkManager", True)]
    assert pdconf[1]["present"] is False
    assert all(PDCONF_KEYS <= set(s) and isinstance(s["comment"], str) and s["age"] == 0 for s in pdconf)
    # The node's first start stored the same new configuration (it applies nothing); it is a valid PUT body.
    code, stored = await get_json(node.url + "/api/v1/config/hostconfig", token)
    assert code == 200 and stored == config
    code, body = await put_json(node.url + "/api/v1/config/hostconfig", config, token)
    assert code == 202 and body["change_id"]


@pytest_twisted.ensureDeferred
async def test_the_routes_are_for_admins_and_in_the_openapi_document(node):
    admin = await node.login()
    await post_json(node.url + "/api/v1/users", {"username": "viewer", "password": "password-viewer",
                                                 "role": "trusted"}, admin)
    trusted = await node.login("viewer", "password-viewer")
    code, document = await get_json(node.url + "/api/v1/openapi.json")
    assert code == 200
    for path in ROUTES:
        code, body = await get_json(node.url + path)
        assert code == 401 and body["error"]["code"] == "unauthorized"
        code, body = await get_json(node.url + path, trusted)
        assert code == 403 and body["error"]["code"] == "forbidden", path
        operation = document["paths"][path]["get"]
        assert operation["x-permission"] == "write config" and {"401", "403"} <= set(operation["responses"])


@pytest_twisted.ensureDeferred
async def test_a_hostile_host_config_put_is_refused_naming_the_field(node):
    token = await node.login()
    for body, field in [({"wan": {"interface": "eth0\n"}}, "wan.interface"),
                        ({"wifi": [{"id": "ap", "driver": "wired"}]}, "wifi[0].interface"),
                        ({"wifi-interfaces": [{"device": "ghost", "mode": "ap"}]}, "wifi-interfaces[0].device")]:
        code, answer = await put_json(node.url + "/api/v1/config/hostconfig", body, token)
        assert code == 400 and answer["error"]["field"] == field, answer
