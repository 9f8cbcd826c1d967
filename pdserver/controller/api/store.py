"""The chute store: chutes, versions (a project tar or JSON {config}, validated as a node does) and archives."""
import os

from twisted.internet import defer
from twisted.protocols.basic import FileSender
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from pdserver import errors
from pdserver.api.body import INLINE_BYTES, TAR_TYPES, media_type, raw_json
from pdserver.api.chutes import _CONFIG_BODY, parse_config_body
from pdserver.api.routing import Call, Response, RouteTable
from pdserver.controller.api.auth import CloudPermission
from pdserver.controller.store import CHUTE_NAME, IN_DATABASE

USER = CloudPermission.USER
log = Logger()


def _archive_headers(request, size: int) -> None:
    request.setHeader(b"content-type", b"application/x-tar")
    request.setHeader(b"content-length", b"%d" % size)
    request.setHeader(b"cache-control", b"no-store")


@implementer(IPushProducer)
class DatabaseArchiveResource(Resource):
    """Streams an archive kept in the database, one chunk at a time and only as fast as the client reads: a large
    archive never sits in memory, a slow client holds one chunk."""

    isLeaf = True

    def __init__(self, store, chute: str, version: str, size: int):
        super().__init__()
        self._store, self._chute, self._version, self._size = store, chute, version, size
        self._request = None
        self._seq = self._sent = 0
        self._paused = self._reading = self._gone = False

    def render(self, request):
        self._request = request
        _archive_headers(request, self._size)
        request.notifyFinish().addBoth(self._finished)
        request.registerProducer(self, True)
        self._next()
        return NOT_DONE_YET

    def _finished(self, _):
        self._gone = True

    def _next(self):
        if self._gone or self._paused or self._reading:
            return
        if self._sent >= self._size:
            self._request.unregisterProducer()
            self._request.finish()
            return
        self._reading = True
        self._store.archive_chunk(self._chute, self._version, self._seq).addCallbacks(self._write, self._failed)

    def _write(self, data: bytes):
        self._reading = False
        if self._gone:
            return
        if not data:  # shorter than its recorded size: end the response short, as a broken transfer
            self._failed(None)
            return
        self._seq += 1
        self._sent += len(data)
        self._request.write(data)
        self._next()

    def _failed(self, failure):
        self._reading = False
        if failure is not None:
            log.failure("reading archive {chute}@{version} failed", failure, chute=self._chute,
                        version=self._version)
        if not self._gone:
            self._request.unregisterProducer()
            self._request.loseConnection()

    def pauseProducing(self):
        self._paused = True

    def resumeProducing(self):
        self._paused = False
        self._next()

    def stopProducing(self):
        self._gone = True


class ArchiveResource(Resource):
    """Streams one archive file (a version kept on disk by an earlier release) as application/x-tar (a producer:
    a large archive never sits in memory)."""

    isLeaf = True

    def __init__(self, path: str):
        super().__init__()
        self._path = path

    def render(self, request):
        try:
            f = open(self._path, "rb")
        except OSError:
            raise errors.NotFound("the archive file is missing", field="version") from None
        _archive_headers(request, os.fstat(f.fileno()).st_size)
        gone = []
        request.notifyFinish().addBoth(gone.append)

        def done(_):
            f.close()
            if not gone:
                request.finish()
        FileSender().beginFileTransfer(f, request).addBoth(done)
        return NOT_DONE_YET


class StoreResource:
    routes = RouteTable("store")

    def __init__(self, store, run_in_thread, max_upload_bytes: int):
        self._store = store
        self._run_in_thread = run_in_thread
        self._max_upload = max_upload_bytes

    @routes.route("/api/v1/store/chutes", "GET", permission=USER, summary="Chutes in the store")
    def list_chutes(self, call: Call):
        return self._store.list_chutes()

    @routes.route("/api/v1/store/chutes", "POST", permission=USER, status=201, error_statuses=(409,),
                  summary="Add a chute to the store (you alone add its versions)",
                  body={"type": "object", "additionalProperties": False, "required": ["name"],
                        "properties": {"name": CHUTE_NAME,
                                       "description": {"type": "string", "maxLength": 10000}}})
    def create_chute(self, call: Call):
        d = self._store.create_chute(call.username, call.body["name"], call.body.get("description", ""),
                                     call.address)
        return d.addCallback(lambda body: Response(body, 201))

    @routes.route("/api/v1/store/chutes/<chute>", "GET", permission=USER, summary="A chute and its versions")
    def get_chute(self, call: Call, chute):
        return self._store.get_chute(chute)

    @routes.route("/api/v1/store/chutes/<chute>/versions", "GET", permission=USER, summary="A chute's versions")
    def list_versions(self, call: Call, chute):
        return self._store.versions(chute)

    @routes.route("/api/v1/store/chutes/<chute>/versions", "POST", permission=USER, status=201, upload=True,
                  body=_CONFIG_BODY, error_statuses=(403, 409),
                  summary="Add a version from a tar of the chute project or JSON {config}; the version is its "
                          "paradrop.yaml's")
    @defer.inlineCallbacks
    def create_version(self, call: Call, chute):
        yield self._store.get_chute(chute)
        request = call.request
        if media_type(request.getHeader("content-type")) in TAR_TYPES:
            version = yield self._store.add_tar(call.username, chute, request.content, call.address)
        else:
            raw = raw_json(request, self._max_upload)
            if len(raw) > INLINE_BYTES:
                config, _ = yield self._run_in_thread(parse_config_body, raw)
            else:
                config, _ = parse_config_body(raw)
            version = yield self._store.add_config(call.username, chute, config, call.address)
        return Response(version, 201)

    @routes.route("/api/v1/store/chutes/<chute>/versions/<version>", "GET", permission=USER,
                  summary="One version with its paradrop.yaml")
    def get_version(self, call: Call, chute, version):
        d = self._store.get_version(chute, version)
        return d.addCallback(lambda v: {k: value for k, value in v.items() if k != "archive_path"})

    @routes.route("/api/v1/store/chutes/<chute>/versions/<version>/archive", "GET",
                  permission=CloudPermission.ARCHIVE,
                  summary="The version's project tar (a user's token, or the token a node's command carries)")
    def archive(self, call: Call, chute, version):
        def found(v):
            if not v["archive_path"]:
                raise errors.NotFound(f"version {version} of {chute} was made from JSON: it has no archive",
                                      field="version")
            if v["archive_path"] == IN_DATABASE:
                return DatabaseArchiveResource(self._store, chute, version, v["size"])
            return ArchiveResource(v["archive_path"])
        return self._store.get_version(chute, version).addCallback(found)
