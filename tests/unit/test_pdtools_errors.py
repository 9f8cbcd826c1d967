"""How refusals from a node become the one-line messages pdtools prints."""
import pytest

from pdtools.client import _decode_frame
from pdtools.errors import ApiError, BadResponse, ConnectionFailed


def test_an_api_error_body_gives_code_message_and_field():
    body = b'{"error": {"code": "weak_password", "message": "the new password is too short", "field": "new_password"}}'
    error = ApiError.from_response(400, body, {})
    assert (error.status, error.code, error.field) == (400, "weak_password", "new_password")
    assert str(error) == "the new password is too short (field: new_password)"


def test_a_throttled_answer_keeps_retry_after_for_scripts():
    body = b'{"error": {"code": "too_many_requests", "message": "too many failed logins", "field": null}}'
    error = ApiError.from_response(429, body, {"Retry-After": "30"})
    assert (str(error), error.retry_after) == ("too many failed logins", "30")


def test_a_body_that_is_not_the_error_shape_still_reads_well():
    error = ApiError.from_response(502, b"<html>Bad Gateway</html>", {})
    assert (error.code, str(error)) == ("http_502", "HTTP 502 Bad Gateway")
    assert str(ApiError.from_response(404, b'{"error": "no such route"}', {})) == "HTTP 404 Not Found"


def test_a_connection_failure_names_the_url():
    assert str(ConnectionFailed("http://10.0.0.9:8080/api/v1/health", "Connection refused")) == (
        "cannot reach http://10.0.0.9:8080/api/v1/health: Connection refused"
    )


def test_a_message_that_starts_with_its_field_is_not_followed_by_it_again():
    body = (b'{"error": {"code": "invalid_chute", "field": "services.main.memory", '
            b'"message": "services.main.memory: \'lots\' is not valid"}}')
    assert str(ApiError.from_response(400, body, {})) == "services.main.memory: 'lots' is not valid"
    body = b'{"error": {"code": "missing_field", "field": "web.port", "message": "web.port is required"}}'
    assert str(ApiError.from_response(400, body, {})) == "web.port is required (field: web.port)"


@pytest.mark.parametrize("frame, arrays, problem", [
    (b"{nope", False, "is not JSON"), (b"[1]", False, "not a JSON object"),
    (b'{"node_id": "n1"}', True, "not a JSON array of objects"), (b'[{"node_id": "n1"}, 5]', True, "array of objects"),
])
def test_a_stream_message_of_the_wrong_shape_is_a_clear_error(frame, arrays, problem):
    with pytest.raises(BadResponse) as caught:
        _decode_frame("ws://controller/ws/deployments/1", frame, arrays)
    assert problem in str(caught.value) and "ws://controller/ws/deployments/1" in str(caught.value)


def test_stream_messages_are_read_one_object_at_a_time():
    assert _decode_frame("ws://x", b'{"state": "running"}') == [{"state": "running"}]
    assert _decode_frame("ws://x", b'[{"state": "a"}, {"state": "b"}]', arrays=True) == [{"state": "a"}, {"state": "b"}]
