"""The executors of chute steps: each action turns one step's arguments into engine or store calls.

Actions are idempotent where a repeat can happen (removals, creating networks
and volumes, recording the chute), so recovery can run them again safely.
"""
import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

from twisted.internet import defer, task, threads

from pdserver.chutes.source import resolve_inside
from pdserver.chutes.store import ChuteRecord, ChuteStore
from pdserver.containers.errors import ImageUnavailable, NotFound, NotReady
from pdserver.containers.health import Probe, wait_ready
from pdserver.containers.spec import ContainerSpec, PortBinding

LIGHT_DOCKERFILE = ".paradrop.Dockerfile"


def all_of(deferreds):
    """Fires with all results, or fails with the first failure itself (not wrapped in FirstError)."""
    d = defer.gatherResults(deferreds, consumeErrors=True)
    d.addErrback(lambda f: f.value.subFailure if f.check(defer.FirstError) else f)
    return d


def light_dockerfile(base: str, command, as_root: bool) -> str:
    """The Dockerfile of a light service: the project in /opt/chute, /data writable by the chute user."""
    cmd = command if isinstance(command, list) else ["/bin/sh", "-c", command]
    lines = [f"FROM {base}", "COPY . /opt/chute", "WORKDIR /opt/chute",
             "RUN mkdir -p /data && chown 1000:1000 /data"]
    if not as_root:
        lines.append("USER 1000:1000")
    lines.append(f"CMD {json.dumps(cmd)}")
    return "\n".join(lines) + "\n"


