"""DockerEngine: the Docker SDK behind Deferreds.

Every public method returns a Deferred and runs its blocking SDK calls in the adapter's own thread pool, in
a method named ``_thd_...``; SDK exceptions are turned into pdserver.containers.errors there. Progress
callbacks are called on the reactor thread. The adapter is a service: its pool starts with the node, and
stopping waits for the calls in flight, ends the log followers and closes the client.
"""
import contextlib
import io
import ipaddress
import json
import os
import tempfile
import threading
from typing import Callable, Dict, List, Optional, Tuple

import docker
import docker.errors
import docker.types
import requests.exceptions
from twisted.application.service import Service
from twisted.internet import defer, threads
from twisted.logger import Logger
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from pdserver.containers import logs as logs_module
from pdserver.containers.errors import (BuildFailed, Conflict, EngineError, EngineUnavailable, ImageUnavailable,
                                        InUse, NotFound)
from pdserver.containers.interfaces import IContainerEngine
from pdserver.containers.spec import ContainerEvent, ContainerSpec, ContainerState
from pdserver.containers.streams import BuildOutput, PullProgress

log = Logger()

Progress = Optional[Callable[[str], None]]


def _explain(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc)


def _status(exc: Exception) -> Optional[int]:
    return getattr(exc, "status_code", None)


