"""ParaDrop's own chute shapes installed unchanged on the real engine: the legacy Dockerfile hello-world (its
web port checked by the node, then serving), and a legacy light chute with environment, port bindings and
name servers."""
import shutil
from pathlib import Path

import docker
import pytest
import requests
import yaml

from tests.conftest import free_port, wait_until
from tests.integration.chute_helpers import act, container_of, http_text, install, objects_labelled, wait_change

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "paradrop-chutes"


def inspect(container: str) -> dict:
    client = docker.from_env()
    try:
        return client.api.inspect_container(container)
    finally:
        client.close()


def served(url: str):
    session = requests.Session()
    session.trust_env = False  # a proxy from the environment must not carry a request to a chute's address
    try:
        response = session.get(url, timeout=2)
        return response.text if response.ok else None
    except requests.RequestException:
        return None
    finally:
        session.close()


def test_the_legacy_dockerfile_hello_world_installs_unchanged_and_serves(node_process):
    session, url = node_process.session(), node_process.url
    change = install(session, url, FIXTURES / "legacy-hello-world")
    assert change["state"] == "succeeded", change
    chute = session.get(f"{url}/api/v1/chutes/hello-world", timeout=10).json()
    assert (chute["version"], chute["web"]) == ("0.1.0", {"service": "main", "port": 80})
    networks = inspect(container_of("hello-world", "main"))["NetworkSettings"]["Networks"]
    [address] = [n["IPAddress"] for n in networks.values() if n["IPAddress"]]
    page = wait_until(lambda: served(f"http://{address}:80/"), timeout=20, interval=0.1, message="hello-world")
    assert page == "Hello from a legacy ParaDrop chute\n"
    assert act(session, url, "hello-world", "delete")["state"] == "succeeded"
    assert objects_labelled("hello-world") == {"containers": [], "networks": [], "volumes": [], "images": []}


def test_a_legacy_light_chute_gets_its_environment_port_bindings_and_name_servers(node_process, tmp_path):
    session, url = node_process.session(), node_process.url
    project = shutil.copytree(FIXTURES / "legacy-light-env-ports", tmp_path / "legacy-light")
    description = yaml.safe_load((project / "paradrop.yaml").read_text())
    tcp, udp = free_port(), free_port()
    description["config"]["host_config"]["port_bindings"] = {"5000/tcp": tcp, "53/udp": udp}
    (project / "paradrop.yaml").write_text(yaml.safe_dump(description))
    change = install(session, url, project)
    assert change["state"] == "succeeded", change
    assert "legacy light" in http_text(tcp)
    attrs = inspect(container_of("legacy-light", "main"))
    assert {"GREETING=hello", "RETRIES=3", "VERBOSE=true"} <= set(attrs["Config"]["Env"])
    assert attrs["HostConfig"]["Dns"] == ["8.8.8.8", "1.1.1.1"]
    assert attrs["HostConfig"]["PortBindings"]["53/udp"][0]["HostPort"] == str(udp)


def test_an_image_no_registry_can_give_fails_the_install_naming_the_image(node_process):
    session, url = node_process.session(), node_process.url
    image = "registry.invalid/paradrop/missing:1"
    config = {"name": "unpullable", "version": 1, "services": {"main": {"type": "image", "image": image}}}
    response = session.post(f"{url}/api/v1/chutes", json={"config": config}, timeout=10)
    assert response.status_code == 202, response.text
    change = wait_change(session, url, response.json()["change_id"])
    assert change["state"] == "failed"
    assert image in change["result"]["message"] and "not on this node" in change["result"]["message"]
    assert objects_labelled("unpullable") == {"containers": [], "networks": [], "volumes": [], "images": []}


def test_the_multi_service_shape_installs_a_light_service_from_its_source_directory_beside_an_image_service(
        node_process, tmp_path):
    """ParaDrop's documented multi-service example without its Wi-Fi interface (this node has no radio yet)."""
    session, url = node_process.session(), node_process.url
    project = shutil.copytree(FIXTURES / "multi-service", tmp_path / "multi-service")
    description = yaml.safe_load((project / "paradrop.yaml").read_text())
    del description["services"]["db"]["interfaces"]
    port = free_port()
    description["services"]["light"]["requests"]["port-bindings"][0]["external"] = port
    (project / "paradrop.yaml").write_text(yaml.safe_dump(description))
    change = install(session, url, project)
    assert change["state"] == "succeeded", change
    assert http_text(port) == (project / "web" / "index.html").read_text()
    states = {s["name"]: s["running"] for s in
              session.get(f"{url}/api/v1/chutes/multi-service", timeout=10).json()["service_states"]}
    assert states == {"light": True, "db": True}
    assert {"DEBUG=false", "WORKERS=4", "RATIO=0.5"} <= set(inspect(container_of("multi-service", "light"))
                                                           ["Config"]["Env"])
