"""Chutes on the real Docker engine through the Edge API: install, networking, environment, limits,
updates (good and broken), stop/start, delete, and coming back after a daemon restart."""
import json

import docker
import psutil
import pytest
import requests

from tests.conftest import free_port, wait_until
from pdserver.chutes.naming import node_key
from tests.integration.chute_helpers import (act, container_of, http_text, install, objects_labelled, submit_tar,
                                             unique, wait_change, web_chute, write_project)

pytestmark = pytest.mark.docker


def logs_of(session, url, chute):
    return session.get(f"{url}/api/v1/chutes/{chute}/logs?tail=200", timeout=10).json()["lines"]


def test_light_chute_serves_http_on_its_published_port_and_update_serves_the_new_content(
        node_process, tmp_path):
    session, url = node_process.session(), node_process.url
    name, port = unique("web"), free_port()
    description, files = web_chute(name, 1, port, "version one")
    change = install(session, url, write_project(tmp_path / "v1", description, files))
    assert change["state"] == "succeeded", change
    messages = [m["message"] for m in session.get(f"{url}/api/v1/changes/{change['id']}").json()["messages"]]
    key = node_key((node_process.state_dir / "node-id").read_text().strip())
    assert any(f"building image paradrop-chute/{key}-{name}-main:1-" in m and "(step 2/" in m for m in messages)
    assert any("starting service main" in m for m in messages)
    assert http_text(port) == "version one"

    listed = session.get(f"{url}/api/v1/chutes/").json()
    assert [(c["name"], c["version"], c["state"]) for c in listed] == [(name, "1", "running")]
    detail = session.get(f"{url}/api/v1/chutes/{name}").json()
    assert detail["service_states"][0]["running"] and detail["service_states"][0]["address"]

    description, files = web_chute(name, 2, port, "version two")
    change = install(session, url, write_project(tmp_path / "v2", description, files), name=name)
    assert change["state"] == "succeeded", change
    assert http_text(port) == "version two"
    assert session.get(f"{url}/api/v1/chutes/{name}").json()["version"] == "2"
    containers = objects_labelled(name)["containers"]
    assert len(containers) == 1 and containers[0].endswith(f"-{change['id']}")


@pytest.mark.parametrize("broken", ["exits", "never-answers"])
def test_a_broken_update_fails_and_the_old_version_keeps_serving(node_process, tmp_path, broken):
    session, url = node_process.session(), node_process.url
    name, port = unique("upd"), free_port()
    description, files = web_chute(name, 1, port, "still here")
    assert install(session, url, write_project(tmp_path / "v1", description, files))["state"] == "succeeded"
    command = "sh -c 'echo dying; exit 3'" if broken == "exits" else "sleep 3600"
    description, files = web_chute(name, 2, port, "never served", command=command)
    node_process.stop()
    node_process.start(PARADROP_READY_TIMEOUT="3")
    session = node_process.session()
    change = install(session, url, write_project(tmp_path / "v2", description, files), name=name)
    assert change["state"] == "failed"
    reason = change["result"]["message"]
    assert ("exited with code 3" in reason and "dying" in reason) if broken == "exits" else "no HTTP answer" in reason
    assert http_text(port) == "still here"
    chute = session.get(f"{url}/api/v1/chutes/{name}").json()
    assert chute["version"] == "1" and chute["state"] == "running"
    assert len(objects_labelled(name)["containers"]) == 1


