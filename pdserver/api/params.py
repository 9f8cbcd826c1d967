"""Path and query parameters: parsed, bounded and typed before a handler sees them.

An integer is refused with a 400 naming the parameter when it is not a plain decimal number or falls outside
its bounds; every integer is bounded to 64 bits at most, because SQLite (and most of what an id reaches) cannot
hold more.
"""
import dataclasses
import re
from typing import Any, Dict, Optional

from pdserver import errors

INT64_MIN, INT64_MAX = -2 ** 63, 2 ** 63 - 1
_DECIMAL = re.compile(r"-?[0-9]{1,20}")


def parse_int(name: str, raw: str, minimum: int, maximum: int) -> int:
    if _DECIMAL.fullmatch(raw):
        value = int(raw)
        if minimum <= value <= maximum:
            return value
    raise errors.InvalidInput(f"{name} must be an integer from {minimum} to {maximum}", field=name,
                              code="invalid_field")


@dataclasses.dataclass(frozen=True)
class QueryParam:
    kind: type = str
    default: Any = None
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    choices: Optional[tuple] = None
    description: str = ""

    @property
    def bounds(self) -> tuple:
        """(minimum, maximum) of an int parameter: what was declared, else the 64-bit limit."""
        return (INT64_MIN if self.minimum is None else self.minimum,
                INT64_MAX if self.maximum is None else self.maximum)

    def parse(self, name: str, raw: str) -> Any:
        value = parse_int(name, raw, *self.bounds) if self.kind is int else raw
        if self.choices is not None and value not in self.choices:
            raise errors.InvalidInput(f"{name} must be one of {', '.join(map(str, self.choices))}", field=name,
                                      code="invalid_field")
        return value

    def schema(self) -> dict:
        """Its JSON Schema, for the OpenAPI document."""
        out: Dict[str, Any] = {"type": "integer" if self.kind is int else "string"}
        if self.kind is int:
            out["minimum"], out["maximum"] = self.bounds
        if self.choices is not None:
            out["enum"] = list(self.choices)
        if self.default is not None:
            out["default"] = self.default
        return out


def parse_query(args: Dict[bytes, list], params: Dict[str, QueryParam]) -> Dict[str, Any]:
    """The declared query parameters from twisted's ``request.args`` (the last of repeated values wins)."""
    out = {}
    for name, param in params.items():
        values = args.get(name.encode())
        out[name] = param.parse(name, values[-1].decode("utf-8", "replace")) if values else param.default
    return out
