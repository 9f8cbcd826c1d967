"""The whole route surface: authentication everywhere but the public four, one error model, body limits."""
import re

import pytest_twisted
import treq

from tests.integration.http import get_json, post_json, put_json

PUBLIC = {("post", "/api/v1/auth/local"), ("post", "/api/v1/auth/cloud"), ("get", "/api/v1/health"),
          ("get", "/api/v1/openapi.json")}


def concrete(path):
    return re.sub(r"\{([^}]+)\}", lambda m: "1" if m.group(1).endswith("_id") else "sample", path)


@pytest_twisted.ensureDeferred
async def test_every_route_but_the_public_four_answers_401_without_a_token(node):
    code, document = await get_json(node.url + "/api/v1/openapi.json")
    assert code == 200
    operations = [(method, path, op) for path, ops in document["paths"].items() for method, op in ops.items()]
    public = {(m, p) for m, p, op in operations if op.get("security") == []}
    assert public == PUBLIC
    assert len(operations) >= 15
    for method, path, _ in operations:
        if (method, path) in PUBLIC:
            continue
        for url in (node.url + concrete(path), node.url + concrete(path) + "/"):
            response = await treq.request(method.upper(), url, json={} if method in ("post", "put") else None)
            body = await treq.json_content(response)
            assert response.code == 401, (method, url, body)
            assert body["error"]["code"] == "unauthorized"


@pytest_twisted.ensureDeferred
async def test_public_routes_answer_without_a_token(node):
    assert (await get_json(node.url + "/api/v1/health"))[0] == 200
    assert (await get_json(node.url + "/api/v1/health/"))[0] == 200
    code, body, _ = await post_json(node.url + "/api/v1/auth/cloud", {"token": "abc"})
    assert code == 401 and body["error"]["code"] == "not_provisioned"


@pytest_twisted.ensureDeferred
async def test_malformed_bodies_get_a_4xx_naming_the_field(node):
    token = await node.login()
    url = node.url + "/api/v1/auth/local"
    cases = [
        ({"username": "paradrop"}, "missing_field", "password"),
        ({"username": 5, "password": "x"}, "invalid_field", "username"),
        ({"username": "a", "password": "b", "extra": 1}, "unknown_field", "extra"),
        (["not", "an", "object"], "invalid_field", None),
    ]
    for body, code_name, field in cases:
        code, answer, _ = await post_json(url, body)
        assert code == 400, body
        assert answer["error"]["code"] == code_name, answer
        assert answer["error"]["field"] == field, answer
    response = await treq.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    answer = await treq.json_content(response)
    assert response.code == 400 and answer["error"]["code"] == "malformed_json" and answer["error"]["field"] == "body"
    response = await treq.post(url, data=b"<xml/>", headers={"Content-Type": "application/xml"})
    assert response.code == 415
    assert (await treq.json_content(response))["error"]["field"] == "Content-Type"
    code, answer = await put_json(node.url + "/api/v1/config/hostconfig", {"wan": {"proto": "carrier-pigeon"}}, token)
    assert code == 400 and answer["error"]["field"] == "wan.proto"
    code, answer = await put_json(node.url + "/api/v1/config/hostconfig",
                                  {"wifi": [{"id": "radio0", "channel": "six"}]}, token)
    assert code == 400 and answer["error"]["field"] == "wifi[0].channel"
    code, answer = await get_json(node.url + "/api/v1/changes?limit=many", token)
    assert code == 400 and answer["error"]["field"] == "limit"
    code, answer = await get_json(node.url + "/api/v1/changes?state=dancing", token)
    assert code == 400 and answer["error"]["field"] == "state"


@pytest_twisted.ensureDeferred
async def test_oversized_bodies_get_413_and_are_not_buffered(start_node):
    node = await start_node(max_body_bytes=4096)
    big = b'{"username": "' + b"a" * 10000 + b'", "password": "x"}'
    response = await treq.post(node.url + "/api/v1/auth/local", data=big,
                               headers={"Content-Type": "application/json"})
    assert response.code == 413
    assert (await treq.json_content(response))["error"]["code"] == "payload_too_large"


@pytest_twisted.ensureDeferred
async def test_unknown_paths_and_methods_use_the_error_model_and_no_cors_wildcard(node):
    response = await treq.get(node.url + "/api/v1/no-such-thing")
    assert response.code == 404
    assert (await treq.json_content(response))["error"]["code"] == "not_found"
    response = await treq.delete(node.url + "/api/v1/health", headers={"Origin": "http://evil.example"})
    assert response.code == 405
    assert (await treq.json_content(response))["error"]["code"] == "method_not_allowed"
    response = await treq.get(node.url + "/api/v1/health", headers={"Origin": "http://evil.example"})
    assert not response.headers.hasHeader("access-control-allow-origin")


@pytest_twisted.ensureDeferred
async def test_settings_and_info_do_not_leak_secrets(start_node):
    node = await start_node()
    token = await node.login()
    code, settings = await get_json(node.url + "/api/v1/config/settings", token)
    assert code == 200
    assert "admin_password" not in settings
    assert "admin-password-for-tests" not in str(settings)
    for kind in ("hardware", "software", "features"):
        code, info = await get_json(f"{node.url}/api/v1/info/{kind}", token)
        assert code == 200
        assert "admin-password-for-tests" not in str(info) and "PATH" not in str(info)
    code, pdid = await get_json(node.url + "/api/v1/config/pdid", token)
    assert code == 200 and pdid == {"pdid": None}