class ChuteActions:
    def __init__(self, engine, store: ChuteStore, reactor, build_dir: Path, node_labels: dict,
                 chute_environment: Callable[[str, int, str], dict], ready_grace: float, ready_timeout: float,
                 ready_probe: Optional[Probe] = None, update_drain: float = 0.0):
        """``chute_environment(chute, deployment, network)`` gives the PARADROP_* variables that depend on
        the node (API address, token); they are computed at creation so no secret lands in the journal.
        ``node_labels`` go on every object we create, next to the plan's labels. ``ready_probe`` replaces
        the HTTP probe of web services (unit tests open no sockets). ``update_drain`` is how long an updated
        chute's old version keeps running once the new one is recorded (``drain_old``)."""
        self._engine = engine
        self._node_labels = dict(node_labels)
        self._store = store
        self._reactor = reactor
        self._build_dir = build_dir
        self._chute_environment = chute_environment
        self._grace = ready_grace
        self._timeout = ready_timeout
        self._probe = ready_probe
        self._drain = update_drain

    def actions(self) -> dict:
        return {name: getattr(self, name) for name in (
            "check_source", "remove_source", "ensure_image", "build_image", "remove_image", "create_network",
            "remove_network", "create_volume", "remove_volume", "create_container", "start_container",
            "start_containers", "stop_container", "remove_container", "wait_ready", "drain_old", "save_chute",
            "restore_chute", "forget_chute")}

    def check_source(self, args, progress):
        if not Path(args["path"], "paradrop.yaml").is_file():
            raise FileNotFoundError(f"the uploaded project at {args['path']} is gone")

    def remove_source(self, args, progress):
        return threads.deferToThreadPool(self._reactor, self._reactor.getThreadPool(), shutil.rmtree,
                                         args["path"], True)

    @defer.inlineCallbacks
    def ensure_image(self, args, progress):
        if not (yield self._engine.image_exists(args["image"])):
            progress(f"pulling image {args['image']}")
            yield self._engine.pull_image(args["image"], progress)

    @defer.inlineCallbacks
    def build_image(self, args, progress):
        light = args.get("light")
        if light and not (yield self._engine.image_exists(light["base"])):
            raise ImageUnavailable(f"the base image {light['base']} is not built on this node; build it with "
                                   f"tools/build-base-images {light['base'].split('/')[1].split(':')[0]}")
        if not args["source_dir"]:
            self._build_dir.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=self._build_dir) as empty:
                image_id = yield self._build(Path(empty), args, progress)
            return image_id
        context = resolve_inside(Path(args["source_dir"]), args.get("service_source") or ".")
        image_id = yield self._build(context, args, progress)
        return image_id

    def _build(self, context: Path, args, progress):
        tag, light = args["tag"], args.get("light")
        if light:
            (context / LIGHT_DOCKERFILE).write_text(light_dockerfile(light["base"], light["command"],
                                                                     light["as_root"]))
            dockerfile = LIGHT_DOCKERFILE
        else:
            dockerfile = args.get("dockerfile") or "Dockerfile"
            resolve_inside(context, dockerfile)
            if not (context / dockerfile).is_file():
                raise FileNotFoundError(f"the project has no {dockerfile} for this normal service")
        progress(f"building image {tag}")
        return self._engine.build_image(context, tag, {**args["labels"], **self._node_labels}, progress,
                                        dockerfile=dockerfile)

    def remove_image(self, args, progress):
        return self._engine.remove_image(args["image"])

    def create_network(self, args, progress):
        return self._engine.create_network(args["name"], {**args["labels"], **self._node_labels})

    def remove_network(self, args, progress):
        return self._engine.remove_network(args["name"])

    def create_volume(self, args, progress):
        return self._engine.create_volume(args["name"], {**args["labels"], **self._node_labels})

    def remove_volume(self, args, progress):
        return self._engine.remove_volume(args["name"])

    @defer.inlineCallbacks
    def create_container(self, args, progress):
        environment = dict(args["environment"])
        extra = yield defer.maybeDeferred(self._chute_environment, args["chute"], args["deployment"],
                                          args["network"])
        environment.update(extra)
        healthcheck = args.get("healthcheck")
        if healthcheck:
            healthcheck = _docker_healthcheck(healthcheck)
        spec = ContainerSpec(
            name=args["name"], image=args["image"], command=args.get("command"), environment=environment,
            labels={**args["labels"], **self._node_labels}, network=args["network"], aliases=list(args["aliases"]),
            port_bindings=[PortBinding(e, i, p) for e, i, p in args["port_bindings"]],
            volumes=dict(args["volumes"]), cpu_fraction=args.get("cpu_fraction"), memory=args.get("memory"),
            capabilities=tuple(args.get("capabilities") or ()), healthcheck=healthcheck,
            dns=tuple(args.get("dns") or ()))
        yield self._engine.create_container(spec)

    def start_container(self, args, progress):
        return self._engine.start_container(args["name"])

    def start_containers(self, args, progress):
        """Start many at once: the engine spends ~0.3 s per start mostly waiting, so they overlap well."""
        return all_of([self._engine.start_container(name) for name in args["names"]])

    def stop_container(self, args, progress):
        """Stopping a container that is gone leaves it stopped: fine for undo and clean-up alike."""
        d = self._engine.stop_container(args["name"])
        d.addErrback(lambda f: f.trap(NotFound) and None)
        return d

    def remove_container(self, args, progress):
        return self._engine.remove_container(args["name"])

    @defer.inlineCallbacks
    def wait_ready(self, args, progress):
        try:
            yield wait_ready(self._engine, args["name"], args["network"], self._reactor, grace=self._grace,
                             timeout=self._timeout, web_port=args.get("web_port"), service=args.get("service"),
                             probe=self._probe)
        except NotReady as e:
            logs = yield self._engine.logs(args["name"], tail=10)
            detail = ("; last output: " + " | ".join(logs[-5:])) if logs else ""
            raise NotReady(f"{e.reason}{detail}") from None

    def drain_old(self, args, progress):
        """The new version is recorded (GET /api/v1/chutes/<name> shows it): clients that were using the old one
        move over meanwhile, and requests in flight end, before it stops."""
        return task.deferLater(self._reactor, self._drain, lambda: None)

    def save_chute(self, args, progress):
        self._store.save(ChuteRecord.from_dict(args["record"]))

    def restore_chute(self, args, progress):
        if args["record"] is None:
            self._store.delete(args["name"])
        else:
            self._store.save(ChuteRecord.from_dict(args["record"]))

    def forget_chute(self, args, progress):
        self._store.delete(args["name"])


def _docker_healthcheck(check: dict) -> dict:
    test = check["test"]
    seconds = 1_000_000_000
    return {"test": ["CMD-SHELL", test] if isinstance(test, str) else ["CMD"] + list(test),
            "interval": int(check.get("interval", 5) * seconds), "timeout": int(check.get("timeout", 3) * seconds),
            "retries": int(check.get("retries", 3))}

