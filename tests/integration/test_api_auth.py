"""Login, tokens, roles, password change and the audit log, over real HTTP to an in-process node."""
import base64
import collections

import pytest_twisted
import treq
from twisted.internet import defer, threads

from tests.conftest import ADMIN_PASSWORD
from tests.integration.http import get_json, post_json, wait_for, wait_for_change


@pytest_twisted.ensureDeferred
async def test_login_with_the_right_password_returns_a_token_that_opens_routes(node):
    code, body, _ = await post_json(node.url + "/api/v1/auth/local",
                                    {"username": "paradrop", "password": ADMIN_PASSWORD})
    assert code == 200
    assert body["username"] == "paradrop" and body["role"] == "owner"
    code, info = await get_json(node.url + "/api/v1/info/software", body["token"])
    assert code == 200 and info["pdserver_version"]


@pytest_twisted.ensureDeferred
async def test_wrong_password_and_unknown_user_get_the_same_401(node):
    code1, body1, _ = await post_json(node.url + "/api/v1/auth/local", {"username": "paradrop", "password": "nope"})
    code2, body2, _ = await post_json(node.url + "/api/v1/auth/local", {"username": "ghost", "password": "nope"})
    assert code1 == code2 == 401
    assert body1 == body2


@pytest_twisted.ensureDeferred
async def test_sixth_failed_login_in_a_minute_is_throttled_even_with_the_right_password(node):
    for _ in range(5):
        code, _, _ = await post_json(node.url + "/api/v1/auth/local", {"username": "paradrop", "password": "bad"})
        assert code == 401
    code, body, response = await post_json(node.url + "/api/v1/auth/local",
                                           {"username": "paradrop", "password": ADMIN_PASSWORD})
    assert code == 429
    assert body["error"]["code"] == "too_many_requests"
    assert int(response.headers.getRawHeaders("retry-after")[0]) > 0


@pytest_twisted.ensureDeferred
async def test_http_basic_is_accepted_and_a_wrong_one_is_not(node):
    good = base64.b64encode(f"paradrop:{ADMIN_PASSWORD}".encode()).decode()
    bad = base64.b64encode(b"paradrop:wrong-password").decode()
    code, _ = await get_json(node.url + "/api/v1/info/features", headers={"Authorization": f"Basic {good}"})
    assert code == 200
    code, _ = await get_json(node.url + "/api/v1/info/features", headers={"Authorization": f"Basic {bad}"})
    assert code == 401


@pytest_twisted.ensureDeferred
async def test_forged_and_garbage_tokens_are_refused(node):
    import jwt
    forged = jwt.encode({"sub": "paradrop", "gen": 0, "exp": 4102444800, "iss": "paradrop-node",
                         "aud": "paradrop-edge-api"}, "not-the-node-secret-but-long-enough-1234", algorithm="HS256")
    for token in (forged, "garbage", ""):
        code, body = await get_json(node.url + "/api/v1/changes", headers={"Authorization": f"Bearer {token}"})
        assert code == 401, token
        assert body["error"]["code"] == "unauthorized"


@pytest_twisted.ensureDeferred
async def test_roles_gate_routes_through_one_permission_table(node):
    admin = await node.login()
    for name, role in (("guest1", "guest"), ("user1", "user"), ("admin1", "admin")):
        code, body, _ = await post_json(node.url + "/api/v1/users",
                                        {"username": name, "password": "password-" + name, "role": role}, admin)
        assert code == 201, body
    guest = await node.login("guest1", "password-guest1")
    user = await node.login("user1", "password-user1")
    other_admin = await node.login("admin1", "password-admin1")

    assert (await get_json(node.url + "/api/v1/info/hardware", guest))[0] == 200
    code, body = await get_json(node.url + "/api/v1/changes", guest)
    assert code == 403 and body["error"]["code"] == "forbidden"
    assert (await get_json(node.url + "/api/v1/changes", user))[0] == 200
    assert (await get_json(node.url + "/api/v1/audit", user))[0] == 403
    assert (await get_json(node.url + "/api/v1/audit", other_admin))[0] == 200
    code, body, _ = await post_json(node.url + "/api/v1/users",
                                    {"username": "boss", "password": "password-boss", "role": "owner"}, other_admin)
    assert code == 400 and body["error"]["field"] == "role"