@implementer(IContainerEngine)
class DockerEngine(Service):
    """``owner_label`` names the label that says who made an object (the node): networks and volumes of
    another owner are never reused (Conflict), and every layer and intermediate container of a build
    carries the owner's label, so a build killed halfway leaves nothing another owner could mistake for
    its own or that reconciliation cannot find."""

    IDLE_TRIM = 10.0  # seconds without a call after which the threads end and the connections close

    def __init__(self, reactor, client_factory=docker.from_env, owner_label: Optional[str] = None,
                 max_threads: int = 8):
        self._reactor = reactor
        self._client_factory = client_factory
        self._owner_label = owner_label
        self._client = None
        self._client_lock = threading.Lock()
        self._max_threads = max_threads
        self._pool = self._new_pool()
        self._trim = None
        self._in_flight = 0
        self._idle_waiters: List[defer.Deferred] = []
        self._followers = set()

    # lifetime

    def startService(self):
        super().startService()
        self._pool.start()

    @defer.inlineCallbacks
    def stopService(self):
        """Refuse new calls, wait for those in flight, end the followers, then stop the threads."""
        super().stopService()
        if self._in_flight:
            waiter = defer.Deferred()
            self._idle_waiters.append(waiter)
            yield waiter
        yield defer.DeferredList([follower.stop() for follower in list(self._followers)])
        if self._trim is not None and self._trim.active():
            self._trim.cancel()
        self._pool.stop()
        self.close()

    # plumbing

    def _not_running(self):
        return defer.fail(EngineUnavailable("the container engine adapter is not running (the node is "
                                            "starting or stopping)"))

    def _new_pool(self) -> ThreadPool:
        return ThreadPool(minthreads=0, maxthreads=self._max_threads, name="pd-docker")

    def _trim_when_idle(self) -> None:
        """After a busy spell, an idle node gives its Docker threads and connections back (a pool only ever
        grows; a fresh one starts empty). The next call pays for one new connection."""
        self._trim = None
        if self._in_flight or not self.running:
            return
        self._pool.stop()
        self._pool = self._new_pool()
        self._pool.start()
        self.close()

    def _call(self, thd_function, *args, **kwargs):
        if not self.running:
            return self._not_running()
        self._in_flight += 1
        if self._trim is not None and self._trim.active():
            self._trim.cancel()
            self._trim = None
        d = threads.deferToThreadPool(self._reactor, self._pool, self._thd_guarded, thd_function, *args, **kwargs)
        return d.addBoth(self._landed)

    def _landed(self, result):
        self._in_flight -= 1
        if not self._in_flight:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:  # in a later turn: the caller's own callbacks run first
                self._reactor.callLater(0, waiter.callback, None)
            if self.running and self._trim is None:
                self._trim = self._reactor.callLater(self.IDLE_TRIM, self._trim_when_idle)
        return result

    def _thd_new_client(self):
        try:
            return self._client_factory()
        except docker.errors.DockerException as exc:
            raise EngineUnavailable(str(exc)) from exc

    def _thd_client(self):
        with self._client_lock:
            if self._client is None:
                self._client = self._thd_new_client()
            return self._client

    def _thd_guarded(self, thd_function, *args, **kwargs):
        """Run thd_function(client, ...) and translate what the SDK raises into our errors."""
        with _translated():
            return thd_function(self._thd_client(), *args, **kwargs)

    def _thd_report(self, progress: Progress, message: str) -> None:
        if progress is not None:
            self._reactor.callFromThread(progress, message)

    def close(self) -> None:
        """Close the client's connections (a later call opens new ones)."""
        with self._client_lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    # engine

    def ping(self):
        """Fires with the engine's version string."""
        return self._call(self._thd_ping)

    def _thd_ping(self, client):
        return client.version()["Version"]

    # images

    def image_exists(self, ref: str):
        return self._call(self._thd_image_exists, ref)

    def _thd_image_exists(self, client, ref):
        try:
            client.api.inspect_image(ref)
        except docker.errors.NotFound:
            return False
        return True

    def image_labels(self, ref: str):
        """Fires with the image's labels ({} when it has none), or None when there is no such image."""
        return self._call(self._thd_image_labels, ref)

    def _thd_image_labels(self, client, ref):
        try:
            attrs = client.api.inspect_image(ref)
        except docker.errors.NotFound:
            return None
        return dict((attrs.get("Config") or {}).get("Labels") or {})

    def pull_image(self, ref: str, progress: Progress = None):
        """Fires with the image id; ImageUnavailable when the registry cannot give it."""
        return self._call(self._thd_pull_image, ref, progress)

    def _thd_pull_image(self, client, ref, progress):
        reporter = PullProgress(ref)
        self._thd_report(progress, f"pulling image {ref}")
        try:
            for item in client.api.pull(ref, stream=True, decode=True):
                if item.get("error"):
                    raise ImageUnavailable(
                        f"image {ref} is not on this node and the registry could not give it: {item['error']}")
                for message in reporter.feed(item):
                    self._thd_report(progress, message)
        except docker.errors.APIError as exc:
            why = "the registry does not have it" if _status(exc) == 404 else "the registry could not be reached"
            raise ImageUnavailable(f"image {ref} is not on this node and {why}: {_explain(exc)}") from exc
        return client.api.inspect_image(ref)["Id"]

    def build_image(self, context_dir, tag: str, labels: Dict[str, str], progress: Progress = None,
                    dockerfile: str = "Dockerfile"):
        """Build with the engine's classic builder; fires with the image id. A failed build raises
        BuildFailed naming the step and quoting the last output, and leaves no dangling layers."""
        return self._call(self._thd_build_image, str(context_dir), tag, dict(labels), progress, dockerfile)

    def _thd_build_image(self, client, context_dir, tag, labels, progress, dockerfile):
        output = BuildOutput(tag)
        path = os.path.join(context_dir, dockerfile)
        if not os.path.isfile(path):
            raise BuildFailed(f"building image {tag} failed: no {dockerfile} in {context_dir}")
        with tempfile.TemporaryDirectory(prefix="pd-build-") as outside:
            if self._owner_label in labels:
                # Outside the context: the SDK sends it along, and the project's files stay untouched.
                path = os.path.join(outside, "Dockerfile")
                with open(path, "w") as f:
                    f.write(owner_labelled(_read_text(context_dir, dockerfile), self._owner_label,
                                           labels[self._owner_label]))
            try:
                for chunk in client.api.build(path=context_dir, tag=tag, labels=labels, dockerfile=path,
                                              rm=True, forcerm=True, decode=True):
                    for message in output.feed(chunk):
                        self._thd_report(progress, message)
            except docker.errors.APIError as exc:
                output.fail(_explain(exc))
        output.finish()
        if output.error:
            self._thd_remove_layers(client, output.created_layers)
            raise BuildFailed(output.failure_message())
        return output.image_id or client.api.inspect_image(tag)["Id"]

    def _thd_remove_layers(self, client, layers: List[str]) -> None:
        for layer in reversed(layers):
            try:
                client.api.remove_image(layer)
            except docker.errors.APIError as exc:  # gone with its child, or a parent of someone else's image
                log.debug("kept build layer {layer}: {why}", layer=layer, why=_explain(exc))

    def remove_image(self, ref: str):
        """Untag/remove an image; nothing if there is none; InUse while a container (even stopped) uses it."""
        return self._call(self._thd_remove_image, ref)

    def _thd_remove_image(self, client, ref):
        try:
            client.api.remove_image(ref)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if _status(exc) == 409:
                raise InUse(f"image {ref} is in use: {_explain(exc)}") from exc
            raise

    # networks

    def create_network(self, name: str, labels: Dict[str, str], subnet: Optional[str] = None):
        """A bridge network; fires with its id. Idempotent: an existing network of that name is returned
        (Conflict if it belongs to another owner, or ``subnet`` is given and it has another one)."""
        return self._call(self._thd_create_network, name, dict(labels), subnet)

    def _check_owner(self, kind: str, name: str, theirs: Optional[dict], ours: Dict[str, str]) -> None:
        if self._owner_label is None:
            return
        owner, mine = (theirs or {}).get(self._owner_label), ours.get(self._owner_label)
        if owner != mine:
            raise Conflict(f"{kind} {name} exists and belongs to {self._owner_label}={owner or '(none)'}, "
                           f"not to {mine}: it is never reused")

    def _thd_create_network(self, client, name, labels, subnet):
        """Create first and look only on a refusal: an install (the common case) makes one engine call."""
        ipam = None
        if subnet:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        try:
            return client.api.create_network(name, driver="bridge", labels=labels, ipam=ipam,
                                             check_duplicate=True)["Id"]
        except docker.errors.APIError as exc:
            if _status(exc) == 409:  # it exists: ours to reuse, or a Conflict
                existing = self._thd_find_network(client, name, subnet, labels)
                if existing:
                    return existing
            if "overlaps" in _explain(exc):
                raise Conflict(f"network {name}: {_explain(exc)}") from exc
            raise

    def _thd_find_network(self, client, name, subnet, labels) -> Optional[str]:
        for network in client.api.networks(names=[name]):  # a name filter matches substrings
            if network["Name"] == name:
                self._check_owner("network", name, network.get("Labels"), labels)
                subnets = [c.get("Subnet") for c in (network.get("IPAM") or {}).get("Config") or []]
                if subnet and subnet not in subnets:
                    raise Conflict(f"network {name} exists with subnet {', '.join(subnets) or 'unknown'}, "
                                   f"not {subnet}")
                return network["Id"]
        return None

    def network_gateway(self, name: str):
        """Fires with the host's IPv4 address on the network (its bridge), where containers reach the node."""
        return self._call(self._thd_network_gateway, name)

    def _thd_network_gateway(self, client, name):
        network = client.api.inspect_network(name)
        for config in (network.get("IPAM") or {}).get("Config") or []:
            if config.get("Gateway") and ":" not in config["Gateway"]:
                return config["Gateway"].split("/")[0]
            if config.get("Subnet") and ":" not in config["Subnet"]:  # Docker's default: the first address
                return str(next(ipaddress.ip_network(config["Subnet"], strict=False).hosts()))
        raise NotFound(f"network {name} has no IPv4 subnet")

    def remove_network(self, name: str):
        """Disconnect leftover containers, then remove; nothing if there is no such network."""
        return self._call(self._thd_remove_network, name)

    def _thd_remove_network(self, client, name):
        try:
            network = client.api.inspect_network(name)
        except docker.errors.NotFound:
            return
        for container_id in network.get("Containers") or {}:
            try:
                client.api.disconnect_container_from_network(container_id, network["Id"], force=True)
            except docker.errors.NotFound:
                pass
        try:
            client.api.remove_network(network["Id"])
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if _status(exc) == 403 or "active endpoints" in _explain(exc):
                raise InUse(f"network {name} is in use: {_explain(exc)}") from exc
            raise

    # volumes

    def create_volume(self, name: str, labels: Dict[str, str]):
        """A local volume; fires with its name. Idempotent (Conflict if it belongs to another owner)."""
        return self._call(self._thd_create_volume, name, dict(labels))

    def _thd_create_volume(self, client, name, labels):
        # Creating is idempotent in the engine: an existing volume comes back as it is, with its own labels.
        existing = client.api.create_volume(name, driver="local", labels=labels)
        self._check_owner("volume", name, existing.get("Labels"), labels)
        return existing["Name"]

    def remove_volume(self, name: str):
        """Nothing if there is no such volume; InUse while a container (even stopped) mounts it."""
        return self._call(self._thd_remove_volume, name)

    def _thd_remove_volume(self, client, name):
        try:
            client.api.remove_volume(name)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:
            if _status(exc) == 409:
                raise InUse(f"volume {name} is in use: {_explain(exc)}") from exc
            raise

    # containers

    def create_container(self, spec: ContainerSpec):
        """Create (not start); fires with the id. Conflict if the name is taken, ImageUnavailable if the
        image is not on this node (creating never pulls)."""
        return self._call(self._thd_create_container, spec)

    def _thd_create_container(self, client, spec: ContainerSpec):
        api = client.api
        bindings: Dict[str, List[Tuple[str, int]]] = {}
        for binding in spec.port_bindings:
            bindings.setdefault(f"{binding.internal}/{binding.protocol}", []).append(
                (binding.host_ip, binding.external))
        host_config = api.create_host_config(
            port_bindings=bindings or None,
            binds={volume: {"bind": path, "mode": "rw"} for volume, path in spec.volumes.items()} or None,
            nano_cpus=int(round(spec.cpu_fraction * 1e9)) if spec.cpu_fraction else None,
            mem_limit=spec.memory,
            restart_policy=dict(spec.restart_policy) if spec.restart_policy else None,
            network_mode=spec.network, init=spec.init, dns=list(spec.dns) or None,
            cap_drop=["ALL"], cap_add=list(spec.capabilities) or None,
            security_opt=["no-new-privileges"] if spec.no_new_privileges else None)
        networking = None
        if spec.network:
            endpoint = api.create_endpoint_config(aliases=list(spec.aliases) or None)
            networking = api.create_networking_config({spec.network: endpoint})
        ports = [(b.internal, b.protocol) for b in spec.port_bindings]
        try:
            created = api.create_container(
                spec.image, command=spec.command, name=spec.name, environment=dict(spec.environment),
                labels=dict(spec.labels), user=spec.user, ports=ports or None, host_config=host_config,
                networking_config=networking, healthcheck=spec.healthcheck)
        except docker.errors.APIError as exc:
            if _status(exc) == 409:
                raise Conflict(f"a container named {spec.name} exists already") from exc
            if _status(exc) == 404 and "image" in _explain(exc).lower():
                raise ImageUnavailable(f"image {spec.image} is not on this node") from exc
            raise
        for warning in created.get("Warnings") or []:
            log.warn("creating container {name}: {warning}", name=spec.name, warning=warning)
        return created["Id"]

    def start_container(self, name: str):
        """Start; Conflict when a published host port is taken (the container stays created)."""
        return self._call(self._thd_start_container, name)

    def _thd_start_container(self, client, name):
        try:
            client.api.start(name)
        except docker.errors.APIError as exc:
            if "port is already allocated" in _explain(exc) or "address already in use" in _explain(exc):
                raise Conflict(f"cannot start container {name}: {_explain(exc)}") from exc
            raise

    def stop_container(self, name: str, timeout: float = 10):
        """SIGTERM, then SIGKILL after ``timeout`` seconds; NotFound if there is no such container."""
        return self._call(self._thd_stop_container, name, timeout)

    def _thd_stop_container(self, client, name, timeout):
        client.api.stop(name, timeout=int(timeout))

    def remove_container(self, name: str):
        """Kill and remove (with its anonymous volumes, not named ones); nothing if absent."""
        return self._call(self._thd_remove_container, name)

    def _thd_remove_container(self, client, name):
        try:
            client.api.remove_container(name, force=True)
        except docker.errors.NotFound:
            pass

    def rename_container(self, old: str, new: str):
        return self._call(self._thd_rename_container, old, new)

    def _thd_rename_container(self, client, old, new):
        try:
            client.api.rename(old, new)
        except docker.errors.APIError as exc:
            if _status(exc) == 409:
                raise Conflict(f"cannot rename container {old} to {new}: {_explain(exc)}") from exc
            raise

    def inspect_container(self, name: str):
        """Fires with a ContainerState, or None when there is no such container."""
        return self._call(self._thd_inspect_container, name)

    def _thd_inspect_container(self, client, name):
        try:
            return container_state(client.api.inspect_container(name))
        except docker.errors.NotFound:
            return None

    # listing and logs

    def list_objects(self, label: str):
        """Our objects carrying ``label`` (a key, or key=value): a dict with keys "containers", "networks",
        "volumes" and "images", each a list of (name, labels); images by tag (or id when untagged)."""
        return self._call(self._thd_list_objects, label)

    def _thd_list_objects(self, client, label):
        api = client.api
        filters = {"label": label}
        images = []
        for image in api.images(filters=filters):
            tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"] or [image["Id"]]
            images.extend((tag, dict(image.get("Labels") or {})) for tag in tags)
        return {
            "containers": [(c["Names"][0].lstrip("/"), dict(c.get("Labels") or {}))
                           for c in api.containers(all=True, filters=filters)],
            "networks": [(n["Name"], dict(n.get("Labels") or {})) for n in api.networks(filters=filters)],
            "volumes": [(v["Name"], dict(v.get("Labels") or {}))
                        for v in api.volumes(filters=filters).get("Volumes") or []],
            "images": images,
        }

    def logs(self, name: str, tail: int = 100, timestamps: bool = False):
        """Fires with the last ``tail`` lines of output (stdout and stderr) as a list of str."""
        return self._call(self._thd_logs, name, tail, timestamps)

    def _thd_logs(self, client, name, tail, timestamps):
        raw = client.api.logs(name, stdout=True, stderr=True, tail=tail, timestamps=timestamps)
        return raw.decode("utf-8", errors="replace").splitlines()

    def follow_logs(self, name: str, on_line: Callable[[str], None], tail: int = 0, timestamps: bool = False):
        """Fires with a LogFollower once the stream is open (NotFound if there is no such container).
        Lines reach ``on_line`` on the reactor thread; the follower's ``done`` fires when the stream ends.
        The follower reads in a thread of its own on a connection of its own, outside the pools (it lasts
        as long as the container); both end with it, and stopping the adapter ends it."""
        return self._follow(name, on_line, lambda client: self._thd_open_log_stream(client, name, tail, timestamps))

    def follow_events(self, on_event: Callable[[ContainerEvent], None], label: str,
                      actions: Tuple[str, ...] = ("start", "die")):
        """Fires with a follower (``stop()``, ``done``) once the engine streams the events: each of ``actions``
        that happens to a container carrying ``label`` reaches ``on_event`` as a ContainerEvent, on the reactor
        thread. Like a log follower it reads on a thread and a connection of its own; ``done`` fires when the
        engine ends the stream (it stopped, say)."""
        filters = {"type": ["container"], "label": [label], "event": list(actions)}

        def on_line(line):
            event = container_event(line)
            if event is not None:
                on_event(event)
        return self._follow("events", on_line, lambda client: client.api.events(filters=filters, decode=False),
                            thread_name="pd-events")

    def _follow(self, name: str, on_line: Callable[[str], None], thd_open_stream, thread_name: Optional[str] = None):
        """A stream read line by line on a thread and a client of its own (both end with it)."""
        if not self.running:
            return self._not_running()

        def thd_open():
            with _translated():
                client = self._thd_new_client()
                try:
                    return _OwnStream(thd_open_stream(client), client)
                except BaseException:
                    client.close()
                    raise

        def opened(follower):
            self._followers.add(follower)
            follower.done.addBoth(lambda result: self._followers.discard(follower) or result)
            if not self.running:
                follower.stop()
            return follower
        return logs_module.start_follower(self._reactor, name, on_line, thd_open, thread_name).addCallback(opened)

    def _thd_open_log_stream(self, client, name, tail, timestamps):
        return client.api.logs(name, stdout=True, stderr=True, stream=True, follow=True, tail=tail,
                               timestamps=timestamps)


