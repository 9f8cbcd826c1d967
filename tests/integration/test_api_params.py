"""Integers in paths and query strings: anything that is not a bounded 64-bit integer is a 400 naming the
parameter (issue 6 item 3; SQLite raised OverflowError, a 500, for ids past 64 bits)."""
import pytest_twisted
import treq

from tests.integration.http import get_json

HUGE = ["9223372036854775808", "99999999999999999999999", "1" * 5000, "-1", "0", "abc", "1e3", "1_000", "%201"]


async def answer(method, url, token):
    response = await treq.request(method, url, headers={"Authorization": f"Bearer {token}"})
    return response.code, await treq.json_content(response)


@pytest_twisted.ensureDeferred
async def test_path_ids_outside_64_bits_or_not_integers_are_400_naming_the_id(node):
    token = await node.login()
    for value in HUGE:
        for method, path in [("GET", f"/api/v1/changes/{value}"), ("GET", f"/api/v1/changes/{value}/"),
                             ("POST", f"/api/v1/changes/{value}/cancel"), ("GET", f"/ws/changes/{value}/stream")]:
            code, body = await answer(method, node.url + path, token)
            assert code == 400, (path, body)
            assert body["error"]["field"] == "change_id", body
            assert "from 1 to 9223372036854775807" in body["error"]["message"]
    code, body = await get_json(node.url + "/api/v1/changes/9223372036854775807", token)
    assert code == 404 and body["error"]["field"] == "change_id"


@pytest_twisted.ensureDeferred
async def test_query_integers_are_bounded_and_named(node):
    token = await node.login()
    cases = [("/api/v1/changes?limit={}", "limit"), ("/api/v1/changes?before={}", "before"),
             ("/api/v1/audit?before={}", "before"), ("/api/v1/audit?limit={}", "limit"),
             ("/api/v1/chutes/hello/logs?tail={}", "tail")]
    for template, field in cases:
        for value in HUGE + ["", "10001" if field != "before" else "9223372036854775808"]:
            code, body = await get_json(node.url + template.format(value), token)
            assert code == 400, (template, value, body)
            assert body["error"]["field"] == field and body["error"]["code"] == "invalid_field", body
    code, changes = await get_json(node.url + "/api/v1/changes?before=9223372036854775807&limit=1000", token)
    assert code == 200 and isinstance(changes, list)


@pytest_twisted.ensureDeferred
async def test_every_integer_parameter_is_documented_with_64_bit_bounds(node):
    code, document = await get_json(node.url + "/api/v1/openapi.json")
    assert code == 200
    integers = [(path, p) for path, ops in document["paths"].items() for op in ops.values()
                for p in op.get("parameters", []) if p["schema"]["type"] == "integer"]
    assert {p["name"] for _, p in integers} >= {"change_id", "limit", "before", "tail"}
    for path, param in integers:
        assert -2 ** 63 <= param["schema"]["minimum"] <= param["schema"]["maximum"] <= 2 ** 63 - 1, (path, param)
