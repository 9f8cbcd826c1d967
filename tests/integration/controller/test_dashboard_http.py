"""The dashboard's pages as the controller serves them over real HTTP: at ``/`` and ``/web/``, with the portal's
strict policy, the portal's shared files beside its own, none of the node portal's own code, and never a route of
the API on a page's path."""
import pytest_twisted
import treq

from pdserver.api import portal


async def fetch(url, method="GET"):
    response = await treq.request(method, url)
    return response, await response.content()


@pytest_twisted.ensureDeferred
async def test_the_dashboard_is_served_with_a_strict_policy(controller):
    response, body = await fetch(controller.url + "/")
    assert response.code == 200 and body == (portal.DASHBOARD_DIR / "index.html").read_bytes()
    csp = response.headers.getRawHeaders("content-security-policy")[0]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    for name, directory in [("dashboard.js", portal.DASHBOARD_DIR), ("client.js", portal.DASHBOARD_DIR),
                            ("style.css", portal.WEB_DIR), ("dom.js", portal.WEB_DIR), ("icon.svg", portal.WEB_DIR)]:
        response, body = await fetch(f"{controller.url}/web/{name}")
        assert response.code == 200 and body == (directory / name).read_bytes(), name
        assert response.headers.getRawHeaders("x-content-type-options") == ["nosniff"]


@pytest_twisted.ensureDeferred
async def test_the_node_portals_own_code_and_hostile_paths_are_404(controller):
    for path in ("/web/app.js", "/web/api.js", "/web/status.js", "/web/dashboard/index.html", "/web/../api/portal.py",
                 "/web/..%2Fportal.py", "/web/dashboard.js%00", "/index.html"):
        response, body = await fetch(controller.url + path)
        assert response.code == 404 and b"not_found" in body, path
    response, _ = await fetch(controller.url + "/", "POST")
    assert response.code == 405


@pytest_twisted.ensureDeferred
async def test_no_route_of_the_api_is_on_a_pages_path(controller):
    response = await treq.get(controller.url + "/api/v1/openapi.json")
    paths = list((await response.json())["paths"])
    assert "/api/v1/deployments" in paths and "/ws/deployments/{deployment_id}" in paths
    for path in paths:
        assert not portal.is_portal_path(path.encode()) and not portal.is_portal_path(path.encode() + b"/"), path