def test_two_services_reach_each_other_by_name_and_see_env_data_and_limits(node_process, tmp_path, engine):
    session, url = node_process.session(), node_process.url
    name = unique("pair")
    description = {
        "name": name, "version": 1, "environment": {"GREETING": "hello"},
        "services": {
            "web": {"type": "light", "image": "busybox",
                    "command": "sh -c 'mkdir -p /tmp/www && echo from-web > /tmp/www/index.html && "
                               "exec httpd -f -p 8000 -h /tmp/www'",
                    "requests": {"cpu-fraction": 0.5, "memory": "64M"}},
            "client": {"type": "light", "image": "busybox",
                       "command": "sh -c 'env | grep -E \"^(PARADROP_|GREETING)\" | grep -v TOKEN | sort; "
                                  "echo persisted-$PARADROP_CHUTE_VERSION >> /data/marks; cat /data/marks; "
                                  "while true; do wget -qO- http://web:8000/ && break; sleep 0.2; done; "
                                  "exec sleep 3600'"},
        }}
    change = install(session, url, write_project(tmp_path / "p", description))
    assert change["state"] == "succeeded", change

    def client_said(text):
        return lambda: any(text in line["message"] for line in logs_of(session, url, name))
    wait_until(client_said("from-web"), timeout=20, message="the client to reach the web service")
    lines = [line["message"] for line in logs_of(session, url, name) if line["service"] == "client"]
    assert f"PARADROP_CHUTE_NAME={name}" in lines
    assert "PARADROP_CHUTE_VERSION=1" in lines and "PARADROP_DATA_DIR=/data" in lines and "GREETING=hello" in lines
    assert any(line.startswith("PARADROP_API_URL=http://") for line in lines)
    assert "persisted-1" in lines

    web = engine.containers.get(container_of(name, "web"))
    assert web.name.endswith(f"-{name}-web-{change['id']}")
    assert web.attrs["HostConfig"]["NanoCpus"] == 500_000_000
    assert web.attrs["HostConfig"]["Memory"] == 64 * 1024 * 1024
    assert web.labels["org.paradrop.chute"] == name and web.labels["org.paradrop.version"] == "1"
    assert web.attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"

    description["version"] = 2
    change = install(session, url, write_project(tmp_path / "p2", description), name=name)
    assert change["state"] == "succeeded", change
    wait_until(client_said("persisted-2"), timeout=20, message="the updated client")
    marks = [line["message"] for line in logs_of(session, url, name) if line["service"] == "client"]
    assert "persisted-1" in marks, "the /data volume must survive an update"


def listening_addresses(process) -> set:
    return {c.laddr.ip for c in psutil.Process(process.proc.pid).net_connections("tcp")
            if c.status == psutil.CONN_LISTEN}


def test_stop_start_restart_and_delete_leave_nothing_behind(node_process, tmp_path):
    session, url = node_process.session(), node_process.url
    name, port = unique("life"), free_port()
    description, files = web_chute(name, 1, port, "alive")
    assert listening_addresses(node_process) == {"127.0.0.1"}
    assert install(session, url, write_project(tmp_path / "p", description, files))["state"] == "succeeded"
    assert len(listening_addresses(node_process)) == 2, "the API listens on the chute network's gateway"
    assert act(session, url, name, "stop")["state"] == "succeeded"
    assert session.get(f"{url}/api/v1/chutes/{name}").json()["state"] == "stopped"
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/", timeout=2)
    assert act(session, url, name, "start")["state"] == "succeeded"
    assert http_text(port) == "alive"
    assert act(session, url, name, "restart")["state"] == "succeeded"
    assert http_text(port) == "alive"
    assert act(session, url, name, "delete")["state"] == "succeeded"
    assert objects_labelled(name) == {"containers": [], "networks": [], "volumes": [], "images": []}
    assert session.get(f"{url}/api/v1/chutes/{name}").status_code == 404
    assert listening_addresses(node_process) == {"127.0.0.1"}, "the gateway listener went with the chute"


