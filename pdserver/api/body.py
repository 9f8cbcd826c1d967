"""Request bodies: size-limited, JSON parsed as hostile input (pdserver.parsing), validated by JSON Schema
with errors naming the field. Also the one list of content types the API tells apart."""
from typing import Union

from pdserver.errors import InvalidInput, TooLarge, UnsupportedMediaType
from pdserver.parsing import load_json
from pdserver.validation import SchemaError, check

# curl -d and old ParaDrop scripts send JSON labelled as a form or plain text; accept those as JSON.
JSON_COMPATIBLE = frozenset({"application/json", "application/x-www-form-urlencoded", "text/plain", "text/json"})
#: A chute project uploaded as a (possibly compressed) tar; pdtools 0.13.2 sends application/x-tar.
TAR_TYPES = frozenset({"application/x-tar", "application/tar", "application/gzip", "application/x-gzip",
                       "application/x-compressed-tar", "application/octet-stream"})
#: Bodies up to this size are parsed on the reactor thread (the common request stays fast); larger ones in a thread.
INLINE_BYTES = 64 * 1024


def media_type(header: Union[str, bytes, None]) -> str:
    """``application/json`` from ``Application/JSON; charset=utf-8`` (str or raw header bytes)."""
    if isinstance(header, bytes):
        header = header.decode("latin-1")
    return (header or "").split(";")[0].strip().lower()


def is_json(content_type: str) -> bool:
    return content_type in JSON_COMPATIBLE or content_type.endswith("+json")


def validate(instance, schema: dict) -> None:
    """Raise InvalidInput naming the first (most relevant) invalid field."""
    try:
        check(instance, schema)
    except SchemaError as e:
        raise InvalidInput(e.message, field=e.field, code=e.code) from None


def raw_json(request, max_bytes: int) -> bytes:
    """The body's bytes, once its size and content type are acceptable."""
    if getattr(request, "body_too_large", False):
        raise TooLarge(f"request body exceeds {max_bytes} bytes", field="body")
    content_type = media_type(request.getHeader("content-type")) or "application/json"
    if not is_json(content_type):
        raise UnsupportedMediaType(f"expected application/json, got {content_type}", field="Content-Type")
    request.content.seek(0)
    raw = request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise TooLarge(f"request body exceeds {max_bytes} bytes", field="body")
    if not raw.strip():
        raise InvalidInput("a JSON body is required", code="malformed_json", field="body")
    return raw


def parse_json(raw: bytes, schema: dict):
    """Thread-safe: the validated document in ``raw``."""
    data = load_json(raw)
    validate(data, schema)
    return data
