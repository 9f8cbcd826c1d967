"""A chute container stopped behind the daemon's back, on the real engine and daemon: its status says so within
2 s because the engine's event told the node (its cached state was dropped), and the audit log has the death."""
import subprocess
import time

import pytest

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

    subprocess.run(["docker", "stop", "-t", "1", container_of(name, "main")], check=True, capture_output=True)
    stopped = time.monotonic()
    shown = wait_until(lambda: (lambda s: not s["running"] and s)(main_service(session, url, name)), timeout=2,
                       message="the stopped container in the chute's status")
    print(f"seen in status {time.monotonic() - stopped:.3f} s after `docker stop` returned")
    assert shown["status"] == "exited" and shown["unexpected_exit"]["count"] == 1
    assert shown["unexpected_exit"]["exit_code"] == shown["exit_code"] in (137, 143)  # TERM, or KILL after 1 s

    audit = session.get(f"{url}/api/v1/audit").json()
    deaths = [r for r in audit if r["action"] == "chute_died"]
    assert len(deaths) == 1 and deaths[0]["target"] == name and deaths[0]["result"] == "failed"
    assert deaths[0]["detail"]["container"] == container_of(name, "main")
