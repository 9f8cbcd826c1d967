"""`pdtools chute init --template wifi`: the project validates, and its app asks the chute's own routes with its
token and shows what clients send (a hostname) as text, never as markup."""
import http.server
import importlib.util
import json
import threading

import pytest
import yaml
from click.testing import CliRunner

from pdserver.chutes.spec import build
from pdtools.main import pdtools


def run(*args):
    return CliRunner().invoke(pdtools, ["chute", *args], catch_exceptions=False)


@pytest.fixture
def project(tmp_path):
    result = run("init", str(tmp_path / "hot-spot"), "--template", "wifi", "--host-port", "18123")
    assert result.exit_code == 0, result.output
    return tmp_path / "hot-spot"


@pytest.fixture
def app(project, monkeypatch):
    spec = importlib.util.spec_from_file_location("wifi_app", project / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("PARADROP_CHUTE_NAME", "hot-spot")
    monkeypatch.setenv("PARADROP_API_TOKEN", "chute-token")
    return module


def test_the_wifi_project_is_an_access_point_with_dhcp_that_validates(project):
    assert sorted(p.name for p in project.iterdir()) == ["app.py", "paradrop.yaml"]
    spec = build(yaml.safe_load((project / "paradrop.yaml").read_text()))
    [interface] = spec.services[0].interfaces
    assert (interface.name, interface.type, interface.dhcp.start, interface.dhcp.limit) == ("wlan0", "wifi-ap", 100, 50)
    assert interface.wireless_options()["ssid"] == "hot-spot"
    assert [(b.external, b.internal) for b in spec.services[0].port_bindings] == [(18123, 8000)]
    assert run("validate", str(project)).exit_code == 0


@pytest.mark.parametrize("options", [("--template", "wifi", "--image", "node"),
                                     ("--template", "wifi", "--type", "image"), ("--template", "radio",)])
def test_what_the_wifi_template_cannot_be_is_refused(tmp_path, options):
    result = CliRunner().invoke(pdtools, ["chute", "init", str(tmp_path / "x"), *options])
    assert result.exit_code == 2 and not (tmp_path / "x").exists(), result.output


class Api(http.server.BaseHTTPRequestHandler):
    """The Edge API's two routes as the chute's token sees them; another chute's answers 403."""
    seen = []

    def do_GET(self):
        Api.seen.append((self.path, self.headers.get("Authorization")))
        if "/chutes/hot-spot/" not in self.path:
            body, code = {"error": {"code": "forbidden", "message": "not your chute"}}, 403
        elif self.path.endswith("/leases"):
            body, code = [{"ip_addr": "10.128.1.100", "mac_addr": "02:00:00:00:00:01",
                           "hostname": "<script>alert(1)</script>", "expires": 1}], 200
        else:
            body, code = [{"mac": "02:00:00:00:00:01", "connected_time": "5"}], 200
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api(monkeypatch):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("PARADROP_API_URL", f"http://127.0.0.1:{server.server_address[1]}/api/v1")
    Api.seen = []
    yield Api
    server.shutdown()
    server.server_close()


def test_the_page_lists_leases_and_stations_from_the_chutes_own_routes_with_its_token(app, api):
    found = app.clients()
    assert found["errors"] == {}
    assert sorted(api.seen) == [("/api/v1/chutes/hot-spot/networks/wlan0/leases", "Bearer chute-token"),
                                ("/api/v1/chutes/hot-spot/networks/wlan0/stations", "Bearer chute-token")]
    page = app.page(found)
    assert "10.128.1.100" in page and "02:00:00:00:00:01" in page
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_an_api_refusal_shows_on_the_page_with_its_message(app, api, monkeypatch):
    monkeypatch.setenv("PARADROP_CHUTE_NAME", "other")
    found = app.clients()
    assert found["errors"] == {"leases": "403 not your chute", "stations": "403 not your chute"}
    assert "leases: 403 not your chute" in app.page(found)
