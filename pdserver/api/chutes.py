"""Chutes: install (tar or JSON), update, start/stop/restart, delete, inspect, configuration, logs.

Every modification is a change in the queue; these routes validate what they can
at once (4xx naming the field) and answer 202 with the change id.
"""
import shutil
import uuid
from pathlib import Path

from twisted.internet import defer

from pdserver import errors
from pdserver.api.body import read_json
from pdserver.api.routing import Call, QueryParam, Response, RouteTable
from pdserver.auth.roles import Permission
from pdserver.chutes.source import extract_project
from pdserver.chutes.spec import SpecError, build, load_yaml
from pdserver.chutes.versions import is_newer

TAR_TYPES = {"application/x-tar", "application/tar", "application/gzip", "application/x-gzip",
             "application/x-compressed-tar", "application/octet-stream"}
_RESTART_BODY = {"type": "object", "additionalProperties": False, "required": ["environment"],
                 "properties": {"environment": {"type": "object"}}}
_CONFIG_BODY = {"type": "object", "additionalProperties": False, "required": ["config"],
                "properties": {"config": {"type": "object"}}}


def _content_type(request) -> str:
    return (request.getHeader("content-type") or "").split(";")[0].strip().lower()


class ChutesResource:
    routes = RouteTable("chutes")

    def __init__(self, queue, store, monitor, sources_dir: Path, max_upload_bytes: int, run_in_thread):
        self._queue = queue
        self._store = store
        self._monitor = monitor
        self._sources = sources_dir
        self._max_upload = max_upload_bytes
        self._run_in_thread = run_in_thread

    def _record(self, name):
        record = self._store.get(name)
        if record is None:
            raise errors.NotFound(f"no chute {name} is installed", field="chute")
        return record

    @defer.inlineCallbacks
    def _read_chute(self, call: Call):
        """(description, source dir or None) from a tar upload or a JSON {"config": ...} body."""
        request = call.request
        if getattr(request, "body_too_large", False):
            raise errors.TooLarge("the upload exceeds the size limit", field="body")
        if _content_type(request) in TAR_TYPES:
            dest = self._sources / uuid.uuid4().hex
            request.content.seek(0)
            try:
                root = yield self._run_in_thread(extract_project, request.content, dest, self._max_upload)
                description = load_yaml((root / "paradrop.yaml").read_text(errors="replace"))
                build(description)
            except (SpecError, UnicodeDecodeError, OSError) as e:
                shutil.rmtree(dest, ignore_errors=True)
                if isinstance(e, SpecError):
                    raise errors.InvalidInput(e.message, field=e.field, code="invalid_chute") from None
                raise errors.InvalidInput(f"cannot read the project: {e}", field="archive",
                                        code="invalid_chute") from None
            return description, str(root)
        body = read_json(request, _CONFIG_BODY, self._max_upload)
        try:
            build(body["config"])
        except SpecError as e:
            raise errors.InvalidInput(e.message, field=f"config.{e.field}" if e.field else "config",
                                    code="invalid_chute") from None
        if any(s.get("type") == "normal" for s in (body["config"].get("services") or {}).values()):
            raise errors.InvalidInput("normal services need their Dockerfile: upload the project as a tar",
                                    field="config.services", code="invalid_chute")
        return body["config"], None

    @staticmethod
    def _check_supported(description: dict, prefix: str = "") -> None:
        """Refuse what this node cannot give yet rather than install a chute without it."""
        for name, service in (description.get("services") or {}).items():
            if service.get("interfaces"):
                raise errors.InvalidInput(
                    "network interfaces (wifi-ap, lan, vlan) are not available on this node yet",
                    field=f"{prefix}services.{name}.interfaces", code="unsupported")

    def _check_supported_or_discard(self, description, source):
        try:
            self._check_supported(description)
        except errors.Error:
            _discard(source)
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
        description, source = yield self._read_chute(call)
        self._check_supported_or_discard(description, source)
        name = description["name"]
        if self._store.get(name) is not None:
            _discard(source)
            raise errors.Conflict(f"chute {name} is already installed; update it with PUT /api/v1/chutes/{name}",
                                  field="name", code="chute_exists")
        return self._submit("install", name, call, {"description": description, "source_dir": source})

    @routes.route("/api/v1/chutes/<chute>", "PUT", permission=Permission.MANAGE_CHUTES, status=202,
                  summary="Update a chute to a newer version", upload=True, body=_CONFIG_BODY)
    @defer.inlineCallbacks
    def update(self, call: Call, chute):
        record = self._record(chute)
        description, source = yield self._read_chute(call)
        self._check_supported_or_discard(description, source)
        if description["name"] != chute:
            _discard(source)
            raise errors.InvalidInput(f"the project is chute {description['name']}, not {chute}", field="name")
        if not is_newer(str(description["version"]), record.version):
            _discard(source)
            raise errors.Conflict(f"version {description['version']} is not newer than the installed "
                                  f"{record.version}", field="version", code="version_not_newer")
        return self._submit("update", chute, call, {"description": description, "source_dir": source})

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
        request = call.request
        request.content.seek(0)
        if not request.content.read(1):
            return self._submit("restart", chute, call)
        body = read_json(request, _RESTART_BODY, self._max_upload)
        description = {**record.description, "environment": body["environment"]}
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
        if description["name"] != chute:
            raise errors.InvalidInput(f"the description is of chute {description['name']}, not {chute}",
                                    field="name")
        build(description)
        self._check_supported(description)
        return self._submit("update", chute, call, {"description": description, "source_dir": record.source_dir,
                                                     "same_version_ok": True})

    @routes.route("/api/v1/chutes/<chute>/networks", "GET", permission=Permission.READ_CHUTES, chute_param="chute",
                  summary="The host networks (Wi-Fi AP, LAN, VLAN) a chute has")
    def networks(self, call: Call, chute):
        spec = self._record(chute).spec()
        return [{"name": interface, "service": svc.name} for svc in spec.services for interface in svc.interfaces]

    @routes.route("/api/v1/chutes/<chute>/logs", "GET", permission=Permission.READ_CHUTE_LOGS, chute_param="chute",
                  summary="The last lines of output of each service",
                  query={"tail": QueryParam(int, 100, 1, 10000, description="lines per service")})
    @defer.inlineCallbacks
    def logs(self, call: Call, chute):
        lines = yield self._monitor.tail(self._record(chute), call.query["tail"])
        return {"lines": lines}


def _discard(source):
    if source:
        shutil.rmtree(source, ignore_errors=True)
