"""Controller accounts over real HTTP: login, logout, registration, users, the first admin, hostile input."""
import stat

import pytest_twisted

from tests.integration.controller.helpers import ADMIN_PASSWORD, PASSWORD


@pytest_twisted.ensureDeferred
async def test_login_gives_a_token_that_opens_me_and_logout_revokes_it(controller):
    admin = await controller.login()
    code, me = await admin.get("/api/v1/auth/me")
    assert code == 200 and me["username"] == "admin" and me["admin"] is True
    code, _ = await admin.post("/api/v1/auth/logout")
    assert code == 200
    code, body = await admin.get("/api/v1/auth/me")
    assert code == 401 and body["error"]["field"] == "token"


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_get_the_same_401_and_the_sixth_is_throttled(controller):
    anonymous = controller.client()
    first = await anonymous.post("/api/v1/auth/login", {"username": "admin", "password": "wrong-password"})
    second = await anonymous.post("/api/v1/auth/login", {"username": "ghost", "password": "wrong-password"})
    assert first[0] == second[0] == 401 and first[1] == second[1]
    for _ in range(4):
        await anonymous.post("/api/v1/auth/login", {"username": "admin", "password": "wrong-password"})
    code, body = await anonymous.post("/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert code == 429 and body["error"]["code"] == "too_many_requests"


@pytest_twisted.ensureDeferred
async def test_registration_open_creates_a_plain_user_once(controller):
    anonymous = controller.client()
    code, user = await anonymous.post("/api/v1/auth/register", {"username": "alice", "password": PASSWORD})
    assert code == 201 and user == {"username": "alice", "admin": False, "created": user["created"]}
    code, body = await anonymous.post("/api/v1/auth/register", {"username": "alice", "password": PASSWORD})
    assert code == 409 and body["error"]["field"] == "username"
    alice = await controller.login("alice", PASSWORD)
    code, body = await alice.get("/api/v1/users")
    assert code == 403


@pytest_twisted.ensureDeferred
async def test_registration_is_closed_by_default(start_controller, tmp_path):
    running = await start_controller(tmp_path / "closed")
    code, body = await running.client().post("/api/v1/auth/register", {"username": "bob", "password": PASSWORD})
    assert code == 403 and body["error"]["code"] == "forbidden"
    code, body = await running.client().post("/api/v1/auth/login", {"username": "bob", "password": PASSWORD})
    assert code == 401


@pytest_twisted.ensureDeferred
async def test_hostile_bodies_on_public_routes_get_400_naming_the_field(controller):
    anonymous = controller.client()
    cases = [
        ("/api/v1/auth/login", {"username": "admin"}, "password"),
        ("/api/v1/auth/login", {"username": 5, "password": "x"}, "username"),
        ("/api/v1/auth/login", {"username": "a" * 5000, "password": "x"}, "username"),
        ("/api/v1/auth/login", {"username": "admin", "password": "x", "extra": 1}, "extra"),
        ("/api/v1/auth/register", {"username": "Bad Name!", "password": PASSWORD}, "username"),
        ("/api/v1/auth/register", {"username": "short", "password": "1234"}, "password"),
        ("/api/v1/provision", {"provision_key": "", "name": "n"}, "provision_key"),
        ("/api/v1/provision", {"provision_key": "k", "name": "\n; rm -rf"}, "name"),
    ]
    for path, body, field in cases:
        code, answer = await anonymous.post(path, body)
        assert code == 400, (path, body, answer)
        assert answer["error"]["field"] == field, (path, body, answer)
    for raw in (b'{"username": "\\ud800", "password": "xxxxxxxxx"}', b"[" * 10000, b'{"username": 1e999999}',
                b'{"username": 123456789012345678901234567890, "password": "x"}', b"\xff\xfe"):
        code, answer = await anonymous.post("/api/v1/auth/login", data=raw,
                                            headers={"Content-Type": "application/json"})
        assert code == 400, (raw[:40], answer)
        assert answer["error"]["message"]
    code, answer = await anonymous.post("/api/v1/auth/register", data=b'{"username": "x"' + b" " * (2 << 20) + b"}",
                                        headers={"Content-Type": "application/json"})
    assert code == 413


@pytest_twisted.ensureDeferred
async def test_users_are_managed_by_admins_and_a_deleted_users_token_dies(controller):
    admin = await controller.login()
    bob = await controller.user("bob")
    code, users = await admin.get("/api/v1/users")
    assert code == 200 and [u["username"] for u in users] == ["admin", "bob"]
    code, body = await bob.post("/api/v1/users", {"username": "carol", "password": PASSWORD})
    assert code == 403
    code, node = await bob.post("/api/v1/nodes", {"name": "bobs"})
    code, body = await admin.delete("/api/v1/users/bob")
    assert code == 409 and "only owner of 1 node" in body["error"]["message"]
    assert (await bob.delete(f"/api/v1/nodes/{node['id']}"))[0] == 200
    code, body = await admin.delete("/api/v1/users/bob")
    assert code == 200
    code, body = await bob.get("/api/v1/auth/me")
    assert code == 401
    code, body = await admin.delete("/api/v1/users/bob")
    assert code == 404 and body["error"]["field"] == "username"
    code, body = await admin.delete("/api/v1/users/admin")
    assert code == 409


@pytest_twisted.ensureDeferred
async def test_the_first_admin_password_is_generated_into_a_0600_file_when_not_given(start_controller, tmp_path):
    state = tmp_path / "generated"
    running = await start_controller(state, admin_password=None)
    path = state / "initial-admin-password"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await running.login("admin", path.read_text().strip())
    code, _ = await running.client().post("/api/v1/auth/login", {"username": "admin", "password": ADMIN_PASSWORD})
    assert code == 401


@pytest_twisted.ensureDeferred
async def test_forged_garbage_and_expired_tokens_are_refused(controller):
    import jwt
    forged = jwt.encode({"sub": "admin", "uid": "x", "gen": 0, "exp": 4102444800, "jti": "j",
                         "iss": "paradrop-controller", "aud": "paradrop-cloud-api"},
                        "not-the-secret-but-long-enough-1234567", algorithm="HS256")
    for token in (forged, "garbage", "a" * 10000):
        code, body = await controller.client(token).get("/api/v1/auth/me")
        assert code == 401, token[:20]
    admin = await controller.login()
    controller.clock.offset = 25 * 3600
    code, body = await admin.get("/api/v1/auth/me")
    assert code == 401 and "expired" in body["error"]["message"]


@pytest_twisted.ensureDeferred
async def test_audit_shows_admins_everything_and_users_their_own(controller):
    admin = await controller.login()
    bob = await controller.user("bob")
    code, mine = await bob.get("/api/v1/audit")
    assert code == 200 and mine and {r["actor"] for r in mine} == {"bob"}
    code, everything = await admin.get("/api/v1/audit?limit=1000")
    actions = {(r["actor"], r["action"]) for r in everything}
    assert ("admin", "user-create") in actions and ("bob", "login") in actions
    code, page = await admin.get(f"/api/v1/audit?limit=1&before={everything[0]['id']}")
    assert code == 200 and [r["id"] for r in page] == [everything[1]["id"]]
