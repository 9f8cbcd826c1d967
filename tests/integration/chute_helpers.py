"""Building chute projects and driving a node's chute API from tests (synchronous, over requests)."""
import io
import json
import tarfile
import uuid
from pathlib import Path

import requests
import yaml

from tests.conftest import wait_until

FINAL = ("succeeded", "failed", "cancelled", "interrupted")


def unique(prefix="t"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_project(directory: Path, description: dict, files=None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "paradrop.yaml").write_text(yaml.safe_dump(description))
    for name, text in (files or {}).items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory


def tar_bytes(directory: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(directory.rglob("*")):
            tar.add(path, arcname=str(path.relative_to(directory)), recursive=False)
    return buf.getvalue()


def web_chute(name, version, port, text, command=None):
    """A light python3 chute serving ``text`` at / on 8000, published on ``port``."""
    return ({"name": name, "version": version, "web": {"service": "main", "port": 8000},
             "services": {"main": {"type": "light", "image": "python3",
                                   "command": command or "python3 -m http.server 8000",
                                   "requests": {"port-bindings": [{"external": port, "internal": 8000}]}}}},
            {"index.html": text})


def wait_change(session: requests.Session, url: str, change_id: int, timeout=90.0) -> dict:
    """The change once it ended; a timeout names where it stood (its state and last messages)."""
    seen = {}

    def finished():
        seen["change"] = change = session.get(f"{url}/api/v1/changes/{change_id}", timeout=10).json()
        return change if change["state"] in FINAL else None
    try:
        return wait_until(finished, timeout=timeout, interval=0.05, message=f"change {change_id}")
    except AssertionError as e:
        raise AssertionError(f"{e}; it stands at {json.dumps(seen.get('change'))[-2000:]}") from None


def submit_tar(session, url, directory, name=None):
    target = f"{url}/api/v1/chutes/" + (name or "")
    method = session.put if name else session.post
    return method(target, data=tar_bytes(directory), headers={"Content-Type": "application/x-tar"}, timeout=60)


def install(session, url, directory, name=None) -> dict:
    response = submit_tar(session, url, directory, name)
    assert response.status_code == 202, response.text
    return wait_change(session, url, response.json()["change_id"])


def act(session, url, chute, action) -> dict:
    if action == "delete":
        response = session.delete(f"{url}/api/v1/chutes/{chute}", timeout=10)
    else:
        response = session.post(f"{url}/api/v1/chutes/{chute}/{action}", timeout=10)
    assert response.status_code == 202, response.text
    return wait_change(session, url, response.json()["change_id"])


def http_text(port, timeout=20.0):
    """The body served on 127.0.0.1:port, once it answers (bounded poll)."""
    def fetch():
        try:
            r = requests.get(f"http://127.0.0.1:{port}/", timeout=2)
            return r.text if r.ok else None
        except requests.RequestException:
            return None
    return wait_until(fetch, timeout=timeout, interval=0.1, message=f"HTTP on port {port}")


def objects_labelled(chute: str) -> dict:
    import docker
    client = docker.from_env()
    label = {"label": f"org.paradrop.chute={chute}"}
    try:
        return {"containers": [c.name for c in client.containers.list(all=True, filters=label)],
                "networks": [n.name for n in client.networks.list(filters=label)],
                "volumes": [v.name for v in client.volumes.list(filters=label)],
                "images": [t for i in client.images.list(filters=label) for t in i.tags]}
    finally:
        client.close()


def container_of(chute: str, service: str) -> str:
    """The name of the one container of a chute's service (names carry the node: find it by its labels)."""
    import docker
    client = docker.from_env()
    try:
        [container] = client.containers.list(all=True, filters={"label": [f"org.paradrop.chute={chute}",
                                                                          f"org.paradrop.service={service}"]})
        return container.name
    finally:
        client.close()