@pytest_twisted.ensureDeferred
async def test_password_change_needs_the_old_password_and_revokes_old_tokens(node):
    token = await node.login()
    url = node.url + "/api/v1/password/change"
    code, body, _ = await post_json(url, {"username": "paradrop", "old_password": "wrong-old-one",
                                          "new_password": "brand-new-password"}, token)
    assert code == 401 and body["error"]["field"] == "old_password"
    code, body, _ = await post_json(url, {"username": "paradrop", "old_password": ADMIN_PASSWORD,
                                          "new_password": "short"}, token)
    assert code == 400 and body["error"]["field"] == "new_password"
    code, body, _ = await post_json(url, {"username": "paradrop", "old_password": ADMIN_PASSWORD,
                                          "new_password": "brand-new-password"}, token)
    assert code == 200, body
    assert (await get_json(node.url + "/api/v1/info/features", token))[0] == 401
    code, _, _ = await post_json(node.url + "/api/v1/auth/local",
                                 {"username": "paradrop", "password": ADMIN_PASSWORD})
    assert code == 401
    new_token = await node.login(password="brand-new-password")
    assert (await get_json(node.url + "/api/v1/info/features", new_token))[0] == 200


@pytest_twisted.ensureDeferred
async def test_a_user_cannot_change_someone_elses_password(node):
    admin = await node.login()
    await post_json(node.url + "/api/v1/users", {"username": "u2", "password": "password-u2", "role": "user"}, admin)
    user = await node.login("u2", "password-u2")
    code, body, _ = await post_json(node.url + "/api/v1/password/change",
                                    {"username": "paradrop", "old_password": ADMIN_PASSWORD,
                                     "new_password": "hijacked-password"}, user)
    assert code == 403 and body["error"]["field"] == "username"
    assert (await node.login()) is not None


@pytest_twisted.ensureDeferred
async def test_audit_log_records_logins_failures_and_changes(node):
    await post_json(node.url + "/api/v1/auth/local", {"username": "paradrop", "password": "wrong-password"})
    token = await node.login()
    response = await treq.put(node.url + "/api/v1/config/hostconfig", json={"telemetry": {"enabled": False}},
                              headers={"Authorization": f"Bearer {token}"})
    assert response.code == 202
    change_id = (await treq.json_content(response))["change_id"]
    await wait_for_change(node.url, change_id, token)
    code, records = await get_json(node.url + "/api/v1/audit", token)
    assert code == 200
    seen = {(r["actor"], r["action"], r["result"]) for r in records}
    assert ("paradrop", "login", "denied") in seen
    assert ("paradrop", "login", "succeeded") in seen
    assert ("paradrop", "change:hostconfig", "succeeded") in seen
    assert all("password" not in str(r["detail"] or "") or r["action"] == "user-create" for r in records)



async def create_user(node, admin, username, password, role):
    code, body, _ = await post_json(node.url + "/api/v1/users",
                                    {"username": username, "password": password, "role": role}, admin)
    assert code == 201, body


async def delete_user(node, admin, username):
    response = await treq.delete(f"{node.url}/api/v1/users/{username}", headers={"Authorization": f"Bearer {admin}"})
    assert response.code == 200, await response.text()


