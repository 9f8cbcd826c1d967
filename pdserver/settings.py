"""Node settings: defaults <- YAML settings file <- PARADROP_* environment variables.

Every setting has one name used in all three places: ``port`` in YAML is
``PARADROP_PORT`` in the environment. Secrets (the admin password) are read
from the environment only, never from the file, and never shown by the API.
"""
import dataclasses
import os
from pathlib import Path
from typing import Mapping, Optional

import yaml


class SettingsError(ValueError):
    """A settings file or variable holds a value we cannot use."""

    def __init__(self, name: str, message: str):
        super().__init__(f"{name}: {message}")
        self.name = name


@dataclasses.dataclass(frozen=True)
class Settings:
    state_dir: Path = Path("/var/lib/paradrop")
    host: str = "127.0.0.1"
    port: int = 8080
    token_ttl: int = 24 * 3600
    max_body_bytes: int = 1024 * 1024
    max_upload_bytes: int = 256 * 1024 * 1024
    header_timeout: float = 5.0
    idle_timeout: float = 60.0
    max_connections_per_address: int = 256  # a busy client (or many behind one NAT) fits; a flood is shed
    max_connections: Optional[int] = None
    ready_grace: float = 1.0
    ready_timeout: float = 30.0
    # Seconds an updated chute's old version keeps serving once the new one is recorded, for its clients to move.
    update_drain: float = 1.0
    login_failures_per_minute: int = 5
    chute_default_memory: int = 256 * 1024 * 1024
    log_level: str = "info"
    # The JSON log is rotated by size: at most log_files files (the current one and the rotated ones) of about
    # log_max_bytes each, so a router's flash holds all of it (15 MiB by default).
    log_max_bytes: int = 5 * 1024 * 1024
    log_files: int = 3
    pdid: Optional[str] = None
    admin_password: Optional[str] = dataclasses.field(default=None, repr=False)
    test_faults: bool = False
    crash_after_step: Optional[int] = None
    # The network namespace (``ip netns``) where chute networks are made; None: the host's. Tests set it.
    network_netns: Optional[str] = None
    # The D-Bus system bus where NetworkManager may be (``unix:path=...``); None: the machine's system bus.
    dbus_system_address: Optional[str] = None
    # The cloud link's reconnection: the first delay, the cap, the growth per failed attempt and the jitter (a
    # fraction of the delay), in seconds; every node of a fleet restarting at once must not reconnect in step.
    cloud_retry_initial: float = 1.0
    cloud_retry_max: float = 60.0
    cloud_retry_growth: float = 1.5
    cloud_retry_jitter: float = 0.1
    # Whether the owner may reboot or power off the host through the API (systemd-logind); off by default: a
    # developer's machine or a shared server is not the node's to power. A node in a container never may.
    allow_host_power: bool = False
    # A host user's authorized_keys to mirror the admin account's SSH keys into (a marked block; other lines
    # stay); None: the keys stay in the node's state only.
    ssh_authorized_keys_path: Optional[str] = None
    # snapd's REST socket, asked for the node's snap interfaces when it runs as a snap.
    snapd_socket: Path = Path("/run/snapd.socket")

    SECRET_FIELDS = frozenset({"admin_password"})

    @property
    def database_path(self) -> Path:
        return self.state_dir / "node.db"

    @property
    def secret_path(self) -> Path:
        return self.state_dir / "node-secret"

    @property
    def node_id_path(self) -> Path:
        return self.state_dir / "node-id"

    @property
    def provision_path(self) -> Path:
        return self.state_dir / "cloud.json"

    @property
    def cloud_retry(self) -> dict:
        return {"initial": self.cloud_retry_initial, "max": self.cloud_retry_max, "growth": self.cloud_retry_growth,
                "jitter": self.cloud_retry_jitter}

    @property
    def initial_password_path(self) -> Path:
        return self.state_dir / "initial-admin-password"

    @property
    def hostconfig_path(self) -> Path:
        return self.state_dir / "hostconfig.yaml"

    @property
    def chute_sources_dir(self) -> Path:
        return self.state_dir / "chutes" / "sources"

    @property
    def chute_build_dir(self) -> Path:
        return self.state_dir / "chutes" / "build"

    @property
    def authorized_keys_path(self) -> Path:
        return self.state_dir / "ssh" / "authorized_keys"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    def public(self) -> dict:
        """The settings a client may see: no secrets, paths as strings."""
        out = {}
        for field in dataclasses.fields(self):
            if field.name in self.SECRET_FIELDS:
                continue
            value = getattr(self, field.name)
            out[field.name] = str(value) if isinstance(value, Path) else value
        return out


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
_FILE_FORBIDDEN = Settings.SECRET_FIELDS


