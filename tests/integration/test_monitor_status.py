"""A chute container stopped behind the daemon's back, on the real engine and daemon: its status says so within
2 s because the engine's event told the node (its cached state was dropped), /ws/status pushes it, and the audit
log has the death. The node's telemetry, read over HTTP and pushed on /ws/status."""
import json
import subprocess
import time

import psutil
import pytest
import requests
from websockets.sync.client import connect

from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, unique, wait_change

BUSYBOX = "paradrop/busybox:latest"

pytestmark = pytest.mark.docker


def main_service(session, url, chute):
    answer = session.get(f"{url}/api/v1/chutes/{chute}")
    assert answer.status_code == 200, answer.text
    return answer.json()["service_states"][0]


def test_a_chute_container_stopped_by_hand_shows_in_status_within_2_s_and_in_the_audit_log(node_process):
    session, url = node_process.session(), node_process.url
    name = unique("dies")
    config = {"name": name, "version": 1, "services": {"main": {
        "type": "image", "image": BUSYBOX, "command": "sleep 100000"}}}
    answer = session.post(f"{url}/api/v1/chutes", json={"config": config})
    assert answer.status_code == 202, answer.text
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    wait_until(lambda: main_service(session, url, name)["running"], timeout=10, message="the chute running")
    for _ in range(3):  # read while nothing changes: the state is kept, and only an event can drop it
        assert main_service(session, url, name)["running"]

    ws_url = url.replace("http://", "ws://") + "/ws/status"
    with connect(ws_url, additional_headers={"Authorization": session.headers["Authorization"]}) as ws:
        first = json.loads(ws.recv(timeout=10))
        assert first["type"] == "telemetry" and first["memory"]["total"] == psutil.virtual_memory().total
        subprocess.run(["docker", "stop", "-t", "1", container_of(name, "main")], check=True, capture_output=True)
        stopped = time.monotonic()
        pushed = []
        while not {"chute_died", "die"} <= {m.get("action", m["type"]) for m in pushed}:
            pushed.append(json.loads(ws.recv(timeout=2)))
        print(f"pushed on /ws/status {time.monotonic() - stopped:.3f} s after `docker stop` returned")
    died = [m for m in pushed if m["type"] == "container" and m["action"] == "die"]
    assert died and died[0]["chute"] == name and died[0]["service"] == "main" and died[0]["exit_code"] in (137, 143)
    assert [m for m in pushed if m["type"] == "chute_died"][0]["container"] == container_of(name, "main")
    shown = wait_until(lambda: (lambda s: not s["running"] and s)(main_service(session, url, name)), timeout=2,
                       message="the stopped container in the chute's status")
    print(f"seen in status {time.monotonic() - stopped:.3f} s after `docker stop` returned")
    assert shown["status"] == "exited" and shown["unexpected_exit"]["count"] == 1
    assert shown["unexpected_exit"]["exit_code"] == shown["exit_code"] in (137, 143)  # TERM, or KILL after 1 s

    audit = session.get(f"{url}/api/v1/audit").json()
    deaths = [r for r in audit if r["action"] == "chute_died"]
    assert len(deaths) == 1 and deaths[0]["target"] == name and deaths[0]["result"] == "failed"
    assert deaths[0]["detail"]["container"] == container_of(name, "main")


def test_telemetry_reads_the_node_and_needs_a_token(node_process):
    url = node_process.url
    assert requests.get(f"{url}/api/v1/info/telemetry", timeout=10).status_code == 401
    answer = node_process.session().get(f"{url}/api/v1/info/telemetry", timeout=10)
    assert answer.status_code == 200, answer.text
    sample = answer.json()
    assert sample["memory"]["total"] == psutil.virtual_memory().total
    assert sample["cpu"]["count"] == psutil.cpu_count() and 0.0 <= sample["cpu"]["percent"] <= 100.0
    assert sample["disk"]["total"] == psutil.disk_usage("/").total
    assert "lo" in sample["interfaces"] and sample["interfaces"]["lo"]["bytes_recv"] > 0
    assert abs(sample["uptime"] - (time.time() - psutil.boot_time())) < 60
