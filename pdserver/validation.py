"""JSON Schema checks whose errors name the field a person has to fix (``services.main.ports[0]``)."""
from typing import Optional

import jsonschema
from jsonschema.validators import Draft202012Validator

from pdserver.errors import InvalidInput

_validators = {}


class SchemaError(InvalidInput):
    """An instance its schema refuses; ``code`` says how (unknown, missing or invalid field)."""


def _validator_for(schema: dict) -> Draft202012Validator:
    key = id(schema)
    if key not in _validators:
        Draft202012Validator.check_schema(schema)
        _validators[key] = (schema, Draft202012Validator(schema))
    return _validators[key][1]


def field_path(error: jsonschema.ValidationError) -> Optional[str]:
    parts = []
    for item in error.absolute_path:
        parts.append(f"[{item}]" if isinstance(item, int) else ("." if parts else "") + str(item))
    prefix = "".join(parts)
    name = None
    if error.validator == "required":
        name = error.message.split("'")[1] if "'" in error.message else None
    elif error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = [p for p in error.instance if p not in error.schema.get("properties", {})]
        name = extra[0] if extra else None
    if name:
        return f"{prefix}.{name}" if prefix else name
    return prefix or None


def _priority(error: jsonschema.ValidationError) -> tuple:
    """Unknown fields first, then wrong values, then missing ones; shallow before deep."""
    rank = {"additionalProperties": 0, "required": 2}.get(error.validator, 1)
    return (rank, len(error.absolute_path), list(map(str, error.absolute_path)))


def check(instance, schema: dict) -> None:
    """Raise SchemaError for the most useful of the instance's errors."""
    errors = list(_validator_for(schema).iter_errors(instance))
    if not errors:
        return
    error = min(errors, key=_priority)
    field = field_path(error)
    if error.validator == "required":
        raise SchemaError(f"{field} is required", field, "missing_field")
    if error.validator == "additionalProperties":
        raise SchemaError(f"{field} is not a known field", field, "unknown_field")
    raise SchemaError(f"{field or 'body'}: {error.message}", field, "invalid_field")
