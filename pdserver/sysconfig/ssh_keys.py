"""Authorized SSH keys of the node's admin account: strict parsing, and the file that keeps them.

A key reaches an ``authorized_keys`` file, where one line can carry options (``command="..."``,
``from=...``) or a second key after a newline. So a key is taken only as ``<type> <base64> [comment]`` on one
line: a type from a short list, a body that decodes to a key of that same type (checked by ``cryptography``),
RSA of at least 2048 bits, a comment of printable characters; it is then written back in that canonical form,
never as received. The node's own copy (0600, under the state dir) is the truth; where the settings name a
host user's ``authorized_keys``, the keys are mirrored into a marked block of it, leaving its other lines alone.
Files are replaced atomically (a temp file, fsync, rename).
"""
import base64
import dataclasses
import hashlib
import os
import re
import struct
import tempfile
from pathlib import Path
from typing import List, Optional

from pdserver.errors import Conflict, InvalidInput, NotFound, Unavailable

KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "ssh-rsa",
             "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com")
MAX_LINE = 8192  # a 16384-bit RSA key is about 2.8 KB of base64
MAX_COMMENT = 256
MIN_RSA_BITS, MAX_RSA_BITS = 2048, 16384
MAX_KEYS = 100
MAX_HOST_FILE = 1024 * 1024  # a mirrored authorized_keys larger than this is not ours to rewrite
BEGIN = "# BEGIN keys of the ParaDrop node's admin account (managed by pdserver; edits here are replaced)"
END = "# END keys of the ParaDrop node's admin account"
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_FIELD = "key"


