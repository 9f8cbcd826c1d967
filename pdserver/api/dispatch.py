"""The Edge API as one twisted.web resource: runs the admitted route's handler and writes its JSON answer.

A handler that returns a plain value is answered synchronously, in the same call (the common case: most reads);
one that returns a Deferred is answered when it fires, and cancelled when the client goes away first. A
websocket route's handler (or one that streams a file) returns the resource that takes the request over.
"""
from twisted.internet import defer
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from pdserver import errors
from pdserver.api.body import INLINE_BYTES, parse_json, raw_json
from pdserver.api.params import parse_query
from pdserver.api.routing import (Admission, Call, RawResponse, Response, Router, client_address, write_error,
                                  write_json)

log = Logger()


class ApiResource(Resource):
    """A leaf resource (the router matches whole paths) over a Router; see the module docstring."""

    isLeaf = True

    def __init__(self, router: Router, auth, run_in_thread):
        """``run_in_thread(f, *args)``: where JSON bodies larger than INLINE_BYTES are parsed and validated."""
        super().__init__()
        self._router = router
        self._auth = auth
        self._run_in_thread = run_in_thread

    def render(self, request):
        admission = getattr(request, "admission", None) or self._router.admit_request(request)
        if admission.error is not None:
            return write_error(request, admission.error)
        spec = admission.route.spec
        if admission.basic is not None:
            d = self._auth.authenticate(admission.basic, client_address(request))
            d.addCallback(self._invoke_as, request, admission)
            return self._answer_later(request, spec, d)
        try:
            result = self._invoke(request, admission, admission.principal)
            if isinstance(result, defer.Deferred):
                return self._answer_later(request, spec, result)
            return self._answer(request, spec, result)
        except errors.Error as e:
            return write_error(request, e)
        except Exception:
            return self._internal_error(request, spec)

    def _invoke_as(self, principal, request, admission: Admission):
        self._router.authorize(admission.route.spec, principal, admission.args)
        return self._invoke(request, admission, principal)

    def _invoke(self, request, admission: Admission, principal):
        spec = admission.route.spec
        query = parse_query(request.args, spec.query) if spec.query else {}

        def handle(body):
            return admission.route.handler(Call(request, principal, body, query), **admission.args)
        if spec.body is None or spec.upload or not (spec.body_required or _has_body(request)):
            return handle(None)
        raw = raw_json(request, admission.limit)
        if len(raw) <= INLINE_BYTES:
            return handle(parse_json(raw, spec.body))
        return self._run_in_thread(parse_json, raw, spec.body).addCallback(handle)

    @staticmethod
    def _answer(request, spec, result):
        if IResource.providedBy(result):  # it takes the request over: a websocket, a file
            return result.render(request)
        if isinstance(result, Response):
            return write_json(request, result.status, result.body, result.headers)
        if isinstance(result, RawResponse):
            request.setResponseCode(spec.status)
            request.setHeader(b"content-type", result.content_type.encode())
            request.setHeader(b"cache-control", b"no-store")
            request.setHeader(b"x-content-type-options", b"nosniff")
            return result.body
        return write_json(request, spec.status, result)

    def _answer_later(self, request, spec, d: defer.Deferred):
        finished = []
        request.notifyFinish().addBoth(finished.append)

        def written(data):
            if not finished and data is not NOT_DONE_YET:
                request.setHeader(b"content-length", b"%d" % len(data))
                request.write(data)
                request.finish()

        def failed(failure):
            if finished:
                if not failure.check(defer.CancelledError, errors.Error):
                    log.failure("error after the client of {method} {path} left", failure, method=spec.method,
                                path=spec.path)
                return None
            if failure.check(errors.Error):
                return write_error(request, failure.value)
            return self._internal_error(request, spec, failure)

        d.addCallback(lambda result: self._answer(request, spec, result) if not finished else NOT_DONE_YET)
        d.addErrback(failed)
        d.addCallback(written)
        d.addErrback(lambda failure: log.failure("writing the answer of {path} failed", failure, path=spec.path))
        request.notifyFinish().addErrback(lambda _: d.cancel())
        return NOT_DONE_YET

    @staticmethod
    def _internal_error(request, spec, failure=None) -> bytes:
        log.failure("unhandled error in {method} {path}", failure, method=spec.method, path=spec.path)
        return write_error(request, errors.InternalError("internal error; see the node log"))


def _has_body(request) -> bool:
    content = request.content
    if content is None:
        return False
    content.seek(0)
    present = bool(content.read(1))
    content.seek(0)
    return present
