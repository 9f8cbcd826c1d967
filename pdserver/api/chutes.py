"""Chutes: install (tar or JSON), update, start/stop/restart, delete, inspect, configuration, logs.

Every modification is a change in the queue; these routes validate what they can
at once (4xx naming the field) and answer 202 with the change id.
"""
import shutil
import uuid
from pathlib import Path
from typing import Callable, Tuple

from twisted.internet import defer

from pdserver import errors
from pdserver.api.body import INLINE_BYTES, TAR_TYPES, media_type, parse_json, raw_json
from pdserver.api.routing import Call, QueryParam, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.chutes import checks, networks, policy
from pdserver.chutes.source import DESCRIPTION, thd_unpack_project
from pdserver.chutes.networks import NetworkFacts
from pdserver.chutes.spec import ChuteSpec, SpecError, build

_RESTART_BODY = {"type": "object", "additionalProperties": False, "required": ["environment"],
                 "properties": {"environment": {"type": "object"}}}
_CONFIG_BODY = {"type": "object", "additionalProperties": False, "required": ["config"],
                "properties": {"config": {"type": "object"}}}


def parse_config_body(raw: bytes) -> Tuple[dict, ChuteSpec]:
    """Thread-safe: the description of a JSON install/update body ``{"config": {...}}`` and the chute built
    from it."""
    config = parse_json(raw, _CONFIG_BODY)["config"]
    try:
        spec = build(config)
    except SpecError as e:
        field = f"config.{e.field}" if e.field else "config"
        raise SpecError(e.message if e.field else f"config: {e.message}", field) from None
    if any(service.type == "normal" for service in spec.services):
        raise SpecError("normal services need their Dockerfile: upload the project as a tar", "config.services")
    return config, spec


