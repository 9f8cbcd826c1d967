"""SSH key parsing and the authorized_keys files: what is taken, what is refused and why, and that nothing a
client sends can put an option or a second line into a file sshd reads."""
import base64
import os
import stat
import struct

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from pdserver.errors import Conflict, InvalidInput, NotFound, Unavailable
from pdserver.sysconfig import ssh_keys
from pdserver.sysconfig.ssh_keys import AuthorizedKeys, parse_key


def openssh(public_key, comment="me@laptop") -> str:
    line = public_key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return f"{line} {comment}" if comment else line


def ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def ed25519_line(comment="me@laptop") -> str:
    return openssh(ed25519.Ed25519PrivateKey.generate().public_key(), comment)


@pytest.fixture(scope="module")
def keys():
    """One line of each supported type (the sk- ones built as a FIDO token's .pub is: key, then application)."""
    ed = ed25519.Ed25519PrivateKey.generate().public_key()
    raw_ed = ed.public_bytes(Encoding.Raw, PublicFormat.Raw)
    point = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.X962,
                                                                             PublicFormat.UncompressedPoint)
    sk_ed = ssh_string(b"sk-ssh-ed25519@openssh.com") + ssh_string(raw_ed) + ssh_string(b"ssh:")
    sk_ec = (ssh_string(b"sk-ecdsa-sha2-nistp256@openssh.com") + ssh_string(b"nistp256") + ssh_string(point)
             + ssh_string(b"ssh:"))
    return {
        "ssh-ed25519": openssh(ed),
        "ecdsa-sha2-nistp256": openssh(ec.generate_private_key(ec.SECP256R1()).public_key()),
        "ecdsa-sha2-nistp384": openssh(ec.generate_private_key(ec.SECP384R1()).public_key()),
        "ecdsa-sha2-nistp521": openssh(ec.generate_private_key(ec.SECP521R1()).public_key()),
        "ssh-rsa": openssh(rsa.generate_private_key(65537, 2048).public_key()),
        "sk-ssh-ed25519@openssh.com": "sk-ssh-ed25519@openssh.com " + base64.b64encode(sk_ed).decode() + " fido",
        "sk-ecdsa-sha2-nistp256@openssh.com":
            "sk-ecdsa-sha2-nistp256@openssh.com " + base64.b64encode(sk_ec).decode() + " fido",
        "rsa-1024": openssh(rsa.generate_private_key(65537, 1024).public_key()),
    }


def refused(text, *words):
    with pytest.raises(InvalidInput) as e:
        parse_key(text)
    assert e.value.field == "key"
    for word in words:
        assert word in e.value.message, e.value.message
    return e.value.message


@pytest.mark.parametrize("key_type", ssh_keys.KEY_TYPES)
def test_each_supported_type_is_taken_in_canonical_form(keys, key_type):
    key = parse_key("  " + keys[key_type] + "\n")
    assert key.type == key_type
    assert key.line == keys[key_type]
    assert key.fingerprint.startswith("SHA256:") and "=" not in key.fingerprint


def test_the_fingerprint_is_the_one_ssh_keygen_prints(keys, tmp_path):
    import subprocess
    (tmp_path / "k.pub").write_text(keys["ssh-ed25519"] + "\n")
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(tmp_path / "k.pub")], capture_output=True, text=True,
                             check=True).stdout.split()[1]
    assert parse_key(keys["ssh-ed25519"]).fingerprint == printed


def test_rsa_below_2048_bits_is_refused(keys):
    refused(keys["rsa-1024"], "2048", "1024")
    assert parse_key(keys["ssh-rsa"]).bits == 2048


class TestHostileKeys:
    def test_a_second_line_is_refused(self, keys):
        refused(keys["ssh-ed25519"] + "\n" + keys["ecdsa-sha2-nistp256"], "one line")
        refused(keys["ssh-ed25519"] + "\r" + keys["ecdsa-sha2-nistp256"], "one line")
        refused(keys["ssh-ed25519"] + "\u2028" + keys["ecdsa-sha2-nistp256"], "one line")

    def test_an_options_prefix_is_refused(self, keys):
        refused('command="/bin/sh" ' + keys["ssh-ed25519"], "options")
        refused("no-pty " + keys["ssh-ed25519"], "options")
        refused('from="10.0.0.1",no-pty ' + keys["ssh-ed25519"], "options")

    def test_control_characters_and_tabs_are_refused_anywhere(self, keys):
        refused(keys["ssh-ed25519"] + " a\x00b", "control")
        refused(keys["ssh-ed25519"] + " a\x1bb", "control")
        refused(keys["ssh-ed25519"].replace(" ", "\t", 1), "tab")

    def test_huge_keys_and_comments_are_refused(self, keys):
        refused("ssh-ed25519 " + "A" * 20000, "longer than 8192")
        refused(keys["ssh-ed25519"].rsplit(" ", 1)[0] + " " + "c" * 300, "comment", "256")

    def test_bad_base64_is_refused(self, keys):
        body = keys["ssh-ed25519"].split()[1]
        refused("ssh-ed25519 " + body[:-4] + "!!!!", "base64")
        refused("ssh-ed25519 " + body[:-1], "base64")  # a length that is no multiple of 4
        refused("ssh-ed25519 " + body + "====", "base64")
        refused("ssh-ed25519", "no base64 body")

    def test_a_body_of_another_type_is_refused(self, keys):
        refused("ssh-rsa " + keys["ssh-ed25519"].split()[1], "of type 'ssh-ed25519', not ssh-rsa")
        refused("ecdsa-sha2-nistp384 " + keys["ecdsa-sha2-nistp256"].split()[1], "not ecdsa-sha2-nistp384")

    def test_corrupt_key_data_is_refused(self, keys):
        blob = base64.b64decode(keys["ssh-ed25519"].split()[1])
        refused("ssh-ed25519 " + base64.b64encode(blob + b"extra").decode(), "not a valid ssh-ed25519 key")
        refused("ssh-ed25519 " + base64.b64encode(blob[:-5]).decode(), "not a valid")
        refused("ssh-ed25519 " + base64.b64encode(b"\xff\xff\xff\xff").decode(), "does not start with its type")
        refused("ssh-ed25519 " + base64.b64encode(b"ab").decode(), "too short")

    def test_unsupported_types_and_non_strings_are_refused(self, keys):
        refused("ssh-dss " + keys["ssh-ed25519"].split()[1], "unsupported key type 'ssh-dss'")
        refused("", "empty")
        for value in (None, 7, ["ssh-ed25519"], {"key": 1}):
            refused(value, "string")


