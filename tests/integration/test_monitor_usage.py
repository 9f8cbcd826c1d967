"""CPU and memory of a real running chute, from its container's cgroup: in /metrics (parsed with
prometheus-client), in the chute's description and on /ws/status; the CPU it burns shows, and is compared with what
the engine's own stats report."""
import json

import docker
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, unique, wait_change

pytestmark = pytest.mark.docker

# About three quarters of a second of CPU (0.23 s per 150000 rounds here), then idle.
BURN = "i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done; sleep 100000"


def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_running_chute_shows_its_cpu_and_memory_in_metrics_describe_and_the_status_stream(node_process):
    session, url = node_process.session(), node_process.url
    name = unique("use")
    answer = session.post(f"{url}/api/v1/chutes", json={"config": {"name": name, "version": 1, "services": {
        "main": {"type": "image", "image": "paradrop/busybox:latest", "command": ["sh", "-c", BURN]}}}})
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    labels = (("chute", name), ("service", "main"))
    stats = docker.from_env().api.stats(container_of(name, "main"), stream=False, one_shot=True)

    def burnt():
        values = samples(session.get(f"{url}/metrics", timeout=10).text)
        return values[("paradrop_chute_cpu_seconds_total", labels)] >= 0.4 and values
    values = wait_until(burnt, timeout=30, interval=1, message="the chute's CPU seconds in /metrics")
    memory = values[("paradrop_chute_memory_bytes", labels)]
    assert 0 < memory < 256 * 1024 * 1024
    engine_memory = stats["memory_stats"]["usage"] - stats["memory_stats"]["stats"].get("total_inactive_file", 0)
    assert abs(memory - engine_memory) < 4 * 1024 * 1024  # what `docker stats` counts, give or take the burner

    usage = session.get(f"{url}/api/v1/chutes/{name}").json()["service_states"][0]["usage"]
    assert usage["cpu_seconds"] >= 0.4 and usage["memory_bytes"] > 0

    with connect(url.replace("http://", "ws://") + "/ws/status",
                 additional_headers={"Authorization": session.headers["Authorization"]}) as ws:
        pushed = wait_until(lambda: (lambda m: m["type"] == "usage" and m)(json.loads(ws.recv(timeout=10))),
                            timeout=20, message="a usage message")
    assert pushed["chutes"][name]["main"]["cpu_seconds"] >= 0.4

    answer = session.post(f"{url}/api/v1/chutes/{name}/stop")
    assert wait_change(session, url, answer.json()["change_id"])["state"] == "succeeded"
    values = samples(session.get(f"{url}/metrics", timeout=10).text)
    assert ("paradrop_chute_memory_bytes", labels) not in values
    assert session.get(f"{url}/api/v1/chutes/{name}").json()["service_states"][0]["usage"] is None