class ChutesResource:
    routes = RouteTable("chutes")

    def __init__(self, queue, store, monitor, chute_policy: Callable[[], policy.NodePolicy], sources_dir: Path,
                 max_upload_bytes: int, run_in_thread, network_facts: Callable[[], NetworkFacts] = NetworkFacts):
        """``chute_policy()`` and ``network_facts()`` are the node's policy for chutes and its host networks as
        they stand (the change handler checks both again at run time)."""
        self._network_facts = network_facts
        self._queue = queue
        self._store = store
        self._monitor = monitor
        self._chute_policy = chute_policy
        self._sources = sources_dir
        self._max_upload = max_upload_bytes
        self._run_in_thread = run_in_thread

    def _record(self, name):
        return checks.installed(self._store, name)

    def _thread_owning(self, dest: Path, f, *args) -> defer.Deferred:
        """Run thread code that creates ``dest``. The dispatcher cancels a request's Deferred when its client goes
        away, but not the thread: then wait for the thread and remove what it made."""
        work = self._run_in_thread(f, *args)
        result = defer.Deferred(lambda _: work.addBoth(lambda _: self._discard(str(dest))))
        work.addCallbacks(lambda value: result.called or result.callback(value),
                          lambda failure: result.called or result.errback(failure))
        return result

    @defer.inlineCallbacks
    def _read_chute(self, call: Call):
        """(description, chute, source dir or None) from a tar upload or a JSON {"config": ...} body, parsed
        and validated in a thread when it can be large. The caller keeps or discards the source dir."""
        request = call.request
        if getattr(request, "body_too_large", False):
            raise errors.TooLarge("the upload exceeds the size limit", field="body")
        if media_type(request.getHeader("content-type")) in TAR_TYPES:
            dest = self._sources / uuid.uuid4().hex
            request.content.seek(0)
            try:
                description, spec = yield self._thread_owning(dest, thd_unpack_project, request.content, dest,
                                                              self._max_upload)
            except SpecError as e:
                raise SpecError(e.message, e.field or DESCRIPTION) from None
            return description, spec, str(dest)
        raw = raw_json(request, self._max_upload)
        if len(raw) > INLINE_BYTES:
            config, spec = yield self._run_in_thread(parse_config_body, raw)
        else:
            config, spec = parse_config_body(raw)
        return config, spec, None

    def _check_supported(self, spec: ChuteSpec) -> None:
        """Refuse what this node cannot give (by its policy, its radios, its free subnets) rather than queue a
        change that fails."""
        policy.check(spec, self._chute_policy())
        record = self._store.get(spec.name)
        others = [a for r in self._store.list() if r.name != spec.name for a in r.networks.values()]
        networks.assign(self._network_facts(), spec, record.networks if record else {}, others)

    def _discard(self, source) -> defer.Deferred:
        """Remove an uploaded project (in a thread: a tree of thousands of files)."""
        if not source:
            return defer.succeed(None)
        return self._run_in_thread(shutil.rmtree, source, True)

    @defer.inlineCallbacks
    def _submit_upload(self, type_, call, description, spec, source, check):
        """Submit a change that brings an upload; on any failure (a 4xx check, a 500) the upload goes."""
        try:
            self._check_supported(spec)
            check()
            return self._submit(type_, description["name"], call, {"description": description, "source_dir": source})
        except BaseException:
            yield self._discard(source)
            raise

    def _submit(self, type_, target, call, params=None):
        change = self._queue.submit(type_, target, call.username, params or {})
        return Response({"change_id": change.id}, 202)

    @routes.route("/api/v1/chutes", "GET", permission=Permission.READ_CHUTES, summary="Installed chutes")
    def list_chutes(self, call: Call):
        return [self._summary(r) for r in self._store.list()]

    def _summary(self, record):
        spec = record.spec()
        return {"name": record.name, "version": record.version, "state": record.state,
                "description": spec.description, "services": [s.name for s in spec.services],
                "installed": record.installed, "updated": record.updated,
                "web": {"service": spec.web_service, "port": spec.web_port} if spec.web_port else None}

    @routes.route("/api/v1/chutes", "POST", permission=Permission.INSTALL_CHUTE, status=202,
                  summary="Install a chute from a tar of its project or JSON {config}", upload=True, body=_CONFIG_BODY)
    @defer.inlineCallbacks
    def install(self, call: Call):
        description, spec, source = yield self._read_chute(call)
        response = yield self._submit_upload("install", call, description, spec, source,
                                             lambda: checks.name_free(self._store, description["name"]))
        return response

    @routes.route("/api/v1/chutes/<chute>", "PUT", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Update a chute to a newer version", upload=True, body=_CONFIG_BODY)
    @defer.inlineCallbacks
    def update(self, call: Call, chute):
        self._record(chute)
        description, spec, source = yield self._read_chute(call)

        def check():
            checks.same_chute(description["name"], chute)
            checks.newer(self._record(chute), description["version"])
        response = yield self._submit_upload("update", call, description, spec, source, check)
        return response

    @routes.route("/api/v1/chutes/<chute>", "GET", permission=Permission.READ_CHUTES, chute_param="chute",
                  summary="A chute with the state of its services")
    @defer.inlineCallbacks
    def get_chute(self, call: Call, chute):
        record = self._record(chute)
        services = yield self._monitor.services(record)
        return {**self._summary(record), "environment": dict(record.spec().environment), "service_states": services}

    @routes.route("/api/v1/chutes/<chute>", "DELETE", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Remove a chute and its data")
    def delete(self, call: Call, chute):
        self._record(chute)
        return self._submit("delete", chute, call)

    @routes.route("/api/v1/chutes/<chute>/start", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Start a stopped chute")
    def start(self, call: Call, chute):
        self._record(chute)
        return self._submit("start", chute, call)

    @routes.route("/api/v1/chutes/<chute>/stop", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Stop a chute (it stays installed)")
    def stop(self, call: Call, chute):
        self._record(chute)
        return self._submit("stop", chute, call)

    @routes.route("/api/v1/chutes/<chute>/restart", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Restart a chute's services; a body {environment} restarts it with those variables",
                  body=_RESTART_BODY, body_required=False)
    def restart(self, call: Call, chute):
        record = self._record(chute)
        if call.body is None:
            return self._submit("restart", chute, call)
        description = {**record.description, "environment": call.body["environment"]}
        build(description)
        return self._submit("update", chute, call, {"description": description, "source_dir": record.source_dir,
                                                     "same_version_ok": True})

    @routes.route("/api/v1/chutes/<chute>/cache", "GET", permission=Permission.READ_CHUTES, chute_param="chute",
                  summary="Internal details of a chute's installation (for debugging; not stable)")
    def cache(self, call: Call, chute):
        record = self._record(chute)
        return {"deployment": record.deployment, "source_dir": record.source_dir, **self._monitor.objects(record)}

    @routes.route("/api/v1/chutes/<chute>/config", "GET", permission=Permission.READ_CHUTES, chute_param="chute",
                  summary="A chute's description (its paradrop.yaml)")
    def get_config(self, call: Call, chute):
        return self._record(chute).description

    @routes.route("/api/v1/chutes/<chute>/config", "PUT", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Replace a chute's description and restart it with it", body={"type": "object"})
    def put_config(self, call: Call, chute):
        record = self._record(chute)
        description = call.body.get("config", call.body) if set(call.body) == {"config"} else call.body
        description = {**description, "name": description.get("name", chute),
                       "version": description.get("version", record.version)}
        checks.same_chute(description["name"], chute)
        spec = build(description)
        checks.newer(record, description["version"], same_version_ok=True)
        self._check_supported(spec)
        return self._submit("update", chute, call, {"description": description, "source_dir": record.source_dir,
                                                     "same_version_ok": True})

    @routes.route("/api/v1/chutes/<chute>/logs", "GET", permission=Permission.READ_CHUTE_LOGS, chute_param="chute",
                  summary="The last lines of output of each service",
                  query={"tail": QueryParam(int, 100, 1, 10000, description="lines per service")})
    @defer.inlineCallbacks
    def logs(self, call: Call, chute):
        lines = yield self._monitor.tail(self._record(chute), call.query["tail"])
        return {"lines": lines}
