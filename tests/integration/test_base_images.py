"""The local base images built by tools/build-base-images run on the real Docker engine."""

import urllib.error
import urllib.request

import docker
import pytest

from tests.conftest import wait_until

BUSYBOX = "paradrop/busybox:latest"
PYTHON3 = "paradrop/python3:latest"
TEST_LABELS = {"org.paradrop.test": "1"}

# Never send requests for local addresses through a proxy from the environment.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@pytest.fixture
def client(docker_client):
    return docker_client


@pytest.fixture
def create_container(client):
    """Create labelled containers and remove every one afterwards, even when the test fails."""
    created = []

    def create(image, command, **kwargs):
        container = client.containers.create(image, command, labels=TEST_LABELS, **kwargs)
        created.append(container)
        return container

    yield create
    for container in created:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass


def require_image(client, image, skip=False):
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        message = f"{image} is missing: run tools/build-base-images"
        if skip:
            pytest.skip(message)
        pytest.fail(message)


def run_to_exit(container, timeout=30):
    container.start()
    status = container.wait(timeout=timeout)
    return status["StatusCode"], container.logs().decode()


def get_when_answering(url, timeout=10.0):
    """GET url once something answers HTTP there (bounded poll)."""
    def attempt():
        try:
            with _opener.open(url, timeout=1) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return None
    return wait_until(attempt, timeout=timeout, interval=0.05, message=f"an HTTP answer from {url}")


def test_busybox_image_runs_a_shell_command_and_knows_the_paradrop_user(client, create_container):
    require_image(client, BUSYBOX)
    container = create_container(BUSYBOX, ["sh", "-c", "echo $((40 + 2)); id -u paradrop"])

    code, output = run_to_exit(container)

    assert (code, output.split()) == (0, ["42", "1000"])


def test_busybox_httpd_answers_on_a_port_published_on_localhost(client, create_container):
    require_image(client, BUSYBOX)
    serve = "mkdir /www && echo hello-paradrop > /www/index.html && exec httpd -f -p 8080 -h /www"
    container = create_container(BUSYBOX, ["sh", "-c", serve], ports={"8080/tcp": ("127.0.0.1", None)})
    container.start()
    container.reload()
    host_port = container.ports["8080/tcp"][0]["HostPort"]
    address = container.attrs["NetworkSettings"]["IPAddress"]

    # Wait on the container's own address: polling the published port before the container's
    # veth is up loses the first ARP lookup and costs a one-second kernel retry.
    assert get_when_answering(f"http://{address}:8080/")[0] == 200, container.logs().decode()
    status, body = get_when_answering(f"http://127.0.0.1:{host_port}/", timeout=5.0)

    assert (status, body) == (200, "hello-paradrop\n")


def test_python3_image_runs_python(client, create_container):
    require_image(client, PYTHON3, skip=True)
    container = create_container(PYTHON3, ["python3", "-c", "print(1 + 1)"])

    code, output = run_to_exit(container)

    assert (code, output) == (0, "2\n")