@contextlib.contextmanager
def _translated():
    """What the SDK raises, as pdserver.containers.errors."""
    try:
        yield
    except EngineError:
        raise
    except docker.errors.NotFound as exc:
        raise NotFound(_explain(exc)) from exc
    except docker.errors.APIError as exc:
        if _status(exc) == 409:
            raise Conflict(_explain(exc)) from exc
        raise EngineError(_explain(exc)) from exc
    except requests.exceptions.RequestException as exc:
        raise EngineUnavailable(str(exc)) from exc
    except docker.errors.DockerException as exc:
        raise EngineError(str(exc)) from exc


class _OwnStream:
    """A log stream on a client of its own: closing the stream closes the client's connections too."""

    def __init__(self, stream, client):
        self._stream = stream
        self._client = client

    def __iter__(self):
        return iter(self._stream)

    def close(self) -> None:
        try:
            self._stream.close()
        finally:
            self._client.close()


def _read_text(context_dir: str, dockerfile: str) -> str:
    with open(os.path.join(context_dir, dockerfile), encoding="utf-8", errors="replace") as f:
        return f.read()


def owner_labelled(dockerfile: str, key: str, value: str) -> str:
    """The Dockerfile with a LABEL of the owner right after every FROM: every layer and intermediate
    container of every stage then carries it (the builder's own ``labels`` only reach the last layer)."""
    from dockerfile_parse import DockerfileParser  # builds only: an idle node never parses a Dockerfile
    parser = DockerfileParser(fileobj=io.BytesIO())
    parser.content = dockerfile
    parser.add_lines(f"LABEL {json.dumps(key)}={json.dumps(value)}", all_stages=True, at_start=True)
    return parser.content


