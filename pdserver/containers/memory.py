"""MemoryEngine: IContainerEngine in dictionaries, for the unit tier.

It gives DockerEngine's answers and raises its errors in the same situations (the real-engine tests are
the proof of those), so failure paths run in milliseconds. No process runs: a started container runs
until it is stopped or removed, or a test makes it exit (``exit_container``) or print (``write_output``);
health checks always pass. Every interface method answers with a Deferred that has already fired.

Faults are explicit: ``fail_when`` and ``fail_next`` make chosen calls fail before they change anything.
"""
import dataclasses
import datetime
import ipaddress
import itertools
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Tuple

from twisted.internet import defer, task
from twisted.logger import Logger
from zope.interface import implementer

from pdserver.containers.errors import BuildFailed, Conflict, EngineError, ImageUnavailable, InUse, NotFound
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.spec import ContainerEvent, ContainerSpec, ContainerState
from pdserver.containers.streams import BuildOutput

log = Logger()

VERSION = "0.0.0-memory"
_RESTARTING_POLICIES = ("always", "unless-stopped")


@dataclasses.dataclass
class _Image:
    id: str
    labels: Dict[str, str]


@dataclasses.dataclass
class _Network:
    id: str
    labels: Dict[str, str]
    subnet: ipaddress.IPv4Network
    hosts: Iterator[ipaddress.IPv4Address]  # addresses for containers, after the gateway


@dataclasses.dataclass
class _Container:
    id: str
    spec: ContainerSpec
    image_id: str
    labels: Dict[str, str]
    network: Optional[str]  # dropped when remove_network disconnects it
    status: str = "created"
    exit_code: Optional[int] = None
    restart_count: int = 0
    started_at: Optional[str] = None
    address: Optional[str] = None
    pid: Optional[int] = None
    output: List[Tuple[float, str]] = dataclasses.field(default_factory=list)
    followers: List["MemoryLogFollower"] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Fault:
    matches: Callable[[str, tuple], bool]
    error: Optional[Exception]


class MemoryLogFollower:
    """LogFollower's surface (``name``, ``stop()``, ``done``) over a MemoryEngine container."""

    def __init__(self, name: str, on_line: Callable[[str], None], timestamps: bool):
        self.name = name
        self._on_line = on_line
        self._timestamps = timestamps
        self.done = defer.Deferred()

    def stop(self) -> defer.Deferred:
        self._end()
        return defer.succeed(None)

    def _deliver(self, when: float, line: str) -> None:
        if self.done.called:
            return
        try:
            self._on_line(f"{_stamp(when)} {line}" if self._timestamps else line)
        except Exception:
            log.failure("log line handler of {name} failed", name=self.name)

    def _end(self) -> None:
        if not self.done.called:
            self.done.callback(None)


class MemoryEventFollower:
    """The event follower's surface (``stop()``, ``done``) over a MemoryEngine."""

    def __init__(self, on_event: Callable[[ContainerEvent], None], label: str, actions: Tuple[str, ...]):
        self._on_event = on_event
        self._label = label
        self._actions = tuple(actions)
        self.done = defer.Deferred()

    def stop(self) -> defer.Deferred:
        self._end()
        return defer.succeed(None)

    def _deliver(self, event: ContainerEvent) -> None:
        if self.done.called or event.action not in self._actions or not _has_label(event.attributes, self._label):
            return
        try:
            self._on_event(event)
        except Exception:
            log.failure("event handler failed on {action} of {name}", action=event.action, name=event.name)

    def _end(self) -> None:
        if not self.done.called:
            self.done.callback(None)


def _stamp(seconds: float) -> str:
    """RFC 3339 with nanoseconds, as Docker writes it."""
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond * 1000:09d}Z"


def _has_label(labels: Mapping[str, str], wanted: str) -> bool:
    key, equals, value = wanted.partition("=")
    return key in labels and (not equals or labels[key] == value)


def _ports_clash(a, b) -> bool:
    """Two bindings of one host port clash on one address, or when either takes every address."""
    same_port = (a.external, a.protocol) == (b.external, b.protocol)
    return same_port and (a.host_ip == b.host_ip or "0.0.0.0" in (a.host_ip, b.host_ip))


