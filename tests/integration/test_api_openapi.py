"""The OpenAPI document (issue 6 item 10): valid OpenAPI 3.1, and it names bodies, bounds and error answers
the way the node really gives them."""
import jsonschema
import pytest_twisted
import treq
from openapi_spec_validator import validate

from tests.integration.http import get_json

TAR_TYPES = {"application/x-tar", "application/tar", "application/gzip", "application/x-gzip",
             "application/x-compressed-tar", "application/octet-stream"}


async def document(node):
    code, doc = await get_json(node.url + "/api/v1/openapi.json")
    assert code == 200
    return doc


def operations(doc):
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


@pytest_twisted.ensureDeferred
async def test_the_document_is_valid_openapi_3_1(node):
    doc = await document(node)
    assert doc["openapi"] == "3.1.0"
    validate(doc)


@pytest_twisted.ensureDeferred
async def test_install_and_update_name_the_tar_upload_and_the_json_config_form(node):
    doc = await document(node)
    for method, path in [("post", "/api/v1/chutes"), ("put", "/api/v1/chutes/{chute}")]:
        body = doc["paths"][path][method]["requestBody"]
        assert body["required"] is True
        assert set(body["content"]) == TAR_TYPES | {"application/json"}
        assert body["content"]["application/json"]["schema"]["required"] == ["config"]
        assert str(256 * 1024 * 1024) in body["description"]
    restart = doc["paths"]["/api/v1/chutes/{chute}/restart"]["post"]["requestBody"]
    assert restart["required"] is False
    assert restart["content"]["application/json"]["schema"]["required"] == ["environment"]
    login = doc["paths"]["/api/v1/auth/local"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert login["required"] == ["username", "password"]


@pytest_twisted.ensureDeferred
async def test_query_choices_and_path_types_are_documented(node):
    doc = await document(node)
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/v1/changes"]["get"]["parameters"]}
    assert "succeeded" in params["state"]["enum"] and params["state"]["type"] == "string"
    assert (params["limit"]["minimum"], params["limit"]["maximum"], params["limit"]["default"]) == (1, 1000, 100)
    [change_id] = doc["paths"]["/api/v1/changes/{change_id}"]["get"]["parameters"]
    assert change_id["in"] == "path" and change_id["schema"]["type"] == "integer"


@pytest_twisted.ensureDeferred
async def test_each_operation_names_its_error_answers(node):
    doc = await document(node)
    for method, path, op in operations(doc):
        responses = op["responses"]
        expected = {"405", "429"}
        if op.get("security") != []:
            expected |= {"401", "403"}
        if "requestBody" in op:
            expected |= {"400", "413", "415"}
        if "{" in path:
            expected |= {"404"}
        if op.get("x-websocket"):
            expected |= {"426"}
        assert expected <= set(responses), (method, path, sorted(responses))
        for status in expected:
            assert responses[status]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"}
        assert "Allow" in responses["405"]["headers"] and "Retry-After" in responses["429"]["headers"]
    assert "401" in doc["paths"]["/api/v1/auth/local"]["post"]["responses"]


@pytest_twisted.ensureDeferred
async def test_405_answers_carry_allow_with_the_documented_methods_and_match_the_error_schema(node):
    doc = await document(node)
    error_schema = doc["components"]["schemas"]["Error"]
    for path, ops in doc["paths"].items():
        concrete = path.replace("{change_id}", "1").replace("{chute}", "hello").replace("{username}", "bob")
        allowed = {m.upper() for m in ops} | ({"HEAD"} if "get" in ops else set())
        for url in (node.url + concrete, node.url + concrete + "/"):
            response = await treq.request("PATCH", url)
            body = await treq.json_content(response)
            assert response.code == 405, (url, body)
            assert set(response.headers.getRawHeaders("allow")[0].split(", ")) == allowed, url
            jsonschema.validate(body, error_schema)
    response = await treq.request("OPTIONS", node.url + "/api/v1/health")
    assert response.code == 405 and response.headers.getRawHeaders("allow") == ["GET, HEAD"]
    await response.content()
