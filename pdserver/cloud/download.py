"""Fetch a chute archive a remote command names: size-limited, sha256-checked, with the controller's token.

treq is imported here, on the first download: only a provisioned node that is sent an archive pays for it.
"""
import hashlib
import re
from typing import BinaryIO
from urllib.parse import urlsplit

from twisted.internet import defer
from twisted.web.iweb import UNKNOWN_LENGTH

from pdserver import errors

SHA256 = re.compile(r"^[0-9a-f]{64}$")
TIMEOUT = 300.0


class _Sink:
    """Writes the body to ``out`` while counting and hashing it; stops the transfer past ``max_bytes``."""

    def __init__(self, out: BinaryIO, max_bytes: int):
        self.out = out
        self.max_bytes = max_bytes
        self.size = 0
        self.digest = hashlib.sha256()

    def __call__(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.max_bytes:
            raise errors.TooLarge(f"the archive exceeds the upload limit of {self.max_bytes} bytes",
                                  field="source.url")
        self.digest.update(data)
        self.out.write(data)


def check_source(source) -> dict:
    """``{url, token, sha256}`` as a remote command sends it, or InvalidInput naming the field."""
    if not isinstance(source, dict) or set(source) - {"url", "token", "sha256"}:
        raise errors.InvalidInput("source must be an object {url, token, sha256}", field="source")
    url = source.get("url")
    if not isinstance(url, str) or len(url) > 2048 or urlsplit(url).scheme not in ("http", "https") \
            or not urlsplit(url).hostname or any(ord(c) < 33 for c in url):
        raise errors.InvalidInput("source.url must be an http(s) URL", field="source.url")
    token = source.get("token")
    if token is not None and (not isinstance(token, str) or len(token) > 4096 or not token.isprintable()
                              or not token):
        raise errors.InvalidInput("source.token must be a printable string", field="source.token")
    digest = source.get("sha256")
    if not isinstance(digest, str) or not SHA256.match(digest):
        raise errors.InvalidInput("source.sha256 must be 64 lowercase hex digits", field="source.sha256")
    return {"url": url, "token": token, "sha256": digest}


@defer.inlineCallbacks
def fetch(reactor, source: dict, out: BinaryIO, max_bytes: int):
    """Write the archive of ``source`` (checked by check_source) to ``out``; errors name ``source.*``."""
    import treq
    headers = {"Authorization": f"Bearer {source['token']}"} if source["token"] else {}
    try:
        response = yield treq.get(source["url"], headers=headers, unbuffered=True, allow_redirects=False,
                                  timeout=TIMEOUT, reactor=reactor)
    except Exception as e:
        raise errors.Unavailable(f"cannot fetch the archive: {e}", field="source.url") from None
    if response.code != 200:
        yield treq.content(response).addErrback(lambda _: None)
        raise errors.Unavailable(f"fetching the archive answered HTTP {response.code}", field="source.url")
    if response.length is not UNKNOWN_LENGTH and response.length > max_bytes:
        raise errors.TooLarge(f"the archive exceeds the upload limit of {max_bytes} bytes", field="source.url")
    sink = _Sink(out, max_bytes)
    try:
        yield treq.collect(response, sink)
    except errors.Error:
        raise
    except Exception as e:
        raise errors.Unavailable(f"the archive's transfer failed: {e}", field="source.url") from None
    if sink.digest.hexdigest() != source["sha256"]:
        raise errors.InvalidInput("the archive does not match its sha256", field="source.sha256")
    out.seek(0)