def basic(username, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


async def concurrently(requests):
    """Run coroutines at once; their results in order."""
    return await defer.gatherResults([defer.ensureDeferred(r) for r in requests])


@pytest_twisted.ensureDeferred
async def test_a_deleted_users_token_and_basic_credentials_stay_dead_when_the_name_comes_back(node):
    admin = await node.login()
    await create_user(node, admin, "alice", "alice-password", "guest")
    old = await node.login("alice", "alice-password")
    assert (await get_json(node.url + "/api/v1/info/features", headers=basic("alice", "alice-password")))[0] == 200
    await delete_user(node, admin, "alice")
    await create_user(node, admin, "alice", "other-password", "admin")
    code, body = await get_json(node.url + "/api/v1/audit", old)
    assert code == 401 and body["error"]["code"] == "unauthorized"
    assert (await get_json(node.url + "/api/v1/info/features", old))[0] == 401
    assert (await get_json(node.url + "/api/v1/info/features", headers=basic("alice", "alice-password")))[0] == 401
    new = await node.login("alice", "other-password")
    assert (await get_json(node.url + "/api/v1/audit", new))[0] == 200


@pytest_twisted.ensureDeferred
async def test_a_deleted_users_token_stays_dead_across_a_restart(start_node):
    first = await start_node()
    admin = await first.login()
    await create_user(first, admin, "alice", "alice-password", "guest")
    old = await first.login("alice", "alice-password")
    await delete_user(first, admin, "alice")
    await first.node.service.stopService()
    first.node.conn.close()

    restarted = await start_node()
    admin = await restarted.login()
    await create_user(restarted, admin, "alice", "alice-password", "admin")
    assert (await get_json(restarted.url + "/api/v1/audit", old))[0] == 401
    assert (await get_json(restarted.url + "/api/v1/audit", await restarted.login("alice", "alice-password")))[0] == 200


@pytest_twisted.ensureDeferred
async def test_of_200_concurrent_logins_five_reach_the_password_check_and_a_later_right_password_is_refused(node):
    admin = await node.login()
    await create_user(node, admin, "victim", "victim-password", "user")
    url = node.url + "/api/v1/auth/local"
    answers = await concurrently(post_json(url, {"username": "victim", "password": f"guess-{i}"}) for i in range(200))
    codes = collections.Counter(code for code, _, _ in answers)
    assert codes == {401: 5, 429: 195}
    for code, body, response in answers:
        if code == 429:
            assert body["error"]["code"] == "too_many_requests"
            assert int(response.headers.getRawHeaders("retry-after")[0]) > 0
    burst = await concurrently(post_json(url, {"username": "victim", "password": "victim-password" if i == 7 else "x"})
                               for i in range(20))
    assert [code for code, _, _ in burst] == [429] * 20
    code, records = await get_json(node.url + "/api/v1/audit?actor=victim&action=login&limit=1000", admin)
    assert code == 200
    assert collections.Counter(r["result"] for r in records) == {"denied": 5, "throttled": 1}


@pytest_twisted.ensureDeferred
async def test_http_basic_meets_the_same_throttle_under_concurrency(node):
    url = node.url + "/api/v1/info/features"
    answers = await concurrently(get_json(url, headers=basic("paradrop", f"guess-{i}")) for i in range(200))
    assert collections.Counter(code for code, _ in answers) == {401: 5, 429: 195}
    assert (await get_json(url, headers=basic("paradrop", ADMIN_PASSWORD)))[0] == 429


@pytest_twisted.ensureDeferred
async def test_one_address_cannot_spray_usernames_without_end(node):
    admin = await node.login()
    url = node.url + "/api/v1/auth/local"
    codes = collections.Counter()
    for batch in range(3):  # batches small enough for the hashing queue: only the throttle refuses here
        answers = await concurrently(post_json(url, {"username": f"name{batch}-{i}", "password": "guess"})
                                     for i in range(10))
        codes.update(code for code, _, _ in answers)
    assert codes == {401: 20, 429: 10}
    code, _, _ = await post_json(url, {"username": "paradrop", "password": ADMIN_PASSWORD})
    assert code == 429
    assert (await get_json(node.url + "/api/v1/info/features", admin))[0] == 200


@pytest_twisted.ensureDeferred
async def test_a_burst_of_logins_neither_delays_other_thread_work_nor_queues_without_end(start_node):
    node = await start_node(login_failures_per_minute=100)
    url = node.url + "/api/v1/auth/local"
    answered = []

    async def login():
        code, body, response = await post_json(url, {"username": "paradrop", "password": ADMIN_PASSWORD})
        answered.append(code)
        return code, response

    burst = defer.ensureDeferred(concurrently(login() for _ in range(50)))
    await wait_for(lambda: 200 in answered)
    logged_in_before = answered.count(200)
    await threads.deferToThread(lambda: None)
    assert answered.count(200) - logged_in_before < 10
    results = await burst
    assert {code for code, _ in results} == {200, 503}
    assert all(response.headers.getRawHeaders("retry-after") for code, response in results if code == 503)


@pytest_twisted.ensureDeferred
async def test_strings_utf8_cannot_hold_are_a_400_naming_the_field(node):
    body = b'{"username": "paradrop", "password": "bad\\udc80password"}'
    response = await treq.post(node.url + "/api/v1/auth/local", data=body,
                               headers={"Content-Type": "application/json"})
    assert response.code == 400
    assert (await treq.json_content(response))["error"]["field"] == "password"
