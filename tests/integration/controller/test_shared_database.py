"""Two controller backends on one database (what several backends behind one router do): a token from one works on
the other, and racing requests through both are decided by the database: one wins, the other gets the answer a
second request gets (409, 404), never a 500."""
import hashlib
import os

import pytest_twisted
import yaml
from twisted.internet import defer

from pdserver.controller.store import ARCHIVE_CHUNK
from tests.integration.controller.helpers import PASSWORD
from tests.integration.controller.test_store import TAR, project_tar


async def _two_backends(start_controller, database_url, tmp_path):
    first_state = tmp_path / "first"
    shared = database_url(first_state) or f"sqlite:///{first_state / 'controller.db'}"
    first = await start_controller(first_state, db=shared, allow_registration=True)
    second = await start_controller(tmp_path / "second", db=shared, allow_registration=True)
    return first, second


def _both(*requests):
    return defer.gatherResults([defer.ensureDeferred(r) for r in requests])


@pytest_twisted.ensureDeferred
async def test_two_backends_share_sessions_and_the_database_decides_every_race(start_controller, database_url,
                                                                              tmp_path):
    first, second = await _two_backends(start_controller, database_url, tmp_path)
    admin = await first.login()
    code, me = await second.client(admin.token).get("/api/v1/auth/me")
    assert code == 200 and me["username"] == "admin"

    answers = await _both(*(backend.client().post("/api/v1/auth/register", {"username": "bob", "password": PASSWORD})
                            for backend in (first, second)))
    assert sorted(code for code, _ in answers) == [201, 409], answers
    assert [(body["error"]["code"], body["error"]["field"]) for code, body in answers if code == 409] == \
        [("conflict", "username")]

    alice, carol = await first.user("alice"), await second.user("carol")
    _, key = await alice.post("/api/v1/provision-keys", {"name": "one", "max_nodes": 1, "ttl": 3600})
    provisions = await _both(*(backend.client().post("/api/v1/provision", {"provision_key": key["key"], "name": n})
                               for backend, n in ((first, "a"), (second, "b"))))
    assert sorted(code for code, _ in provisions) == [201, 401]
    token = next(body for code, body in provisions if code == 201)["claim_token"]
    claims = await _both(alice.post("/api/v1/nodes/claim", {"claim_token": token}),
                         second.client(carol.token).post("/api/v1/nodes/claim", {"claim_token": token}))
    assert sorted(code for code, _ in claims) == [200, 404], claims
    node_id = next(body for code, body in claims if code == 200)["id"]

    code, nodes = await second.client(admin.token).get("/api/v1/users")
    assert code == 200 and {u["username"] for u in nodes} == {"admin", "bob", "alice", "carol"}
    owner = alice if claims[0][0] == 200 else carol
    code, members = await second.client(owner.token).get(f"/api/v1/nodes/{node_id}/members")
    assert code == 200 and len(members) == 1 and members[0]["role"] == "owner"


@pytest_twisted.ensureDeferred
async def test_an_archive_uploaded_through_one_backend_is_served_whole_by_the_other(start_controller, database_url,
                                                                                   tmp_path):
    first, second = await _two_backends(start_controller, database_url, tmp_path)
    alice = await first.user("alice")
    assert (await alice.post("/api/v1/store/chutes", {"name": "hello"}))[0] == 201
    payload = os.urandom(ARCHIVE_CHUNK * 2 + 12345)  # three chunks, incompressible
    archive = project_tar({"paradrop.yaml": yaml.safe_dump({"name": "hello", "version": "1", "services": {
        "main": {"type": "image", "image": "paradrop/busybox"}}}), "data.bin": payload})
    code, version = await alice.post("/api/v1/store/chutes/hello/versions", data=archive, headers=TAR)
    assert code == 201, version
    code, got = await second.client(alice.token).get("/api/v1/store/chutes/hello/versions/1/archive")
    assert code == 200 and hashlib.sha256(got).hexdigest() == version["sha256"] == hashlib.sha256(archive).hexdigest()
    for backend in (first, second):  # nothing of it on either backend's disk
        kept = [p for p in (backend.built.settings.state_dir / "store").rglob("*") if p.is_file()]
        assert kept == []


@pytest_twisted.ensureDeferred
async def test_backends_starting_together_on_an_empty_database_make_one_admin_and_one_token_secret(
        start_controller, database_url, tmp_path):
    states = [tmp_path / f"backend-{i}" for i in range(4)]
    shared = database_url(states[0]) or f"sqlite:///{tmp_path / 'shared.db'}"
    backends = await defer.gatherResults([defer.ensureDeferred(start_controller(state, db=shared, admin_password=None))
                                          for state in states])
    written = [b.built.settings.initial_password_path for b in backends
               if b.built.settings.initial_password_path.exists()]
    assert len(written) == 1  # the one that made the admin; the others took theirs back
    password = written[0].read_text().strip()
    tokens = []
    for backend in backends:
        code, answer = await backend.client().post("/api/v1/auth/login", {"username": "admin", "password": password})
        assert code == 200, answer
        tokens.append(answer["token"])
    code, me = await backends[3].client(tokens[0]).get("/api/v1/auth/me")  # one signing secret for all
    assert code == 200 and me["username"] == "admin"
