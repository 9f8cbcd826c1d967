"""Chutes: install (tar or JSON), update, start/stop/restart, delete, inspect, configuration, logs.

Every modification is a change in the queue; these routes validate what they can
at once (4xx naming the field) and answer 202 with the change id.
"""
from typing import Tuple

from twisted.internet import defer

from pdserver import errors
from pdserver.api.body import INLINE_BYTES, TAR_TYPES, media_type, parse_json, raw_json
from pdserver.api.routing import Call, QueryParam, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.chutes import checks
from pdserver.chutes.requests import ChuteRequests, spec_from_config
from pdserver.chutes.spec import ChuteSpec, build

_RESTART_BODY = {"type": "object", "additionalProperties": False, "required": ["environment"],
                 "properties": {"environment": {"type": "object"}}}
_CONFIG_BODY = {"type": "object", "additionalProperties": False, "required": ["config"],
                "properties": {"config": {"type": "object"}}}


def parse_config_body(raw: bytes) -> Tuple[dict, ChuteSpec]:
    """Thread-safe: the description of a JSON install/update body ``{"config": {...}}`` and the chute built
    from it."""
    config = parse_json(raw, _CONFIG_BODY)["config"]
    return config, spec_from_config(config)


class ChutesResource:
    routes = RouteTable("chutes")

    def __init__(self, requests: ChuteRequests, store, monitor, run_in_thread):
        """``requests`` checks and queues chute changes (the same checks as remote commands')."""
        self._requests = requests
        self._store = store
        self._monitor = monitor
        self._run_in_thread = run_in_thread

    def _record(self, name):
        return checks.installed(self._store, name)

    @defer.inlineCallbacks
    def _read_chute(self, call: Call):
        """(description, chute, source dir or None) from a tar upload or a JSON {"config": ...} body, parsed
        and validated in a thread when it can be large. The caller keeps or discards the source dir."""
        request = call.request
        if getattr(request, "body_too_large", False):
            raise errors.TooLarge("the upload exceeds the size limit", field="body")
        if media_type(request.getHeader("content-type")) in TAR_TYPES:
            request.content.seek(0)
            result = yield self._requests.unpack(request.content)
            return result
        raw = raw_json(request, self._requests.max_upload)
        if len(raw) > INLINE_BYTES:
            config, spec = yield self._run_in_thread(parse_config_body, raw)
        else:
            config, spec = parse_config_body(raw)
        return config, spec, None

    def _submit(self, type_, target, call, params=None):
        return self._submitted(self._requests.submit(type_, target, call.username, params))

    @staticmethod
    def _submitted(change):
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
        change = yield self._requests.install(call.username, description, spec, source)
        return self._submitted(change)

    @routes.route("/api/v1/chutes/<chute>", "PUT", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Update a chute to a newer version", upload=True, body=_CONFIG_BODY)
    @defer.inlineCallbacks
    def update(self, call: Call, chute):
        self._record(chute)
        description, spec, source = yield self._read_chute(call)
        change = yield self._requests.update(call.username, chute, description, spec, source)
        return self._submitted(change)

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
        return self._submitted(self._requests.simple("delete", chute, call.username))

    @routes.route("/api/v1/chutes/<chute>/start", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Start a stopped chute")
    def start(self, call: Call, chute):
        return self._submitted(self._requests.simple("start", chute, call.username))

    @routes.route("/api/v1/chutes/<chute>/stop", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Stop a chute (it stays installed)")
    def stop(self, call: Call, chute):
        return self._submitted(self._requests.simple("stop", chute, call.username))

    @routes.route("/api/v1/chutes/<chute>/restart", "POST", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Restart a chute's services; a body {environment} restarts it with those variables",
                  body=_RESTART_BODY, body_required=False)
    def restart(self, call: Call, chute):
        record = self._record(chute)
        if call.body is None:
            return self._submitted(self._requests.simple("restart", chute, call.username))
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
        self._requests.check_supported(spec)
        return self._submit("update", chute, call, {"description": description, "source_dir": record.source_dir,
                                                     "same_version_ok": True})

    @routes.route("/api/v1/chutes/<chute>/logs", "GET", permission=Permission.READ_CHUTE_LOGS, chute_param="chute",
                  summary="The last lines of output of each service",
                  query={"tail": QueryParam(int, 100, 1, 10000, description="lines per service")})
    @defer.inlineCallbacks
    def logs(self, call: Call, chute):
        lines = yield self._monitor.tail(self._record(chute), call.query["tail"])
        return {"lines": lines}
