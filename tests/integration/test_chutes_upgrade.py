"""A node started on a state dir that the release before node-scoped Docker names wrote: its chute comes
back serving under the new names, on the /data volume it had, with the files the chute wrote there."""
import docker
import pytest

from pdserver.chutes.naming import labels
from pdserver.execution.chute_actions import LIGHT_DOCKERFILE, light_dockerfile
from pdserver.storage import open_database
from tests import previous_release
from tests.conftest import free_port
from tests.integration.chute_helpers import (container_of, http_text, objects_labelled, unique, wait_change,
                                             write_project)

pytestmark = pytest.mark.docker

BASE = "paradrop/busybox:latest"
COMMAND = "httpd -f -p 8000 -h /opt/chute/www"


def previous_state(state_dir, client, node_id, name, port, deployment):
    """What that release left: the node id, the chute's project and store row, and its network, volume,
    image and running container under the old names, with a file the chute wrote into /data."""
    state_dir.mkdir()
    (state_dir / "node-id").write_text(node_id + "\n")
    description = {"name": name, "version": 1, "web": {"service": "main", "port": 8000},
                   "services": {"main": {"type": "light", "image": "busybox", "command": COMMAND,
                                         "requests": {"port-bindings": [{"external": port, "internal": 8000}]}}}}
    project = write_project(state_dir / "chutes" / "sources" / "upload-1", description,
                            {"www/index.html": "served\n",
                             LIGHT_DOCKERFILE: light_dockerfile(BASE, COMMAND, as_root=False)})
    conn = open_database(state_dir / "node.db")
    previous_release.write_store(conn, [(description, "running", deployment, str(project))])
    conn.close()
    node_label = {"org.paradrop.node": node_id}
    client.networks.create(previous_release.network(name), labels={**labels(name, "1"), **node_label})
    client.volumes.create(previous_release.volume(name), labels={**labels(name, "1"), **node_label})
    image = previous_release.image(name, "main", 1, deployment)
    client.images.build(path=str(project), dockerfile=LIGHT_DOCKERFILE, tag=image, rm=True,
                        labels={**labels(name, "1", deployment, "main"), **node_label})
    container = client.containers.run(
        image, name=previous_release.container(name, "main", deployment), detach=True, init=True,
        labels={**labels(name, "1", deployment, "main"), **node_label}, network=previous_release.network(name),
        ports={"8000/tcp": port}, volumes={previous_release.volume(name): {"bind": "/data", "mode": "rw"}})
    written = container.exec_run(["sh", "-c", "echo kept > /data/note.txt"])
    assert written.exit_code == 0, written.output


def gone(get, name) -> bool:
    try:
        get(name)
    except docker.errors.NotFound:
        return True
    return False


def test_a_node_started_on_the_previous_releases_state_serves_its_chute_with_its_data(
        node_process_factory, docker_client):
    node = node_process_factory(PARADROP_READY_GRACE="0.2")  # its teardown removes every object of the node
    name, port, deployment = unique("upgrade"), free_port(), 7
    previous_state(node.state_dir, docker_client, unique("node"), name, port, deployment)
    assert http_text(port) == "served\n"  # the state is a working one before the upgrade

    node.start()
    session, url = node.session(), node.url
    [reconcile] = session.get(f"{url}/api/v1/changes", timeout=10).json()
    assert reconcile["type"] == "reconcile"
    assert wait_change(session, url, reconcile["id"])["state"] == "succeeded"

    chute = session.get(f"{url}/api/v1/chutes/{name}", timeout=10).json()
    cache = session.get(f"{url}/api/v1/chutes/{name}/cache", timeout=10).json()
    assert chute["state"] == "running" and cache["volume"] == previous_release.volume(name)
    assert gone(docker_client.containers.get, previous_release.container(name, "main", deployment))
    assert gone(docker_client.networks.get, previous_release.network(name))
    assert gone(docker_client.images.get, previous_release.image(name, "main", 1, deployment))
    assert objects_labelled(name)["volumes"] == [previous_release.volume(name)]

    container = docker_client.containers.get(container_of(name, "main"))
    assert container.name == cache["containers"]["main"] and container.status == "running"
    assert [(m["Type"], m["Name"], m["Destination"]) for m in container.attrs["Mounts"]] == [
        ("volume", previous_release.volume(name), "/data")]
    assert container.exec_run(["cat", "/data/note.txt"]).output == b"kept\n"
    assert http_text(port) == "served\n"
