"""JSON Schema checks whose errors name the field a person has to fix (``services.main.ports[0]``).

Messages are built here from the failed keyword and a shortened view of the value, never from the
validator's own message, which formats the whole (possibly huge) instance. jsonschema (about 3 MB of resident
memory) is imported by the first check, not at start: an idle node validates nothing.
"""
import functools
import itertools
import re
import reprlib
from typing import TYPE_CHECKING, Optional

from pdserver.errors import InvalidInput
from pdserver.parsing import field_name

if TYPE_CHECKING:
    from jsonschema import ValidationError
    from jsonschema.validators import Draft202012Validator

MAX_ERRORS = 100  # the most useful error is among the first ones; a huge bad document has many more

_validators = {}
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxdict, _repr.maxlevel = 40, 40, 3, 3, 2


class SchemaError(InvalidInput):
    """An instance its schema refuses; ``code`` says how (unknown, missing or invalid field)."""


_DOLLAR = re.compile(r"(?<!\\)\$")


@functools.lru_cache(maxsize=512)
def _strict(pattern: str) -> "re.Pattern":
    """A schema pattern with ECMA-262's ``$`` (the end of the string): Python's also matches before a final
    newline, which would let "name\n" through ``^[a-z]+$`` into a file or command line."""
    return re.compile(_DOLLAR.sub(r"\\Z", pattern))


def _pattern(validator, pattern, instance, schema):
    from jsonschema.exceptions import ValidationError
    if validator.is_type(instance, "string") and not _strict(pattern).search(instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


_PLAIN_STRING_KEYWORDS = frozenset({"type", "pattern", "minLength", "maxLength"})


def _plain_strings(items) -> Optional[tuple]:
    """(pattern or None, min length, max length) when ``items`` asks only that much of a string, else None."""
    if not isinstance(items, dict) or items.get("type") != "string" or not items.keys() <= _PLAIN_STRING_KEYWORDS:
        return None
    pattern = items.get("pattern")
    return (_strict(pattern) if pattern is not None else None, items.get("minLength", 0),
            items.get("maxLength", float("inf")))


def _items(base):
    """The ``items`` keyword, with a quick pass for arrays of plain strings (a deployment's 10,000 node ids
    took 100 ms item by item): an item the quick test refuses goes through the full check, so its error is
    the same."""
    def items(validator, items, instance, schema):
        plain = _plain_strings(items)
        if plain is None or "prefixItems" in schema or not isinstance(instance, list):
            yield from base(validator, items, instance, schema)
            return
        pattern, shortest, longest = plain
        for index, item in enumerate(instance):
            if not (type(item) is str and shortest <= len(item) <= longest
                    and (pattern is None or pattern.search(item))):
                yield from validator.descend(instance=item, schema=items, path=index)
    return items


def _validator_for(schema: dict) -> "Draft202012Validator":
    key = id(schema)
    if key not in _validators:
        from jsonschema.validators import Draft202012Validator, extend
        Draft202012Validator.check_schema(schema)
        strict = extend(Draft202012Validator, {"pattern": _pattern,
                                               "items": _items(Draft202012Validator.VALIDATORS["items"])})
        _validators[key] = (schema, strict(schema))
    return _validators[key][1]


def show(value) -> str:
    """A short representation of any value: long strings and big collections are cut."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10 ** 30:
        return "a very large integer"
    return _repr.repr(value)


def _join(prefix: Optional[str], name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _property_name_error(error: "ValidationError") -> bool:
    return "propertyNames" in error.absolute_schema_path


def field_path(error: "ValidationError") -> Optional[str]:
    prefix = field_name(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [p for p in error.validator_value if p not in error.instance]
        return _join(prefix, missing[0]) if missing else prefix
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        extra = [p for p in error.instance if p not in error.schema.get("properties", {})]
        return _join(prefix, str(extra[0])) if extra else prefix
    if _property_name_error(error):
        return _join(prefix, str(error.instance))
    return prefix


def _either(values) -> str:
    shown = [show(v) for v in itertools.islice(values, 8)]
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


def explain(error: "ValidationError") -> str:
    """What is wrong with the value, from the keyword that refused it."""
    keyword, expected, value = error.validator, error.validator_value, show(error.instance)
    if _property_name_error(error):
        return f"is not an allowed name ({keyword} {show(expected)})"
    if keyword in ("anyOf", "oneOf"):
        types = [branch.get("type") for branch in expected]
        if all(types):
            return f"{value} is not of type {_either(t for ts in types for t in ([ts] if isinstance(ts, str) else ts))}"
        return f"{value} matches none of the allowed forms"
    simple = {
        "type": lambda: f"{value} is not of type {_either(expected if isinstance(expected, list) else [expected])}",
        "enum": lambda: f"{value} is not one of {_either(expected)}",
        "const": lambda: f"{value} is not {show(expected)}",
        "pattern": lambda: f"{value} does not match {show(expected)}",
        "minLength": lambda: "must not be empty" if expected == 1 else f"is shorter than {expected} characters",
        "maxLength": lambda: f"is longer than {expected} characters",
        "minimum": lambda: f"{value} is less than the minimum of {expected}",
        "maximum": lambda: f"{value} is greater than the maximum of {expected}",
        "exclusiveMinimum": lambda: f"{value} is less than or equal to the minimum of {expected}",
        "exclusiveMaximum": lambda: f"{value} is greater than or equal to the maximum of {expected}",
        "minItems": lambda: f"has fewer than {expected} items",
        "maxItems": lambda: f"has more than {expected} items",
        "minProperties": lambda: f"has fewer than {expected} entries",
        "maxProperties": lambda: f"has more than {expected} entries",
    }
    if keyword in simple:
        return simple[keyword]()
    return f"{value} fails {keyword} {show(expected)}"


def _priority(error: "ValidationError") -> tuple:
    """Unknown fields first, then wrong values, then missing ones; shallow before deep."""
    rank = {"additionalProperties": 0, "required": 2}.get(error.validator, 1)
    return (rank, len(error.absolute_path), list(map(str, error.absolute_path)))


def _most_specific(error: "ValidationError") -> "ValidationError":
    """For an anyOf, the error of the branch the value's type matches (a version string that breaks the
    pattern, not "is not an integer"); the anyOf itself when the type matches no branch."""
    if error.validator in ("anyOf", "oneOf"):
        matching = [e for e in error.context if not (e.validator == "type" and not e.path)]
        if matching:
            return _most_specific(min(matching, key=_priority))
    return error


def check(instance, schema: dict) -> None:
    """Raise SchemaError for the most useful of the instance's errors."""
    errors = list(itertools.islice(_validator_for(schema).iter_errors(instance), MAX_ERRORS))
    if not errors:
        return
    error = _most_specific(min(errors, key=_priority))
    field = field_path(error)
    if error.validator == "required":
        raise SchemaError(f"{field} is required", field, "missing_field")
    if error.validator == "additionalProperties":
        raise SchemaError(f"{field} is not a known field", field, "unknown_field")
    raise SchemaError(f"{field or 'body'}: {explain(error)}", field, "invalid_field")
