"""Request bodies: size-limited, JSON only, validated by JSON Schema with errors naming the field."""
import json

from pdserver.errors import InvalidInput, TooLarge, UnsupportedMediaType
from pdserver.validation import SchemaError, check

# curl -d and old ParaDrop scripts send JSON labelled as a form or plain text; accept those as JSON.
JSON_COMPATIBLE = {"application/json", "application/x-www-form-urlencoded", "text/plain", "text/json"}


def validate(instance, schema: dict) -> None:
    """Raise BadRequest naming the first (most relevant) invalid field."""
    try:
        check(instance, schema)
    except SchemaError as e:
        raise InvalidInput(e.message, field=e.field, code=e.code) from None


def read_json(request, schema: dict, max_bytes: int):
    """The validated JSON body of a request."""
    if getattr(request, "body_too_large", False):
        raise TooLarge(f"request body exceeds {max_bytes} bytes", code="payload_too_large")
    content_type = (request.getHeader("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type not in JSON_COMPATIBLE and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {content_type}", field="Content-Type")
    request.content.seek(0)
    raw = request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise TooLarge(f"request body exceeds {max_bytes} bytes")
    if not raw.strip():
        raise InvalidInput("a JSON body is required", code="malformed_json", field="body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise InvalidInput(f"malformed JSON: {e}", code="malformed_json", field="body") from None
    validate(data, schema)
    return data
