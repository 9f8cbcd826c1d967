"""Health, the router's address, the OpenAPI document of every route, and the `pdserver controller` options."""
import pytest_twisted
from click.testing import CliRunner

from pdserver.main import cli


@pytest_twisted.ensureDeferred
async def test_health_and_router_are_public(controller):
    anonymous = controller.client()
    code, health = await anonymous.get("/api/v1/health")
    assert code == 200 and health["status"] == "ok" and health["router"] is None  # the WAMP side is a double here
    code, router = await anonymous.get("/api/v1/router/")
    assert code == 200 and router == {"wamp_router": "ws://127.0.0.1:9086/ws"}
    code, body = await anonymous.get("/api/v1/nodes")
    assert code == 401 and body["error"]["code"] == "unauthorized"
    code, body = await anonymous.get("/api/v1/nodes", headers={"Authorization": "Basic YWRtaW46eA=="})
    assert code == 401 and body["error"]["field"] == "Authorization"
    code, body = await anonymous.get("/api/v1/nothing-here")
    assert code == 404 and body["error"]["field"] == "path"
    code, body = await anonymous.call("PUT", "/api/v1/health")
    assert code == 405


@pytest_twisted.ensureDeferred
async def test_hostile_path_parameters_get_json_4xx(controller):
    admin = await controller.login()
    for path in ("/api/v1/nodes/%ff%fe", "/api/v1/nodes/" + "a" * 5000, "/api/v1/nodes/x%27%3B%20DROP%20TABLE%20nodes",
                 "/api/v1/store/chutes/%00/versions", "/api/v1/groups/%E2%80%AE",
                 "/api/v1/deployments/..%2F..%2Fetc", "/api/v1/store/chutes/hello/versions/..%2F1/archive"):
        code, body = await admin.get(path)
        assert code == 404 and body["error"]["code"] == "not_found", path
    code, nodes = await admin.get("/api/v1/nodes")
    assert code == 200 and nodes == []


@pytest_twisted.ensureDeferred
async def test_the_openapi_document_lists_every_route_with_its_permission(controller):
    code, document = await controller.client().get("/api/v1/openapi.json")
    assert code == 200 and document["info"]["title"] == "ParaDrop Controller API"
    operations = {(method.upper(), path): op for path, ops in document["paths"].items() for method, op in ops.items()}
    expected = {("POST", "/api/v1/auth/login"), ("POST", "/api/v1/auth/register"), ("GET", "/api/v1/nodes"),
                ("POST", "/api/v1/nodes/claim"), ("PUT", "/api/v1/nodes/{node_id}/members/{username}"),
                ("POST", "/api/v1/provision"), ("POST", "/api/v1/provision-keys"),
                ("PUT", "/api/v1/groups/{group}/nodes/{node_id}"), ("POST", "/api/v1/store/chutes/{chute}/versions"),
                ("GET", "/api/v1/store/chutes/{chute}/versions/{version}/archive"), ("POST", "/api/v1/deployments"),
                ("GET", "/ws/deployments/{deployment_id}"), ("GET", "/api/v1/audit"), ("GET", "/api/v1/router")}
    assert expected <= set(operations)
    assert operations[("POST", "/api/v1/provision")]["security"] == []
    assert operations[("GET", "/api/v1/users")]["x-permission"] == "administer the controller"
    assert operations[("GET", "/ws/deployments/{deployment_id}")]["x-websocket"] is True
    assert "application/x-tar" in \
        operations[("POST", "/api/v1/store/chutes/{chute}/versions")]["requestBody"]["content"]


def test_the_controller_command_refuses_bad_options_before_starting(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["controller", "--help"])
    assert result.exit_code == 0
    for option in ("--state-dir", "--port", "--host", "--router", "--router-ticket-file", "--wamp-host",
                   "--wamp-port", "--db", "--db-pool-size", "--allow-registration", "--public-url",
                   "--public-wamp-url"):
        assert option in result.output
    for args, complaint in ((["--router", "http://x:1/ws"], "ws://"), (["--port", "70000"], "--port"),
                            (["--router-ticket-file", str(tmp_path / "none")], "does not exist"),
                            (["--public-url", "ws://c:1"], "--public-url"),
                            (["--public-url", "http://c:1/?x=1"], "--public-url"),
                            (["--public-url", "http://u:p@c:1"], "--public-url"),
                            (["--public-url", "http://c:1/\nX-Injected: 1"], "--public-url"),
                            (["--public-wamp-url", "http://c:1/ws"], "--public-wamp-url")):
        result = runner.invoke(cli, ["controller", "--state-dir", str(tmp_path / "s"), *args])
        assert result.exit_code == 2 and complaint in result.output, result.output
    ticket = tmp_path / "ticket"
    ticket.write_text("t\n")
    result = runner.invoke(cli, ["controller", "--state-dir", str(tmp_path / "s"), "--router-ticket-file",
                                 str(ticket)])
    assert result.exit_code == 2 and "goes with --router" in result.output
    for db in ("mysql://h/db", "postgresql://ctl:s3cret@h/"):
        result = runner.invoke(cli, ["controller", "--state-dir", str(tmp_path / "s"), "--db", db])
        assert result.exit_code == 2 and "db" in result.output and "s3cret" not in result.output, result.output


@pytest_twisted.ensureDeferred
async def test_nodes_are_given_the_public_urls_when_the_listen_addresses_are_not_what_they_reach(start_controller):
    running = await start_controller(public_url="https://paradrop.example:8443/ctl",
                                     public_wamp_url="wss://paradrop.example/ws")
    code, router = await running.client().get("/api/v1/router")
    assert code == 200 and router == {"wamp_router": "wss://paradrop.example/ws"}
    admin = await running.login()
    code, node = await admin.post("/api/v1/nodes", {"name": "far"})
    assert code == 201
    assert (node["controller"], node["wamp_router"]) == ("https://paradrop.example:8443/ctl",
                                                         "wss://paradrop.example/ws")