def test_bad_specs_and_archives_get_4xx_naming_the_field(node_process, tmp_path):
    session, url = node_process.session(), node_process.url
    description, files = web_chute("bad-one", 1, 8001, "x")
    description["services"]["main"]["requests"]["port-bindings"][0]["external"] = "eighty"
    response = submit_tar(session, url, write_project(tmp_path / "a", description, files))
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "services.main.requests.port-bindings[0].external"

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README").write_text("no yaml here")
    response = submit_tar(session, url, tmp_path / "empty")
    assert response.status_code == 400 and response.json()["error"]["field"] == "paradrop.yaml"

    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for member_name, data in (("paradrop.yaml", b"name: x\n"), ("../../escape", b"x")):
            info = tarfile.TarInfo(member_name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    response = session.post(f"{url}/api/v1/chutes", data=buf.getvalue(), headers={"Content-Type": "application/x-tar"})
    assert response.status_code == 400 and "outside" in response.json()["error"]["message"]

    response = session.post(f"{url}/api/v1/chutes", data=b"garbage" * 100, headers={"Content-Type": "application/x-tar"})
    assert response.status_code == 400 and response.json()["error"]["field"] == "archive"

    response = session.post(f"{url}/api/v1/chutes", json={"config": {"name": "x", "version": 1, "services": {}}})
    assert response.status_code == 400 and response.json()["error"]["field"].startswith("config.services")

    node_process.stop()
    node_process.start(PARADROP_MAX_UPLOAD_BYTES="2000000", PARADROP_MAX_BODY_BYTES="1024")
    session = node_process.session()
    big = tmp_path / "big"
    write_project(big, web_chute("big-one", 1, 8001, "x")[0], {"blob.bin": "x" * 3_000_000})
    response = submit_tar(session, url, big)
    assert response.status_code == 413


def test_an_image_chute_from_json_and_the_api_refuses_duplicates_and_old_versions(node_process):
    session, url = node_process.session(), node_process.url
    name = unique("img")
    config = {"name": name, "version": 3, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": ["sleep", "3600"]}}}
    response = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert response.status_code == 202
    assert wait_change(session, url, response.json()["change_id"])["state"] == "succeeded"
    response = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert response.status_code == 409 and response.json()["error"]["field"] == "name"
    response = session.put(f"{url}/api/v1/chutes/{name}", json={"config": {**config, "version": 2}})
    assert response.status_code == 409 and response.json()["error"]["field"] == "version"
    response = session.post(f"{url}/api/v1/chutes", json={"config": {**config, "name": unique("nope"), "services": {
        "main": {"type": "image", "image": "registry.invalid/none:1"}}}})
    change = wait_change(session, url, response.json()["change_id"])
    assert change["state"] == "failed" and "could not be reached" in change["result"]["message"]


def test_a_daemon_restart_brings_chutes_back_and_removes_orphans(node_process, tmp_path, engine):
    session, url = node_process.session(), node_process.url
    name, port = unique("back"), free_port()
    description, files = web_chute(name, 1, port, "back again")
    assert install(session, url, write_project(tmp_path / "p", description, files))["state"] == "succeeded"
    node_id = (node_process.state_dir / "node-id").read_text().strip()
    node_process.stop()
    engine.containers.get(container_of(name, "main")).remove(force=True)
    orphan = engine.containers.create("paradrop/busybox:latest", "sleep 3600", name=unique("orphan"),
                                      labels={"org.paradrop.chute": "ghost", "org.paradrop.node": node_id})
    node_process.start()
    session = node_process.session()
    reconcile = next(c for c in session.get(f"{url}/api/v1/changes").json() if c["type"] == "reconcile")
    assert wait_change(session, url, reconcile["id"])["state"] == "succeeded"
    assert http_text(port) == "back again"
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(orphan.id)


def test_a_chutes_token_reaches_only_its_own_chute_and_context_routes(node_process, engine):
    session, url = node_process.session(), node_process.url
    names = [unique("tok"), unique("tok")]
    for name in names:
        config = {"name": name, "version": 1, "services": {"main": {
            "type": "image", "image": "paradrop/busybox:latest", "command": ["sleep", "3600"]}}}
        response = session.post(f"{url}/api/v1/chutes", json={"config": config})
        assert wait_change(session, url, response.json()["change_id"])["state"] == "succeeded"
    container = next(c for c in engine.containers.list(filters={"label": f"org.paradrop.chute={names[0]}"}))
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    chute = requests.Session()
    chute.headers["Authorization"] = f"Bearer {env['PARADROP_API_TOKEN']}"
    assert chute.get(f"{url}/api/v1/chutes/{names[0]}").status_code == 200
    assert chute.get(f"{url}/api/v1/chutes/{names[0]}/logs").status_code == 200
    assert chute.get(f"{url}/api/v1/info/hardware").status_code == 200
    assert chute.get(f"{url}/api/v1/chutes/{names[1]}").status_code == 403
    assert chute.get(f"{url}/api/v1/changes").status_code == 403
    assert chute.post(f"{url}/api/v1/chutes/{names[0]}/stop").status_code == 403
    assert chute.get(f"{url}/api/v1/audit").status_code == 403
    assert act(session, url, names[0], "delete")["state"] == "succeeded"
    assert chute.get(f"{url}/api/v1/chutes/{names[0]}").status_code == 401


def test_a_chute_reaches_the_edge_api_with_its_own_environment_and_logs_stream_over_websocket(node_process):
    session, url = node_process.session(), node_process.url
    name = unique("api")
    config = {"name": name, "version": 1, "services": {"main": {
        "type": "light", "image": "busybox",
        "command": "sh -c 'while true; do wget -qO- --header \"Authorization: Bearer $PARADROP_API_TOKEN\" "
                   "$PARADROP_API_URL/chutes/$PARADROP_CHUTE_NAME && echo; sleep 0.5; done'"}}}
    response = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert wait_change(session, url, response.json()["change_id"])["state"] == "succeeded"

    def answered():
        return any(f'"name": "{name}"' in line["message"] for line in logs_of(session, url, name))
    wait_until(answered, timeout=20, message="the chute to read its own record from the API")

    from websockets.sync.client import connect
    ws_url = url.replace("http://", "ws://") + f"/ws/chute_logs/{name}"
    with connect(ws_url, additional_headers={"Authorization": session.headers["Authorization"]}) as ws:
        frames = []
        while not frames or name not in frames[-1]["message"]:
            assert len(frames) < 50, frames
            frames.append(json.loads(ws.recv(timeout=20)))
    assert all(f["service"] == "main" and isinstance(f["timestamp"], float) for f in frames)
    assert not any("401" in f["message"] for f in frames), "the chute's token works while it starts"


def test_a_failing_docker_health_check_fails_the_install_and_leaves_nothing(node_process):
    session, url = node_process.session(), node_process.url
    name = unique("hc")
    config = {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": "paradrop/busybox:latest", "command": ["sleep", "3600"],
        "healthcheck": {"test": "exit 1", "interval": 0.2, "timeout": 1, "retries": 1}}}}
    response = session.post(f"{url}/api/v1/chutes", json={"config": config})
    change = wait_change(session, url, response.json()["change_id"])
    assert change["state"] == "failed" and "unhealthy" in change["result"]["message"], change
    assert objects_labelled(name) == {"containers": [], "networks": [], "volumes": [], "images": []}
    assert session.get(f"{url}/api/v1/chutes/{name}").status_code == 404