def container_event(line: str) -> Optional[ContainerEvent]:
    """One line of the engine's event stream -> ContainerEvent; None (and a log line) for anything else."""
    try:
        data = json.loads(line)
        actor = data.get("Actor") or {}
        attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
        return ContainerEvent(action=str(data.get("Action") or data["status"]), id=str(actor.get("ID") or data["id"]),
                              name=attributes.get("name", ""), attributes=attributes,
                              time=int(data.get("timeNano") or 0) / 1e9 or float(data.get("time") or 0))
    except (ValueError, KeyError, TypeError, AttributeError):
        if line.strip():
            log.warn("not an engine event: {line}", line=line[:200])
        return None


def container_state(attrs: dict) -> ContainerState:
    """Docker's inspect document -> ContainerState."""
    state = attrs.get("State") or {}
    config = attrs.get("Config") or {}
    health = state.get("Health") or {}
    health_status = health.get("Status")
    checks = health.get("Log") or []
    started_at = state.get("StartedAt")
    if not started_at or started_at.startswith("0001-"):
        started_at = None
    networks = (attrs.get("NetworkSettings") or {}).get("Networks") or {}
    status = state.get("Status", "unknown")
    return ContainerState(
        id=attrs["Id"],
        name=attrs.get("Name", "").lstrip("/"),
        image=config.get("Image", ""),
        image_id=attrs.get("Image", ""),
        status=status,
        running=bool(state.get("Running")) and not state.get("Restarting") and not state.get("Paused"),
        exit_code=None if status == "created" else state.get("ExitCode"),
        health=health_status if health_status in ("starting", "healthy", "unhealthy") else None,
        health_output=(checks[-1].get("Output") or "").strip() if checks else None,
        restart_count=int(attrs.get("RestartCount") or 0),
        started_at=started_at,
        labels=dict(config.get("Labels") or {}),
        addresses={net: info["IPAddress"] for net, info in networks.items() if info.get("IPAddress")},
        capabilities=_capabilities(attrs.get("HostConfig") or {}),
        memory=(attrs.get("HostConfig") or {}).get("Memory") or None,
        pid=state.get("Pid") or None,
    )


def _capabilities(host_config: dict) -> Optional[Tuple[str, ...]]:
    """The capabilities added back after dropping all, or None when the engine's default set applies."""
    if "ALL" not in [c.upper().removeprefix("CAP_") for c in host_config.get("CapDrop") or []]:
        return None
    return tuple(sorted(c.upper().removeprefix("CAP_") for c in host_config.get("CapAdd") or []))
