"""SSH keys of the admin account over real HTTP to an in-process node: the answers pdtools 0.13.2 reads, roles,
audit records, hostile keys refused with nothing stored, and the mirror into a host user's authorized_keys."""
import os
import stat
from urllib.parse import quote

import pytest
import pytest_twisted
import treq
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pdserver.sysconfig import ssh_keys
from tests.integration.http import get_json, post_json

URL = "/api/v1/config/sshKeys/paradrop"


def key_line(comment="alice@laptop"):
    line = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


async def delete(url, token):
    response = await treq.delete(url, headers={"Authorization": f"Bearer {token}"})
    return response.code, await treq.json_content(response)


async def user_token(node, owner, name, role):
    code, body, _ = await post_json(node.url + "/api/v1/users",
                                    {"username": name, "password": "password-" + name, "role": role}, owner)
    assert code == 201, body
    return await node.login(name, "password-" + name)


@pytest_twisted.ensureDeferred
async def test_an_admin_adds_lists_and_deletes_keys_and_each_change_is_audited(node):
    owner = await node.login()
    admin = await user_token(node, owner, "admin1", "admin")
    assert await get_json(node.url + URL, admin) == (200, [])
    line = key_line()
    code, added, _ = await post_json(node.url + URL, {"key": line + "\n"}, admin)  # a .pub file's last newline
    assert code == 201, added
    assert added["key"] == line and added["type"] == "ssh-ed25519" and added["fingerprint"].startswith("SHA256:")
    code, again, _ = await post_json(node.url + URL, {"key": line}, owner)
    assert code == 409 and again["error"]["field"] == "key"

    assert await get_json(node.url + URL, owner) == (200, [line])  # ParaDrop's answer: the key lines
    code, details = await get_json(node.url + URL + "?details=true", owner)
    assert code == 200 and details == [added]
    path = node.node.settings.authorized_keys_path
    assert path.read_text() == line + "\n" and stat.S_IMODE(os.stat(path).st_mode) == 0o600

    code, gone = await delete(f"{node.url}{URL}?fingerprint={quote(added['fingerprint'], safe='')}", admin)
    assert code == 200 and gone["fingerprint"] == added["fingerprint"]
    assert await get_json(node.url + URL, owner) == (200, [])
    code, body = await delete(f"{node.url}{URL}?fingerprint={quote(added['fingerprint'], safe='')}", admin)
    assert code == 404 and body["error"]["field"] == "fingerprint"

    code, records = await get_json(node.url + "/api/v1/audit?actor=admin1", owner)
    seen = [(r["action"], r["result"], r["target"], r["detail"]["fingerprint"]) for r in records
            if r["action"].startswith("ssh-key")]
    assert seen == [("ssh-key-delete", "succeeded", "paradrop", added["fingerprint"]),
                    ("ssh-key-add", "succeeded", "paradrop", added["fingerprint"])]


@pytest_twisted.ensureDeferred
async def test_a_fingerprint_whose_plus_was_sent_unencoded_still_deletes_its_key(node):
    owner = await node.login()
    line = next(line for line in iter(key_line, None) if "+" in ssh_keys.parse_key(line).fingerprint)
    code, added, _ = await post_json(node.url + URL, {"key": line}, owner)
    assert code == 201
    code, gone = await delete(f"{node.url}{URL}?fingerprint={added['fingerprint']}", owner)
    assert code == 200 and gone["key"] == line


@pytest_twisted.ensureDeferred
async def test_only_admins_and_owners_see_or_change_keys(node):
    owner = await node.login()
    for role in ("guest", "user", "trusted"):
        token = await user_token(node, owner, role + "1", role)
        code, body = await get_json(node.url + URL, token)
        assert code == 403 and body["error"]["code"] == "forbidden", role
        code, body, _ = await post_json(node.url + URL, {"key": key_line()}, token)
        assert code == 403, role
        code, body = await delete(node.url + URL + "?fingerprint=SHA256:x", token)
        assert code == 403, role
    assert (await get_json(node.url + URL))[0] == 401
    assert await get_json(node.url + URL, owner) == (200, [])


