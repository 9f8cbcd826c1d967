"""Request bodies: schema errors name the field a person has to fix; hostile JSON is a 400 naming it."""
import io

import pytest

from pdserver.api.body import media_type, parse_json, raw_json, validate
from pdserver.errors import InvalidInput, TooLarge, UnsupportedMediaType

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


def read_json(request, schema, limit):
    return parse_json(raw_json(request, limit), schema)


class Request:
    """What raw_json uses of a twisted.web request."""

    def __init__(self, body: bytes, content_type="application/json"):
        self.content = io.BytesIO(body)
        self._content_type = content_type

    def getHeader(self, name):
        return self._content_type if name.lower() == "content-type" else None


LOGIN = {"type": "object", "properties": {"username": {"type": "string"}, "password": {"type": "string"}}}


@pytest.mark.parametrize("header, media", [("Application/JSON; charset=utf-8", "application/json"),
                                           (b"application/x-tar", "application/x-tar"), (None, "")])
def test_media_type_of_a_header(header, media):
    assert media_type(header) == media


class TestHostileBodies:
    @pytest.mark.parametrize("raw, field", [
        (b"[" * 100_000 + b"]" * 100_000, "body"),
        (b'{"username": "\\ud800", "password": "x"}', "username"),
        (b'{"username": "a", "password": 1180591620717411303424}', "password"),
        (b'{"username": "a", "password": NaN}', "password"),
        (b'{"username": "\xed\xa0\x80"}', "body"),
    ])
    def test_hostile_json_is_a_400_naming_the_field(self, raw, field):
        with pytest.raises(InvalidInput) as info:
            read_json(Request(raw), LOGIN, 1 << 20)
        assert info.value.status == 400 and info.value.field == field

    def test_a_body_past_the_limit_is_413_and_not_json_415(self):
        with pytest.raises(TooLarge):
            read_json(Request(b'{"a": "' + b"x" * 2000 + b'"}'), LOGIN, 1000)
        with pytest.raises(UnsupportedMediaType):
            read_json(Request(b"<x/>", "application/xml"), LOGIN, 1000)


def test_validation_messages_show_a_shortened_value_never_the_whole_instance():
    schema = {"type": "object", "properties": {"tags": {"type": "array", "items": {"type": "integer"}},
                                               "name": {"type": "string", "pattern": "^[a-z]+$"}}}
    with pytest.raises(InvalidInput) as info:
        validate({"name": "X" * 5_000_000}, schema)
    assert info.value.field == "name" and len(info.value.message) < 200
    with pytest.raises(InvalidInput) as info:
        validate({"tags": ["x" * 1_000_000]}, schema)
    assert info.value.field == "tags[0]" and len(info.value.message) < 200
