"""The dashboard's static files: its own and the portal's shared ones in one flat namespace, a clash refused, and
pages with no inline script or style (the strict policy would block them)."""
import pytest

from pdserver.api import portal

FILES = portal.load_dashboard()


def test_the_dashboard_serves_its_own_files_and_the_shared_ones_only():
    own = {p.name for p in portal.DASHBOARD_DIR.iterdir()}
    assert {name[5:].decode() for name in FILES if name != b"/"} == own | set(portal.DASHBOARD_SHARED)
    assert FILES[b"/"] is FILES[b"/web/index.html"]
    assert FILES[b"/"].body == (portal.DASHBOARD_DIR / "index.html").read_bytes()
    assert FILES[b"/web/style.css"].body == (portal.WEB_DIR / "style.css").read_bytes()


def test_the_node_portal_is_unchanged_by_the_dashboard():
    files = portal.load()
    assert files[b"/"].body == (portal.WEB_DIR / "index.html").read_bytes()
    assert not any(name.startswith(b"/web/dashboard") for name in files)


@pytest.mark.parametrize("shared", [("index.html",), ("../api.js",), ("dashboard",), ("notes.txt",)])
def test_a_shared_name_that_clashes_or_is_not_a_servable_file_is_refused(shared):
    with pytest.raises(ValueError):
        portal.load(portal.DASHBOARD_DIR, shared)


def test_no_inline_script_or_style_and_nothing_from_elsewhere():
    for path in portal.DASHBOARD_DIR.iterdir():
        text = path.read_text()
        assert "<style" not in text and " style=" not in text and "<script>" not in text, path
        assert "http://" not in text and "https://" not in text, path
        assert "innerHTML" not in text, path
