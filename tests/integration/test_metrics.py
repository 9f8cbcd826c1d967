"""Prometheus /metrics on a real node: authenticated, parseable, with node series and a series per chute service."""
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.chute_helpers import unique, wait_change


def samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_metrics_carry_the_node_and_each_chute_service_and_need_a_token(node_process):
    url = node_process.url + "/metrics"
    assert requests.get(url, timeout=10).status_code == 401
    session = node_process.session()
    name = unique("met")
    answer = session.post(f"{node_process.url}/api/v1/chutes", json={"config": {"name": name, "version": 1,
        "services": {"main": {"type": "image", "image": "paradrop/busybox:latest", "command": "sleep 100000"}}}})
    assert wait_change(session, node_process.url, answer.json()["change_id"])["state"] == "succeeded"

    answer = session.get(url, timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    values = samples(answer.text)
    labels = (("chute", name), ("service", "main"))
    assert values[("paradrop_service_running", labels)] == 1
    assert values[("paradrop_service_restarts_total", labels)] == 0
    assert values[("paradrop_service_memory_limit_bytes", labels)] == 256 * 1024 * 1024
    assert values[("paradrop_chute_info", (("chute", name), ("state", "running"), ("version", "1")))] == 1
    assert values[("paradrop_node_memory_total_bytes", ())] > 0
    assert any(key[0] == "paradrop_node_interface_received_bytes_total" for key in values)

    answer = session.post(f"{node_process.url}/api/v1/chutes/{name}/stop")
    assert wait_change(session, node_process.url, answer.json()["change_id"])["state"] == "succeeded"
    assert samples(session.get(url, timeout=10).text)[("paradrop_service_running", labels)] == 0