@dataclasses.dataclass(frozen=True)
class PublicKey:
    type: str
    body: str  # canonical base64 of the key blob
    comment: str
    bits: int

    @property
    def line(self) -> str:
        return f"{self.type} {self.body}" + (f" {self.comment}" if self.comment else "")

    @property
    def fingerprint(self) -> str:
        """As ``ssh-keygen -l`` prints it: SHA256 of the blob, base64 without padding."""
        digest = hashlib.sha256(base64.b64decode(self.body)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def public(self) -> dict:
        return {"key": self.line, "type": self.type, "bits": self.bits, "comment": self.comment,
                "fingerprint": self.fingerprint}


def parse_key(text) -> PublicKey:
    """One public key line, or InvalidInput (field ``key``) saying what is wrong with it."""
    if not isinstance(text, str):
        raise InvalidInput("key must be a string: one public key line", field=_FIELD)
    if len(text) > MAX_LINE:
        raise InvalidInput(f"key is longer than {MAX_LINE} characters", field=_FIELD)
    text = text.strip(" \t\r\n")
    if not text:
        raise InvalidInput("key is empty", field=_FIELD)
    if any(not (c.isprintable() or c == " ") for c in text):
        raise InvalidInput("key must be one line of printable characters (no newline, tab or control character): "
                           "one key per request", field=_FIELD)
    parts = re.split(" +", text, maxsplit=2)
    key_type = parts[0]
    if key_type not in KEY_TYPES:
        if any(c in key_type for c in '=",') or len(parts) > 1 and parts[1] in KEY_TYPES:
            raise InvalidInput("key must start with its type: authorized_keys options are not accepted",
                               field=_FIELD)
        raise InvalidInput(f"unsupported key type {key_type[:40]!r}; one of {', '.join(KEY_TYPES)}", field=_FIELD)
    if len(parts) < 2:
        raise InvalidInput("key has no base64 body after its type", field=_FIELD)
    blob = _decode(parts[1])
    embedded = _embedded_type(blob)
    if embedded != key_type:
        raise InvalidInput(f"key's data is of type {embedded[:40]!r}, not {key_type}", field=_FIELD)
    bits = _check_material(key_type, blob)
    comment = parts[2] if len(parts) > 2 else ""
    if len(comment) > MAX_COMMENT:
        raise InvalidInput(f"key's comment is longer than {MAX_COMMENT} characters", field=_FIELD)
    return PublicKey(key_type, base64.b64encode(blob).decode(), comment, bits)


def _decode(body: str) -> bytes:
    if not _BASE64.fullmatch(body) or len(body) % 4:
        raise InvalidInput("key's body is not base64", field=_FIELD)
    try:
        return base64.b64decode(body, validate=True)
    except ValueError:
        raise InvalidInput("key's body is not base64", field=_FIELD) from None


def _embedded_type(blob: bytes) -> str:
    """The type string the key blob starts with (SSH wire format: uint32 length, then the bytes)."""
    if len(blob) < 4:
        raise InvalidInput("key's data is too short to be a key", field=_FIELD)
    (length,) = struct.unpack(">I", blob[:4])
    if length > 64 or len(blob) < 4 + length:
        raise InvalidInput("key's data does not start with its type", field=_FIELD)
    return blob[4:4 + length].decode("ascii", "replace")


def _check_material(key_type: str, blob: bytes) -> int:
    """The key's size in bits, once ``cryptography`` has read the whole blob (curve points on their curve, no
    trailing data); InvalidInput otherwise."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key
    try:
        key = load_ssh_public_key(f"{key_type} {base64.b64encode(blob).decode()}".encode())
    except (ValueError, UnsupportedAlgorithm, struct.error):
        raise InvalidInput(f"key's data is not a valid {key_type} key", field=_FIELD) from None
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise InvalidInput(f"an RSA key needs {MIN_RSA_BITS} to {MAX_RSA_BITS} bits; this one has "
                               f"{key.key_size}", field=_FIELD)
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    return 256


def parse_file(text: str) -> List[PublicKey]:
    """The keys of an authorized_keys text we wrote (comments, blank and unreadable lines skipped)."""
    keys = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            try:
                keys.append(parse_key(line))
            except InvalidInput:
                continue
    return keys


def render(keys: List[PublicKey]) -> str:
    return "".join(key.line + "\n" for key in keys)


def merge_block(existing: str, keys: List[PublicKey]) -> str:
    """``existing`` (a host user's authorized_keys) with our marked block replaced by ``keys``; a block whose
    end marker is gone is left as it is (those lines may be the user's now)."""
    lines = existing.splitlines()
    end = max((i for i, line in enumerate(lines) if line == END), default=None)
    start = max((i for i, line in enumerate(lines[:end]) if line == BEGIN), default=None) if end else None
    if start is not None:
        del lines[start:end + 1]
    block = [BEGIN, *(key.line for key in keys), END] if keys else []
    return "".join(line + "\n" for line in lines + block)


def write_atomically(path: Path, text: str, uid: int = -1, gid: int = -1) -> None:
    """Replace ``path`` with ``text`` (mode 0600, owned by uid:gid when given) so a reader sees the old file or
    the new one, never a part, and a crash leaves one of them."""
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # 0600, O_EXCL
    temp = Path(name)
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fchmod(out.fileno(), 0o600)
            if uid != -1 or gid != -1:
                os.fchown(out.fileno(), uid, gid)
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class AuthorizedKeys:
    """The admin account's keys: the node's file, and the host user's file they are mirrored to (if any).
    Thread-side (``thd_``) methods: the caller serialises them (one at a time) and runs them off the reactor."""

    def __init__(self, path: Path, mirror: Optional[Path] = None):
        self.path = Path(path)
        self.mirror = Path(mirror) if mirror is not None else None

    def thd_list(self) -> List[PublicKey]:
        try:
            return parse_file(self.path.read_text())
        except FileNotFoundError:
            return []

    def thd_add(self, key: PublicKey) -> PublicKey:
        keys = self.thd_list()
        for present in keys:
            if present.body == key.body:
                raise Conflict(f"this key is authorized already ({present.fingerprint})", field=_FIELD)
        if len(keys) >= MAX_KEYS:
            raise Conflict(f"the account holds {MAX_KEYS} keys, the most it may; delete one first", field=_FIELD)
        self._thd_store(keys, keys + [key])
        return key

    def thd_delete(self, fingerprint: str) -> PublicKey:
        keys = self.thd_list()
        gone = [key for key in keys if key.fingerprint == fingerprint]
        if not gone:
            raise NotFound(f"no authorized key has the fingerprint {fingerprint[:80]}", field="fingerprint")
        self._thd_store(keys, [key for key in keys if key.fingerprint != fingerprint])
        return gone[0]

    def _thd_store(self, old: List[PublicKey], new: List[PublicKey]) -> None:
        """The node's file first, then the mirror; a mirror that cannot be written puts the old keys back."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomically(self.path, render(new))
        if self.mirror is None:
            return
        try:
            self._thd_mirror(new)
        except OSError as e:
            write_atomically(self.path, render(old))
            raise Unavailable(f"cannot write {self.mirror}: {e.strerror or e}; nothing changed",
                              field="ssh_authorized_keys_path") from None

    def _thd_mirror(self, keys: List[PublicKey]) -> None:
        """Our block of the host user's file, owned by that user (sshd reads it with the user's rights): the
        owner of the file, or of its directory when the file is new."""
        try:
            info = os.stat(self.mirror, follow_symlinks=False)
            if not os.path.isfile(self.mirror) or os.path.islink(self.mirror) or info.st_size > MAX_HOST_FILE:
                raise OSError(0, "not a regular file of at most 1 MiB")
            existing = self.mirror.read_text(errors="replace")
        except FileNotFoundError:
            info, existing = os.stat(self.mirror.parent), ""
        write_atomically(self.mirror, merge_block(existing, keys), info.st_uid, info.st_gid)
