"""Run-time checks of chute changes (the API's checks again, since the queue may have changed things) and
their cleanup: an install or update that fails removes the project it brought, never the installed one's."""
import json
import types

import pytest
import pytest_twisted
from twisted.internet import reactor

from pdserver.changes.model import Change, ChangeFailed, ChangeState
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.policy import NodePolicy
from pdserver.chutes.store import RUNNING, ChuteRecord, ChuteStore
from pdserver.execution.chute_handlers import ChuteHandlers
from pdserver.storage import open_database


def description(name="hello", version=2):
    return {"name": name, "version": version,
            "services": {"main": {"type": "image", "image": "paradrop/busybox:latest"}}}


@pytest.fixture
def node(tmp_path):
    conn = open_database(tmp_path / "node.db")
    store = ChuteStore(conn)
    installed = tmp_path / "sources" / "installed"
    installed.mkdir(parents=True)
    store.save(ChuteRecord("hello", "2", RUNNING, description(), 1, str(installed), 0.0, 0.0, "paradrop-hello-data"))
    handlers = ChuteHandlers(None, store, None, reactor, ChuteNames("n1"), lambda: NodePolicy.from_config({}, 8080),
                             tmp_path / "sources", list)
    yield types.SimpleNamespace(handlers=handlers, installed=installed, sources=tmp_path / "sources")
    conn.close()


def upload(node, name="upload"):
    path = node.sources / name
    path.mkdir()
    (path / "paradrop.yaml").write_text(json.dumps(description()))
    return path


def context(type_, target, **params):
    return types.SimpleNamespace(change=Change(7, type_, target, "u", ChangeState.RUNNING, params, 0.0))


@pytest_twisted.inlineCallbacks
def test_an_install_of_a_name_taken_meanwhile_fails_with_the_apis_answer_and_removes_its_upload(node):
    source = upload(node)
    with pytest.raises(ChangeFailed) as info:
        yield node.handlers.install(context("install", "hello", description=description(), source_dir=str(source)))
    assert info.value.details == {"field": "name", "code": "chute_exists"}
    assert "already installed" in info.value.message
    assert not source.exists() and node.installed.exists()


@pytest.mark.parametrize("version, target, code", [(2, "hello", "version_not_newer"), (1, "hello", "version_not_newer"),
                                                   (3, "gone", "not_found")])
@pytest_twisted.inlineCallbacks
def test_an_update_that_is_not_newer_or_of_no_installed_chute_removes_its_upload(node, version, target, code):
    source = upload(node)
    params = dict(description=description(target, version), source_dir=str(source))
    with pytest.raises(ChangeFailed) as info:
        yield node.handlers.update(context("update", target, **params))
    assert info.value.details["code"] == code
    assert not source.exists() and node.installed.exists()


@pytest_twisted.inlineCallbacks
def test_a_failing_update_that_reuses_the_installed_project_keeps_it(node):
    params = dict(description=description(version=1), source_dir=str(node.installed), same_version_ok=True)
    with pytest.raises(ChangeFailed):
        yield node.handlers.update(context("update", "hello", **params))
    assert node.installed.exists()


@pytest_twisted.inlineCallbacks
def test_an_invalid_description_fails_naming_its_field_and_removes_the_upload(node):
    source = upload(node)
    bad = {**description("new"), "version": "!"}
    with pytest.raises(ChangeFailed) as info:
        yield node.handlers.install(context("install", "new", description=bad, source_dir=str(source)))
    assert info.value.details["field"] == "version"
    assert not source.exists()


@pytest.mark.parametrize("state", [ChangeState.CANCELLED, ChangeState.INTERRUPTED, ChangeState.FAILED])
@pytest_twisted.inlineCallbacks
def test_an_install_that_ends_without_running_leaves_no_upload(node, state):
    source = upload(node)
    params = {"description": description("new"), "source_dir": str(source)}
    yield node.handlers.finished(Change(7, "install", "new", "u", state, params, 0.0))
    assert not source.exists()


@pytest_twisted.inlineCallbacks
def test_a_succeeded_change_or_the_installed_project_is_left_alone(node):
    source = upload(node)
    params = {"description": description(), "source_dir": str(source)}
    assert node.handlers.finished(Change(7, "update", "hello", "u", ChangeState.SUCCEEDED, params, 0.0)) is None
    installed = {"description": description(), "source_dir": str(node.installed)}
    yield node.handlers.finished(Change(8, "update", "hello", "u", ChangeState.CANCELLED, installed, 0.0))
    assert source.exists() and node.installed.exists()
