"""Schema errors name the field a person has to fix."""
import pytest

from pdserver.api.body import validate
from pdserver.errors import InvalidInput

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
    "name": {"type": "string"},
    "services": {"type": "object", "additionalProperties": {"type": "object", "properties": {
        "ports": {"type": "array", "items": {"type": "object", "properties": {"external": {"type": "integer"}}}}}}}}}


@pytest.mark.parametrize("body, code, field", [
    ({}, "missing_field", "name"),
    ({"name": 3}, "invalid_field", "name"),
    ({"name": "x", "surprise": 1}, "unknown_field", "surprise"),
    ({"name": "x", "services": {"main": {"ports": [{"external": "80"}]}}}, "invalid_field",
     "services.main.ports[0].external"),
])
def test_errors_name_the_field(body, code, field):
    with pytest.raises(InvalidInput) as info:
        validate(body, SCHEMA)
    assert info.value.code == code
    assert info.value.field == field
    assert field in info.value.message