@implementer(IContainerEngine)
class MemoryEngine:
    def __init__(self, clock=None, images: Optional[Mapping[str, Mapping[str, str]]] = None,
                 registry: Optional[Mapping[str, Mapping[str, str]]] = None, owner_label: Optional[str] = None):
        """``images`` are on the node from the start and ``registry`` can be pulled (ref -> labels);
        ``clock`` (``seconds()``) stamps output lines and starts; ``owner_label`` as DockerEngine's."""
        self._clock = clock if clock is not None else task.Clock()
        self._pids = itertools.count(1000)
        self._owner_label = owner_label
        self._ids = itertools.count(1)
        self._subnets = ipaddress.ip_network("10.0.0.0/8").subnets(new_prefix=24)
        self._registry = {ref: dict(labels) for ref, labels in (registry or {}).items()}
        self._images: Dict[str, _Image] = {}
        self._networks: Dict[str, _Network] = {}
        self._volumes: Dict[str, Dict[str, str]] = {}
        self._containers: Dict[str, _Container] = {}
        self._faults: List[_Fault] = []
        self._event_followers: List[MemoryEventFollower] = []
        for ref, labels in (images or {}).items():
            self._images[ref] = _Image("sha256:" + self._new_id(), dict(labels))

    # faults and test controls

    def fail_when(self, matches: Callable[[str, tuple], bool], error: Optional[Exception] = None
                  ) -> Callable[[], None]:
        """Every call for which ``matches(method, args)`` is true fails with ``error`` (by default an
        EngineError naming the call) and changes nothing, until the returned function is called."""
        fault = _Fault(matches, error)
        self._faults.append(fault)
        return lambda: self._faults.remove(fault) if fault in self._faults else None

    def fail_next(self, method: str, error: Optional[Exception] = None, skip: int = 0) -> None:
        """The call of ``method`` that comes after the next ``skip`` ones fails, once."""
        calls = itertools.count()

        def matches(name, args):
            if name == method and next(calls) == skip:
                remove()
                return True
            return False
        remove = self.fail_when(matches, error)

    def exit_container(self, name: str, code: int) -> None:
        """The container's process ends with ``code``; its restart policy may start it again at once
        (Docker would wait a growing delay first)."""
        container = self._container(name)
        if container.status != "running":
            raise ValueError(f"container {name} is not running")
        self._halt(container, code)
        policy = (container.spec.restart_policy or {}).get("Name")
        if policy in _RESTARTING_POLICIES or (policy == "on-failure" and code != 0):
            container.restart_count += 1
            self._run(container)

    def write_output(self, name: str, *lines: str) -> None:
        """The container's process prints ``lines``."""
        container = self._container(name)
        for line in lines:
            when = self._clock.seconds()
            container.output.append((when, line))
            for follower in list(container.followers):
                follower._deliver(when, line)

    def end_events(self) -> None:
        """The engine ends every event stream (as a stopping Docker daemon does)."""
        followers, self._event_followers = self._event_followers, []
        for follower in followers:
            follower._end()

    def _emit(self, container: _Container, action: str, **extra: str) -> None:
        attributes = {**container.labels, "name": container.spec.name, "image": container.spec.image, **extra}
        event = ContainerEvent(action, container.id, container.spec.name, attributes, self._clock.seconds())
        for follower in list(self._event_followers):
            follower._deliver(event)

    def objects(self) -> dict:
        """Everything the engine holds: {"containers": {name: status}, "networks", "volumes", "images": sets}."""
        return {"containers": {name: c.status for name, c in self._containers.items()},
                "networks": set(self._networks), "volumes": set(self._volumes), "images": set(self._images)}

    # plumbing

    def _call(self, method: str, function, *args) -> defer.Deferred:
        fired = [fault for fault in list(self._faults) if fault.matches(method, args)]
        if fired:
            return defer.fail(fired[0].error or EngineError(f"injected failure of {method}"))
        return defer.maybeDeferred(function, *args)

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"

    def _image(self, ref: str) -> Optional[_Image]:
        return self._images.get(ref) or next((i for i in self._images.values() if i.id == ref), None)

    def _find(self, name: str) -> Optional[_Container]:
        return self._containers.get(name) or next((c for c in self._containers.values() if c.id == name), None)

    def _container(self, name: str) -> _Container:
        container = self._find(name)
        if container is None:
            raise NotFound(f"No such container: {name}")
        return container

    def _network(self, name: str) -> _Network:
        if name not in self._networks:
            raise NotFound(f"network {name} not found")
        return self._networks[name]

    # engine

    def ping(self):
        return self._call("ping", lambda: VERSION)

    # images

    def image_exists(self, ref):
        return self._call("image_exists", lambda: self._image(ref) is not None)

    def image_labels(self, ref):
        return self._call("image_labels", lambda: dict(self._image(ref).labels) if self._image(ref) else None)

    def pull_image(self, ref, progress=None):
        return self._call("pull_image", self._pull_image, ref, progress)

    def _pull_image(self, ref, progress):
        if progress is not None:
            progress(f"pulling image {ref}")
        if ref not in self._registry:
            raise ImageUnavailable(f"image {ref} is not on this node and the registry does not have it")
        image = self._image(ref)
        if image is None:
            image = self._images[ref] = _Image("sha256:" + self._new_id(), dict(self._registry[ref]))
        return image.id

    def build_image(self, context_dir, tag, labels, progress=None, dockerfile="Dockerfile"):
        return self._call("build_image", self._build_image, str(context_dir), tag, dict(labels), progress,
                          dockerfile)

    def _build_image(self, context_dir, tag, labels, progress, dockerfile):
        """Walk the instructions like the classic builder; only FROM has an effect (its image's labels)."""
        path = Path(context_dir, dockerfile)
        if not path.is_file():
            raise BuildFailed(f"building image {tag} failed: no {dockerfile} in {context_dir}")
        lines = [line.strip() for line in path.read_text().splitlines()]
        instructions = [line for line in lines if line and not line.startswith("#")]
        output, inherited = BuildOutput(tag), {}
        for number, instruction in enumerate(instructions, 1):
            for message in output.feed({"stream": f"Step {number}/{len(instructions)} : {instruction}\n"}):
                if progress is not None:
                    progress(message)
            keyword, _, rest = instruction.partition(" ")
            if keyword.upper() == "FROM":
                base = self._image(rest.split()[0]) if rest else None
                if base is None:
                    output.fail(f"pull access denied for {rest}, repository does not exist")
                    raise BuildFailed(output.failure_message())
                inherited = base.labels
        image = self._images[tag] = _Image("sha256:" + self._new_id(), {**inherited, **labels})
        return image.id

    def remove_image(self, ref):
        return self._call("remove_image", self._remove_image, ref)

    def _remove_image(self, ref):
        image = self._image(ref)
        if image is None:
            return
        tags = [tag for tag, other in self._images.items() if other.id == image.id]
        if ref in tags and len(tags) > 1:  # only untag
            del self._images[ref]
            return
        users = [c.spec.name for c in self._containers.values() if c.image_id == image.id]
        if users:
            raise InUse(f"image {ref} is in use: container {users[0]} uses it")
        for tag in tags:
            del self._images[tag]

    # networks

    def create_network(self, name, labels, subnet=None):
        return self._call("create_network", self._create_network, name, dict(labels), subnet)

    def _create_network(self, name, labels, subnet):
        existing = self._networks.get(name)
        if existing is not None:
            self._check_owner("network", name, existing.labels, labels)
            if subnet and ipaddress.ip_network(subnet) != existing.subnet:
                raise Conflict(f"network {name} exists with subnet {existing.subnet}, not {subnet}")
            return existing.id
        if subnet:
            chosen = ipaddress.ip_network(subnet)
            if any(chosen.overlaps(n.subnet) for n in self._networks.values()):
                raise Conflict(f"network {name}: Pool overlaps with other one on this address space")
        else:
            chosen = next(s for s in self._subnets if not any(s.overlaps(n.subnet) for n in self._networks.values()))
        network = _Network(self._new_id(), labels, chosen, itertools.islice(chosen.hosts(), 1, None))
        self._networks[name] = network
        return network.id

    def network_gateway(self, name):
        return self._call("network_gateway", lambda: str(next(self._network(name).subnet.hosts())))

    def remove_network(self, name):
        return self._call("remove_network", self._remove_network, name)

    def _remove_network(self, name):
        if self._networks.pop(name, None) is None:
            return
        for container in self._containers.values():
            if container.network == name and container.status == "running":
                container.network, container.address = None, None

    # volumes

    def create_volume(self, name, labels):
        return self._call("create_volume", self._create_volume, name, dict(labels))

    def _create_volume(self, name, labels):
        self._check_owner("volume", name, self._volumes.setdefault(name, labels), labels)
        return name

    def _check_owner(self, kind: str, name: str, theirs: Dict[str, str], ours: Dict[str, str]) -> None:
        if self._owner_label is not None and theirs.get(self._owner_label) != ours.get(self._owner_label):
            raise Conflict(f"{kind} {name} exists and belongs to {self._owner_label}="
                           f"{theirs.get(self._owner_label) or '(none)'}, not to {ours.get(self._owner_label)}")

    def remove_volume(self, name):
        return self._call("remove_volume", self._remove_volume, name)

    def _remove_volume(self, name):
        users = [c.spec.name for c in self._containers.values() if name in c.spec.volumes]
        if name in self._volumes and users:
            raise InUse(f"volume {name} is in use: container {users[0]} mounts it")
        self._volumes.pop(name, None)

    # containers

    def create_container(self, spec):
        return self._call("create_container", self._create_container, spec)

    def _create_container(self, spec: ContainerSpec):
        image = self._image(spec.image)
        if image is None:
            raise ImageUnavailable(f"image {spec.image} is not on this node")
        if spec.name in self._containers:
            raise Conflict(f"a container named {spec.name} exists already")
        if spec.network:
            self._network(spec.network)
        for volume in spec.volumes:  # Docker creates a missing named volume, without labels
            self._volumes.setdefault(volume, {})
        container = _Container(self._new_id(), spec, image.id, {**image.labels, **spec.labels}, spec.network)
        self._containers[spec.name] = container
        return container.id

    def start_container(self, name):
        return self._call("start_container", self._start_container, name)

    def _start_container(self, name):
        container = self._container(name)
        if container.status == "running":
            return
        if container.network:
            self._network(container.network)
        for other in self._containers.values():
            if other.status != "running":
                continue
            for mine in container.spec.port_bindings:
                if any(_ports_clash(mine, theirs) for theirs in other.spec.port_bindings):
                    raise Conflict(f"cannot start container {name}: Bind for {mine.host_ip}:{mine.external} "
                                   "failed: port is already allocated")
        self._run(container)

    def _run(self, container: _Container) -> None:
        container.status, container.exit_code = "running", 0
        container.started_at = _stamp(self._clock.seconds())
        container.pid = next(self._pids)
        if container.network:
            container.address = str(next(self._networks[container.network].hosts))
        self._emit(container, "start")

    def _halt(self, container: _Container, code: int) -> None:
        was_running = container.status == "running"
        container.status, container.exit_code, container.address = "exited", code, None
        followers, container.followers = container.followers, []
        for follower in followers:
            follower._end()
        if was_running:
            self._emit(container, "die", exitCode=str(code))

    def stop_container(self, name, timeout=10):
        return self._call("stop_container", self._stop_container, name)

    def _stop_container(self, name):
        container = self._container(name)
        if container.status == "running":
            self._halt(container, 143)  # SIGTERM through the init

    def remove_container(self, name):
        return self._call("remove_container", self._remove_container, name)

    def _remove_container(self, name):
        container = self._find(name)
        if container is not None:
            self._halt(container, 137)
            del self._containers[container.spec.name]

    def rename_container(self, old, new):
        return self._call("rename_container", self._rename_container, old, new)

    def _rename_container(self, old, new):
        container = self._container(old)
        if new in self._containers:
            raise Conflict(f"cannot rename container {old} to {new}: the name is in use")
        del self._containers[container.spec.name]
        container.spec = dataclasses.replace(container.spec, name=new)
        self._containers[new] = container

    def inspect_container(self, name):
        return self._call("inspect_container", self._inspect_container, name)

    def _inspect_container(self, name):
        container = self._find(name)
        if container is None:
            return None
        running = container.status == "running"
        return ContainerState(
            id=container.id, name=container.spec.name, image=container.spec.image, image_id=container.image_id,
            status=container.status, running=running, exit_code=container.exit_code,
            health=("healthy" if running else "starting") if container.spec.healthcheck else None,
            health_output=None, restart_count=container.restart_count, started_at=container.started_at,
            labels=dict(container.labels),
            addresses={container.network: container.address} if container.address else {},
            capabilities=tuple(sorted(container.spec.capabilities)), memory=container.spec.memory,
            pid=container.pid if running else None)

    # listing and logs

    def list_objects(self, label):
        return self._call("list_objects", self._list_objects, label)

    def _list_objects(self, label):
        return {
            "containers": [(name, dict(c.labels)) for name, c in self._containers.items()
                           if _has_label(c.labels, label)],
            "networks": [(name, dict(n.labels)) for name, n in self._networks.items() if _has_label(n.labels, label)],
            "volumes": [(name, dict(labels)) for name, labels in self._volumes.items() if _has_label(labels, label)],
            "images": [(tag, dict(i.labels)) for tag, i in self._images.items() if _has_label(i.labels, label)],
        }

    def logs(self, name, tail=100, timestamps=False):
        return self._call("logs", self._logs, name, tail, timestamps)

    def _logs(self, name, tail, timestamps):
        return [f"{_stamp(when)} {line}" if timestamps else line for when, line in self._tail(name, tail)]

    def _tail(self, name, tail) -> List[Tuple[float, str]]:
        output = self._container(name).output
        if tail is None:
            return list(output)
        return output[len(output) - tail:] if tail else []

    def follow_logs(self, name, on_line, tail=0, timestamps=False):
        return self._call("follow_logs", self._follow_logs, name, on_line, tail, timestamps)

    def _follow_logs(self, name, on_line, tail, timestamps):
        container = self._container(name)
        follower = MemoryLogFollower(container.spec.name, on_line, timestamps)
        for when, line in self._tail(name, tail):
            follower._deliver(when, line)
        if container.status == "running":
            container.followers.append(follower)
        else:  # the stream of a stopped container ends after its output
            follower._end()
        return follower

    def follow_events(self, on_event, label, actions=("start", "die")):
        return self._call("follow_events", self._follow_events, on_event, label, tuple(actions))

    def _follow_events(self, on_event, label, actions):
        follower = MemoryEventFollower(on_event, label, actions)
        follower.done.addBoth(lambda result: follower in self._event_followers
                              and self._event_followers.remove(follower) or result)
        self._event_followers.append(follower)
        return follower
