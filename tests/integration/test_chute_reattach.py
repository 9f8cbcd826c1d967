"""A chute container whose process dies is started again by Docker's restart policy in a new network namespace:
the node gives it its interface back (radio-less, as in test_chute_networks.py), and the engine adapter's event
stream that tells it so, on the real engine."""
import os
import signal
import subprocess
import time
import uuid

import docker
import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from pdserver.containers import ContainerSpec, DockerEngine
from tests.conftest import wait_until
from tests.integration.chute_helpers import container_of, unique
from tests.integration.network_helpers import ap_chute, install, lease, set_radios
from tests.netns import in_netns, lab  # noqa: F401 (lab is a fixture)

BUSYBOX = "paradrop/busybox:latest"

pytestmark = pytest.mark.docker


def main_pid(container: str) -> int:
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", container], capture_output=True, text=True)
    return int(out.stdout.strip() or 0)


def wlan0_address(container: str) -> str:
    out = subprocess.run(["docker", "exec", container, "ip", "-4", "-o", "addr", "show", "wlan0"],
                         capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else ""


def test_a_chute_whose_process_died_gets_its_wlan0_back_and_its_clients_reach_it_again(lab, node_process_factory,
                                                                                       tmp_path):
    router, client = lab.netns("router"), lab.netns("client")
    ap_device, client_end = lab.veth("ap", peer_netns=client, host_netns=router)
    node = node_process_factory(PARADROP_NETWORK_NETNS=router).start()
    session, url = node.session(), node.url
    set_radios(session, url, ap_device)

    name = unique("re")
    install(session, url, ap_chute(name, "Back again"))
    prefix = session.get(f"{url}/api/v1/chutes/{name}/networks").json()[0]["subnet"].rsplit(".", 1)[0]
    container = container_of(name, "main")
    assert f"inet {prefix}.2/24" in wlan0_address(container)
    assert lease(client, client_end, tmp_path)

    first = main_pid(container)
    killed = time.monotonic()
    os.kill(first, signal.SIGKILL)  # the process dies (not `docker kill`, which counts as a stop by hand)
    wait_until(lambda: main_pid(container) not in (0, first), timeout=20, message="the restart by the engine")
    wait_until(lambda: f"inet {prefix}.2/24" in wlan0_address(container), timeout=10,
               message="wlan0 given back after the restart")
    print(f"wlan0 back {time.monotonic() - killed:.2f} s after the kill")
    assert in_netns(client, "ping", "-c", "1", "-W", "2", f"{prefix}.2").returncode == 0
    changes = session.get(f"{url}/api/v1/changes").json()
    assert len(changes) == 3, changes  # host config, install, reconcile at start: no change was needed for it


@pytest.fixture
def labelled():
    """A unique label for this test's containers; removes them afterwards, also when the test fails."""
    label = f"org.paradrop.test.events={uuid.uuid4().hex[:8]}"
    yield label
    client = docker.from_env()
    try:
        for container in client.containers.list(all=True, filters={"label": label}):
            container.remove(force=True)
    finally:
        client.close()


@pytest_twisted.inlineCallbacks
def test_the_engine_adapter_streams_the_starts_and_deaths_of_labelled_containers_only(labelled):
    engine = DockerEngine(reactor)
    engine.startService()
    key, value = labelled.split("=")
    events, arrived = [], defer.Deferred()

    def on_event(event):
        events.append(event)
        if [e.action for e in events] == ["start", "die", "start"] and not arrived.called:
            arrived.callback(None)
    follower = yield engine.follow_events(on_event, labelled)
    try:
        other = f"pdtest-{value}-other"
        yield engine.create_container(ContainerSpec(other, BUSYBOX, command="sleep 100000"))
        yield engine.start_container(other)
        mine = f"pdtest-{value}-mine"
        yield engine.create_container(ContainerSpec(mine, BUSYBOX, command="sleep 100000", labels={key: value}))
        yield engine.start_container(mine)
        state = yield engine.inspect_container(mine)
        os.kill(state.pid, signal.SIGKILL)
        timeout = reactor.callLater(20, arrived.cancel)
        yield arrived
        timeout.cancel()
    finally:
        yield follower.stop()
        yield engine.remove_container(f"pdtest-{value}-other")
        yield engine.stopService()
    assert [(e.action, e.name) for e in events] == [("start", mine), ("die", mine), ("start", mine)]
    assert events[0].attributes[key] == value and events[1].attributes["exitCode"] == "137"
    assert events[0].id == state.id and events[2].time >= events[0].time > 0
