"""What we ask of the engine (ContainerSpec) and what it tells us (ContainerState): plain frozen data."""
import dataclasses
from typing import Dict, List, Optional, Tuple, Union


@dataclasses.dataclass(frozen=True)
class PortBinding:
    """Publish container port ``internal`` on host port ``external``."""
    external: int
    internal: int
    protocol: str = "tcp"
    host_ip: str = "0.0.0.0"


def _unless_stopped() -> dict:
    # Docker doubles the delay between restarts of a container that keeps crashing (from 100 ms up to
    # a minute), so a crashing service does not spin; a container that ran 10 s resets the delay.
    return {"Name": "unless-stopped"}


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """Everything needed to create one container. ``volumes`` maps a volume name to its mount path;
    ``cpu_fraction`` is a share of one CPU (0.5 = half a core); ``memory`` is in bytes;
    ``healthcheck`` is passed to Docker as is (keys test, interval, timeout, retries, start_period;
    durations in nanoseconds)."""
    name: str
    image: str
    command: Union[str, List[str], None] = None
    environment: Dict[str, str] = dataclasses.field(default_factory=dict)
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)
    network: Optional[str] = None
    aliases: List[str] = dataclasses.field(default_factory=list)
    port_bindings: List[PortBinding] = dataclasses.field(default_factory=list)
    volumes: Dict[str, str] = dataclasses.field(default_factory=dict)
    cpu_fraction: Optional[float] = None
    memory: Optional[int] = None
    user: Optional[str] = None
    restart_policy: Dict[str, object] = dataclasses.field(default_factory=_unless_stopped)
    healthcheck: Optional[dict] = None
    # A tiny init as PID 1 forwards SIGTERM and reaps zombies: without it `sh -c ...` or a server that
    # ignores signals as PID 1 holds every stop for the full timeout.
    init: bool = True
    # Every capability is dropped; these (names without CAP_) are added back.
    capabilities: Tuple[str, ...] = ()
    # setuid binaries and file capabilities cannot raise a process's privileges.
    no_new_privileges: bool = True
    dns: Tuple[str, ...] = ()  # name servers; empty: the engine's own


@dataclasses.dataclass(frozen=True)
class ContainerState:
    """A container as the engine sees it now.

    ``status`` is Docker's ("created", "running", "restarting", "exited", "paused", "dead"); ``running`` is
    true only while the process runs (Docker also calls a container waiting to be restarted running).
    ``exit_code`` is the last exit code (Docker resets it to 0 when a restart starts the process again).
    ``health`` is None without a health check, else "starting", "healthy" or "unhealthy";
    ``health_output`` is the output of the last check. ``addresses`` maps network name -> IPv4 address.
    ``capabilities`` are those added back after dropping all (None: the engine's default set); ``memory``
    is the limit in bytes (None: unlimited). ``pid`` is the main process's, while it runs."""
    id: str
    name: str
    image: str
    image_id: str
    status: str
    running: bool
    exit_code: Optional[int]
    health: Optional[str]
    health_output: Optional[str]
    restart_count: int
    started_at: Optional[str]
    labels: Dict[str, str]
    addresses: Dict[str, str]
    capabilities: Optional[Tuple[str, ...]] = None
    memory: Optional[int] = None
    pid: Optional[int] = None  # of its main process while it runs: its network namespace is /proc/<pid>/ns/net


@dataclasses.dataclass(frozen=True)
class ContainerEvent:
    """Something that happened to a container, as the engine's event stream reports it. ``action`` is Docker's
    ("start", "die", ...); ``attributes`` are the container's labels with the engine's own keys mixed in
    ("name", "image", "exitCode" of a "die"); ``time`` is in seconds since the epoch."""
    action: str
    id: str
    name: str
    attributes: Dict[str, str]
    time: float