def test_host_networks_the_node_cannot_give_are_refused_naming_the_interface(node_process):
    session, url = node_process.session(), node_process.url
    for interface, field, words in (
            ({"type": "wifi-ap", "wireless": {"ssid": "Hello", "key": "secret-psk"}}, "wlan0", "radio"),
            ({"type": "vlan", "vlan-id": 42}, "wlan0", "LAN")):
        config = {"name": unique("wifi"), "version": 1, "services": {"main": {
            "type": "image", "image": "paradrop/busybox:latest", "interfaces": {"wlan0": interface}}}}
        response = session.post(f"{url}/api/v1/chutes", json={"config": config})
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert error["field"] == f"services.main.interfaces.{field}" and words in error["message"], error


def test_a_normal_chute_is_built_from_its_own_dockerfile_and_a_failing_build_names_its_step(node_process, tmp_path):
    session, url = node_process.session(), node_process.url
    name, port = unique("norm"), free_port()
    description = {"name": name, "version": 1, "web": {"service": "main", "port": 8000},
                   "services": {"main": {"type": "normal",
                                         "requests": {"port-bindings": [{"external": port, "internal": 8000}]}}}}
    files = {"Dockerfile": "FROM paradrop/busybox:latest\nCOPY www /www\nCMD [\"httpd\", \"-f\", \"-p\", \"8000\", \"-h\", \"/www\"]\n",
             "www/index.html": "built from a Dockerfile"}
    assert install(session, url, write_project(tmp_path / "ok", description, files))["state"] == "succeeded"
    assert http_text(port) == "built from a Dockerfile"

    broken = {**description, "name": unique("norm")}
    files["Dockerfile"] = "FROM paradrop/busybox:latest\nRUN echo compiling && exit 3\n"
    change = install(session, url, write_project(tmp_path / "bad", broken, files))
    assert change["state"] == "failed"
    assert "RUN echo compiling && exit 3" in change["result"]["message"]
    assert objects_labelled(broken["name"]) == {"containers": [], "networks": [], "volumes": [], "images": []}
