"""Fetching a chute archive for a remote command (pdserver.cloud.download) from a real HTTP server on loopback:
the size cap holds with and without a Content-Length, the sha256 and the server's refusal name their field."""
import hashlib
import io

import pytest
import pytest_twisted
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from pdserver import errors
from pdserver.cloud import download

BODY = b"x" * 50_000


class Archive(Resource):
    isLeaf = True

    def render_GET(self, request):
        if request.getHeader("authorization") != "Bearer t0ken":
            request.setResponseCode(403)
            return b"no"
        if request.path == b"/chunked":
            for start in range(0, len(BODY), 4096):
                request.write(BODY[start:start + 4096])
            request.finish()
            return NOT_DONE_YET
        return BODY


@pytest.fixture
def server():
    port = reactor.listenTCP(0, Site(Archive()), interface="127.0.0.1")
    yield f"http://127.0.0.1:{port.getHost().port}"
    pytest_twisted.blockon(port.stopListening())


def source(url, token="t0ken", body=BODY):
    return download.check_source({"url": url, "token": token, "sha256": hashlib.sha256(body).hexdigest()})


@pytest_twisted.inlineCallbacks
def test_an_archive_within_the_cap_with_its_sha256_is_written_whole(server):
    for path in ("/sized", "/chunked"):
        out = io.BytesIO()
        yield download.fetch(reactor, source(server + path), out, len(BODY))
        assert out.read() == BODY


@pytest.mark.parametrize("path", ["/sized", "/chunked"])
@pytest_twisted.inlineCallbacks
def test_an_archive_past_the_cap_is_refused(server, path):
    out = io.BytesIO()
    with pytest.raises(errors.TooLarge) as caught:
        yield download.fetch(reactor, source(server + path), out, len(BODY) - 1)
    assert caught.value.field == "source.url" and len(out.getvalue()) < len(BODY)


@pytest_twisted.inlineCallbacks
def test_a_wrong_sha256_or_token_is_refused_naming_the_field(server):
    with pytest.raises(errors.InvalidInput) as caught:
        yield download.fetch(reactor, source(server + "/sized", body=b"other"), io.BytesIO(), len(BODY))
    assert caught.value.field == "source.sha256"
    with pytest.raises(errors.Unavailable) as caught:
        yield download.fetch(reactor, source(server + "/sized", token="wrong"), io.BytesIO(), len(BODY))
    assert caught.value.field == "source.url" and "403" in caught.value.message


@pytest.mark.parametrize("bad, field", [
    ({"url": "ftp://h/a"}, "source.url"), ({"url": "http://h/a b"}, "source.url"),
    ({"token": "a\nb"}, "source.token"), ({"sha256": "A" * 64}, "source.sha256"), ({"extra": 1}, "source"),
])
def test_a_malformed_source_is_refused_naming_the_field(bad, field):
    good = {"url": "http://127.0.0.1:9/a", "token": "t", "sha256": "0" * 64}
    with pytest.raises(errors.InvalidInput) as caught:
        download.check_source({**good, **bad})
    assert caught.value.field == field
