"""Request bodies: size-limited, JSON only, validated by JSON Schema with errors naming the field."""
import json
from typing import Optional

import jsonschema
from jsonschema.validators import Draft202012Validator

from pdserver.api.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

_validators = {}

# curl -d and old ParaDrop scripts send JSON labelled as a form or plain text; accept those as JSON.
JSON_COMPATIBLE = {"application/json", "application/x-www-form-urlencoded", "text/plain", "text/json"}


def validator_for(schema: dict) -> Draft202012Validator:
    key = id(schema)
    if key not in _validators:
        Draft202012Validator.check_schema(schema)
        _validators[key] = Draft202012Validator(schema)
    return _validators[key]


def field_path(error: jsonschema.ValidationError) -> Optional[str]:
    """``services.main.ports[0]`` style path of the offending field."""
    parts = []
    for item in error.absolute_path:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    prefix = "".join(parts)
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else None
        return f"{prefix}.{missing}" if prefix and missing else (missing or prefix or None)
    if error.validator == "additionalProperties":
        extra = [p for p in error.instance if p not in error.schema.get("properties", {})] \
            if isinstance(error.instance, dict) else []
        name = extra[0] if extra else None
        return f"{prefix}.{name}" if prefix and name else (name or prefix or None)
    return prefix or None


def _priority(error: jsonschema.ValidationError) -> tuple:
    """Unknown fields first, then wrong values, then missing ones; shallow before deep."""
    rank = {"additionalProperties": 0, "required": 2}.get(error.validator, 1)
    return (rank, len(error.absolute_path), list(map(str, error.absolute_path)))


def _describe(error: jsonschema.ValidationError, field: Optional[str]) -> tuple:
    if error.validator == "required":
        return "missing_field", f"{field} is required"
    if error.validator == "additionalProperties":
        return "unknown_field", f"{field} is not a known field"
    where = field or "body"
    return "invalid_field", f"{where}: {error.message}"


def validate(instance, schema: dict) -> None:
    """Raise BadRequest naming the first (most relevant) invalid field."""
    errors = list(validator_for(schema).iter_errors(instance))
    if errors:
        error = min(errors, key=_priority)
        field = field_path(error)
        code, message = _describe(error, field)
        raise BadRequest(message, field=field, code=code)


def read_json(request, schema: dict, max_bytes: int):
    """The validated JSON body of a request."""
    if getattr(request, "body_too_large", False):
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes", code="payload_too_large")
    content_type = (request.getHeader("content-type") or "application/json").split(";")[0].strip().lower()
    if content_type not in JSON_COMPATIBLE and not content_type.endswith("+json"):
        raise UnsupportedMediaType(f"expected application/json, got {content_type}", field="Content-Type")
    request.content.seek(0)
    raw = request.content.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"request body exceeds {max_bytes} bytes")
    if not raw.strip():
        raise BadRequest("a JSON body is required", code="malformed_json", field="body")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as e:
        raise BadRequest(f"malformed JSON: {e}", code="malformed_json", field="body") from None
    validate(data, schema)
    return data