def test_the_node_file_is_0600_canonical_and_holds_each_key_once(keys, tmp_path):
    store = AuthorizedKeys(tmp_path / "state" / "ssh" / "authorized_keys")
    assert store.thd_list() == []
    first = store.thd_add(parse_key(keys["ssh-ed25519"]))
    store.thd_add(parse_key(keys["ssh-rsa"]))
    with pytest.raises(Conflict):
        store.thd_add(parse_key(keys["ssh-ed25519"].rsplit(" ", 1)[0] + " another comment"))
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert store.path.read_text() == keys["ssh-ed25519"] + "\n" + keys["ssh-rsa"] + "\n"
    assert [k.type for k in store.thd_list()] == ["ssh-ed25519", "ssh-rsa"]
    assert store.thd_delete(first.fingerprint) == first
    with pytest.raises(NotFound):
        store.thd_delete(first.fingerprint)
    assert store.path.read_text() == keys["ssh-rsa"] + "\n"
    assert [p.name for p in store.path.parent.iterdir()] == ["authorized_keys"]  # no temp file left


def test_the_number_of_keys_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(ssh_keys, "MAX_KEYS", 3)
    store = AuthorizedKeys(tmp_path / "authorized_keys")
    for _ in range(3):
        store.thd_add(parse_key(ed25519_line()))
    with pytest.raises(Conflict) as e:
        store.thd_add(parse_key(ed25519_line()))
    assert "3 keys" in e.value.message and len(store.thd_list()) == 3


def test_the_mirror_keeps_the_host_users_own_lines_and_their_owner(keys, tmp_path):
    home = tmp_path / "home" / ".ssh"
    home.mkdir(parents=True)
    os.chown(home, 1234, 1234)
    mirror = home / "authorized_keys"
    mirror.write_text("ssh-ed25519 AAAA-the-users-own-key laptop\n")
    store = AuthorizedKeys(tmp_path / "node" / "authorized_keys", mirror)
    key = store.thd_add(parse_key(keys["ssh-ed25519"]))
    text = mirror.read_text()
    assert text == (f"ssh-ed25519 AAAA-the-users-own-key laptop\n{ssh_keys.BEGIN}\n{keys['ssh-ed25519']}\n"
                    f"{ssh_keys.END}\n")
    assert stat.S_IMODE(os.stat(mirror).st_mode) == 0o600
    store.thd_add(parse_key(keys["ssh-rsa"]))
    assert mirror.read_text().count(ssh_keys.BEGIN) == 1 and keys["ssh-rsa"] in mirror.read_text()
    store.thd_delete(parse_key(keys["ssh-rsa"]).fingerprint)
    store.thd_delete(key.fingerprint)
    assert mirror.read_text() == "ssh-ed25519 AAAA-the-users-own-key laptop\n"

    mirror.unlink()
    store.thd_add(parse_key(keys["ssh-ed25519"]))
    info = os.stat(mirror)
    assert (info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)) == (1234, 1234, 0o600)  # the user's: sshd reads
    # it with the user's rights


def test_a_mirror_that_cannot_be_written_changes_nothing(keys, tmp_path):
    store = AuthorizedKeys(tmp_path / "node" / "authorized_keys", tmp_path / "no-such-home" / "authorized_keys")
    with pytest.raises(Unavailable) as e:
        store.thd_add(parse_key(keys["ssh-ed25519"]))
    assert e.value.field == "ssh_authorized_keys_path"
    assert store.thd_list() == []
    (tmp_path / "elsewhere").write_text("not an authorized_keys\n")
    os.symlink(tmp_path / "elsewhere", tmp_path / "link")
    store = AuthorizedKeys(tmp_path / "node" / "authorized_keys", tmp_path / "link")
    with pytest.raises(Unavailable):
        store.thd_add(parse_key(keys["ssh-ed25519"]))
    assert os.path.islink(tmp_path / "link") and store.thd_list() == []
    assert (tmp_path / "elsewhere").read_text() == "not an authorized_keys\n"


def test_a_block_whose_end_marker_was_removed_by_hand_is_kept(keys):
    existing = f"{ssh_keys.BEGIN}\nssh-ed25519 AAAA-added-by-hand x\n"
    merged = ssh_keys.merge_block(existing, [parse_key(keys["ssh-rsa"])])
    assert merged == existing + f"{ssh_keys.BEGIN}\n{keys['ssh-rsa']}\n{ssh_keys.END}\n"
    assert ssh_keys.merge_block(merged, []) == existing  # the next write finds its own block