def _coerce(name: str, value, source: str):
    kind = _FIELDS[name].type
    if value is None:
        return None
    try:
        if isinstance(value, (dict, list, tuple, set)):
            raise ValueError("a setting is one value, not a list or mapping")
        if kind in (int, Optional[int]):
            if isinstance(value, bool):
                raise ValueError("a boolean is not an integer")
            return int(value)
        if kind is float:
            if isinstance(value, bool):
                raise ValueError("a boolean is not a number")
            return float(value)
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(f"{value!r} is not a boolean")
        if kind is Path:
            return Path(value).expanduser()
        return str(value)
    except (TypeError, ValueError) as e:
        raise SettingsError(name, f"bad value in {source}: {e}") from None


def load(config_file: Optional[Path] = None, environ: Mapping[str, str] = os.environ,
         **overrides) -> Settings:
    """Build settings from the three layers, then explicit overrides (CLI flags)."""
    values = {}
    if config_file is not None:
        try:
            data = yaml.safe_load(Path(config_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise SettingsError("config", f"cannot read {config_file}: {e}") from None
        if not isinstance(data, dict):
            raise SettingsError("config", f"{config_file} must hold a mapping")
        for key, value in data.items():
            name = str(key).replace("-", "_")
            if name not in _FIELDS or name in _FILE_FORBIDDEN:
                raise SettingsError(str(key), f"unknown setting in {config_file}")
            values[name] = _coerce(name, value, str(config_file))
    for name in _FIELDS:
        env_name = "PARADROP_" + name.upper()
        if env_name in environ:
            values[name] = _coerce(name, environ[env_name], env_name)
    for name, value in overrides.items():
        if value is not None:
            values[name] = _coerce(name, value, "command line")
    settings = Settings(**values)
    _check(settings)
    return settings


def _check(settings: Settings) -> None:
    if not 0 <= settings.port <= 65535:
        raise SettingsError("port", "must be between 0 and 65535")
    if settings.token_ttl <= 0:
        raise SettingsError("token_ttl", "must be positive")
    if settings.max_body_bytes < 1024:
        raise SettingsError("max_body_bytes", "must be at least 1024")
    if settings.max_upload_bytes < settings.max_body_bytes:
        raise SettingsError("max_upload_bytes", "must be at least max_body_bytes")
    for name in ("header_timeout", "idle_timeout"):
        if getattr(settings, name) <= 0:
            raise SettingsError(name, "must be positive")
    if settings.max_connections_per_address < 1:
        raise SettingsError("max_connections_per_address", "must be at least 1")
    if settings.max_connections is not None and settings.max_connections < 1:
        raise SettingsError("max_connections", "must be at least 1")
    if settings.ready_grace < 0 or settings.ready_timeout <= 0:
        raise SettingsError("ready_timeout", "ready_grace must be >= 0 and ready_timeout > 0")
    if settings.update_drain < 0:
        raise SettingsError("update_drain", "must be >= 0")
    if settings.login_failures_per_minute < 1:
        raise SettingsError("login_failures_per_minute", "must be at least 1")
    if settings.chute_default_memory < 4 * 1024 * 1024:
        raise SettingsError("chute_default_memory", "must be at least 4 MiB (4194304)")
    if settings.log_level not in ("debug", "info", "warn", "error"):
        raise SettingsError("log_level", "must be one of debug, info, warn, error")
    if settings.log_max_bytes < 64 * 1024:
        raise SettingsError("log_max_bytes", "must be at least 64 KiB (65536)")
    if not 2 <= settings.log_files <= 100:
        raise SettingsError("log_files", "must be between 2 and 100 (the current file and the rotated ones)")
    if settings.dbus_system_address is not None and not settings.dbus_system_address.startswith(
            ("unix:", "tcp:")):
        raise SettingsError("dbus_system_address", "must be a D-Bus address (unix:path=... or tcp:...)")
    if settings.ssh_authorized_keys_path is not None and not os.path.isabs(settings.ssh_authorized_keys_path):
        raise SettingsError("ssh_authorized_keys_path", "must be an absolute path")
    if not 0 < settings.cloud_retry_initial <= settings.cloud_retry_max:
        raise SettingsError("cloud_retry_initial", "must be positive and at most cloud_retry_max")
    if settings.cloud_retry_growth < 1 or not 0 <= settings.cloud_retry_jitter < 1:
        raise SettingsError("cloud_retry_growth", "growth must be at least 1 and jitter between 0 and 1")
    if settings.admin_password is not None and len(settings.admin_password) < 8:
        raise SettingsError("admin_password", "must be at least 8 characters")