@pytest_twisted.ensureDeferred
async def test_keys_belong_to_the_admin_account_only(node):
    owner = await node.login()
    code, body, _ = await post_json(node.url + "/api/v1/config/sshKeys/root", {"key": key_line()}, owner)
    assert code == 404 and body["error"]["field"] == "user"
    code, body = await get_json(node.url + "/api/v1/config/sshKeys/root", owner)
    assert code == 404 and body["error"]["field"] == "user"


HOSTILE = {
    "a second line": lambda good: good + "\n" + key_line("second"),
    "an options prefix": lambda good: 'command="/bin/sh -c id",no-pty ' + good,
    "a huge key": lambda good: "ssh-ed25519 " + "A" * 9000,
    "bad base64": lambda good: "ssh-ed25519 !!notbase64!! x",
    "a wrong embedded type": lambda good: "ssh-rsa " + good.split()[1],
    "a control character": lambda good: good + "\x1b[2J",
    "not a string": lambda good: ["ssh-ed25519", good.split()[1]],
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest_twisted.ensureDeferred
async def test_hostile_keys_are_refused_naming_the_field_and_nothing_is_stored(node, name):
    owner = await node.login()
    code, body, _ = await post_json(node.url + URL, {"key": HOSTILE[name](key_line())}, owner)
    assert code == 400, body
    assert body["error"]["field"] == "key"
    assert await get_json(node.url + URL, owner) == (200, [])
    assert not node.node.settings.authorized_keys_path.exists()


@pytest_twisted.ensureDeferred
async def test_bodies_other_than_one_key_are_refused(node):
    owner = await node.login()
    for body in ({}, {"key": key_line(), "options": "no-pty"}, {"keys": [key_line()]}, [key_line()]):
        code, answer, _ = await post_json(node.url + URL, body, owner)
        assert code == 400, (body, answer)


@pytest_twisted.ensureDeferred
async def test_keys_are_mirrored_into_the_host_users_file(start_node, tmp_path):
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    mirror = home / "authorized_keys"
    mirror.write_text("ssh-ed25519 AAAA-kept-as-it-is admin\n")
    node = await start_node(ssh_authorized_keys_path=str(mirror))
    owner = await node.login()
    line = key_line()
    code, added, _ = await post_json(node.url + URL, {"key": line}, owner)
    assert code == 201, added
    assert mirror.read_text() == f"ssh-ed25519 AAAA-kept-as-it-is admin\n{ssh_keys.BEGIN}\n{line}\n{ssh_keys.END}\n"


@pytest_twisted.ensureDeferred
async def test_the_openapi_document_names_the_routes_pdtools_0_13_calls_and_ours(node):
    code, doc = await get_json(node.url + "/api/v1/openapi.json")
    assert code == 200
    paths = doc["paths"]
    keys = paths["/api/v1/config/sshKeys/{user}"]
    assert set(keys) == {"get", "post", "delete"}
    assert {op["x-permission"] for op in keys.values()} == {"manage ssh keys"}
    assert keys["post"]["requestBody"]["content"]["application/json"]["schema"]["required"] == ["key"]
    assert {"201", "400", "403", "404", "409"} <= set(keys["post"]["responses"])
    assert [p["name"] for p in keys["delete"]["parameters"]] == ["user", "fingerprint"]
    for path in ("/api/v1/host/reboot", "/api/v1/host/shutdown"):
        assert paths[path]["post"]["x-permission"] == "reboot or power off the host"
        assert {"202", "409", "503"} <= set(paths[path]["post"]["responses"])
    change = paths["/api/v1/changes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert change["properties"]["updateType"]["enum"] == ["reboot", "shutdown"]
    for path in ("/snapd/v2/interfaces", "/api/v1/snap/interfaces"):
        assert paths[path]["get"]["x-permission"] == "read config"
