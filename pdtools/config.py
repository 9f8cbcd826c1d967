"""Target URLs and the per-node token store.

Tokens live in `$XDG_CONFIG_HOME/pdtools/tokens.json` (default `~/.config`), keyed by the node's base URL. They are
secrets, so the directory is created 0700 and every version of the file is born 0600 (os.open with the mode, then
an atomic rename): there is no moment at which another user could read a token.
"""
import json
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

from pdtools.errors import ConfigError

#: A token in this variable wins over the saved one: it is how a chute's processes authenticate.
TOKEN_ENV = "PARADROP_API_TOKEN"


def normalize_target(value):
    """Return the canonical base URL for a target ("host:port" gets http://); ValueError if it cannot be one."""
    text = value.strip()
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"unsupported scheme {parts.scheme!r} in {value!r} (use http or https)")
    if not parts.hostname:
        raise ValueError(f"no host in {value!r}")
    if parts.username is not None:
        raise ValueError(f"credentials in the URL are not supported ({value!r}); log in instead")
    if parts.query or parts.fragment:
        raise ValueError(f"a target is a base URL without query or fragment, not {value!r}")
    try:
        parts.port
    except ValueError:
        raise ValueError(f"bad port in {value!r}") from None
    return f"{scheme}://{parts.netloc.lower()}{parts.path.rstrip('/')}"


def config_dir():
    """pdtools' directory under XDG_CONFIG_HOME; a relative XDG_CONFIG_HOME is ignored, as the XDG spec says."""
    base = os.environ.get("XDG_CONFIG_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "pdtools"


def tokens_path():
    return config_dir() / "tokens.json"


def saved_token(target):
    """The token saved by `login` for this target, or None."""
    return _load()["tokens"].get(normalize_target(target))


def current_token(target):
    """The token to send to this target: PARADROP_API_TOKEN if set, else the saved one."""
    return os.environ.get(TOKEN_ENV) or saved_token(target)


def save_token(target, token):
    data = _load()
    data["tokens"][normalize_target(target)] = token
    _store(data)


def forget_token(target):
    """Remove the saved token of this target; False if there was none."""
    data = _load()
    if data["tokens"].pop(normalize_target(target), None) is None:
        return False
    _store(data)
    return True


def _load():
    path = tokens_path()
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return {"tokens": {}}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}; delete it and log in again") from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, dict) or not all(isinstance(v, str) for v in tokens.values()):
        raise ConfigError(f"{path} is not a pdtools token file; delete it and log in again")
    return data


def _store(data):
    directory = config_dir()
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temporary = directory / f".tokens.{secrets.token_hex(8)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, tokens_path())
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise ConfigError(f"cannot write {tokens_path()}: {exc}") from None
