"""pdserver.containers on the real Docker engine: builds, networks, volumes, containers, readiness, logs.

Every object a test makes is named pdtest-... and labelled org.paradrop.test=1; the ``made`` fixture
removes all of them afterwards, also when the test fails.
"""
import threading
import time
import uuid

import docker
import pytest
import pytest_twisted
import treq
from twisted.internet import defer, reactor, task, threads

from pdserver.containers import (BuildFailed, Conflict, ContainerSpec, DockerEngine, EngineUnavailable,
                                 ImageUnavailable, InUse, NotFound, NotReady, PortBinding, wait_ready)
from tests.conftest import free_port

BUSYBOX = "paradrop/busybox:latest"
TEST_LABEL = "org.paradrop.test"
SERVE = "mkdir -p /www && echo hi > /www/index.html && exec httpd -f -p 8000 -h /www"

pytestmark = pytest.mark.docker


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


@pytest.fixture
def client(docker_client):
    return docker_client


@pytest.fixture
def engine(client):
    engine = DockerEngine(reactor)
    engine.startService()
    yield engine
    pytest_twisted.blockon(engine.stopService())


def remove_test_objects(client):
    """Everything labelled org.paradrop.test whose name starts with pdtest-, containers first."""
    api = client.api
    filters = {"label": TEST_LABEL}

    def remove(function, *args, **kwargs):
        try:
            function(*args, **kwargs)
        except docker.errors.NotFound:
            pass
    for container in api.containers(all=True, filters=filters):
        if container["Names"][0].lstrip("/").startswith("pdtest-"):
            remove(api.remove_container, container["Id"], force=True)
    for network in api.networks(filters=filters):
        if network["Name"].startswith("pdtest-"):
            remove(api.remove_network, network["Id"])
    for volume in api.volumes(filters=filters).get("Volumes") or []:
        if volume["Name"].startswith("pdtest-"):
            remove(api.remove_volume, volume["Name"])
    for image in api.images(filters=filters):
        for tag in image.get("RepoTags") or []:
            if tag.startswith("pdtest-"):
                remove(api.remove_image, tag)


@pytest.fixture
def made(client):
    """Unique pdtest- names and labels for one test; removes what carries them at teardown."""
    run = uuid.uuid4().hex[:8]

    class Made:
        labels = {TEST_LABEL: "1", "org.paradrop.test.run": run}

        @staticmethod
        def name(what):
            return f"pdtest-{run}-{what}"

    yield Made
    remove_test_objects(client)


def spec(made, what, command, **kwargs):
    return ContainerSpec(name=made.name(what), image=BUSYBOX, command=command, labels=made.labels, **kwargs)


async def run_to_exit(engine, container_spec, timeout=20.0):
    """Create, start and wait for a one-shot container; returns (exit code, output lines)."""
    await engine.create_container(container_spec)
    await engine.start_container(container_spec.name)
    deadline = time.monotonic() + timeout
    while True:
        state = await engine.inspect_container(container_spec.name)
        if state.status == "exited":
            return state.exit_code, await engine.logs(container_spec.name)
        assert time.monotonic() < deadline, f"{container_spec.name} still {state.status}"
        await sleep(0.05)


async def http_get(url, timeout=10.0):
    """GET url, retrying until it answers or timeout seconds pass; returns (status, body)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = await treq.get(url, timeout=1, persistent=False)
            return response.code, await treq.text_content(response)
        except Exception as exc:
            if time.monotonic() > deadline:
                raise AssertionError(f"no HTTP answer from {url} within {timeout} s: {exc}") from exc
            await sleep(0.05)


def one_shot(made, what, command, **kwargs):
    return spec(made, what, command, restart_policy={"Name": "no"}, **kwargs)


# images

@pytest_twisted.ensureDeferred
async def test_build_reports_its_steps_and_labels_the_image(engine, made, tmp_path):
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX}\nRUN echo built-{made.name('x')} > /built\nCMD [\"cat\", \"/built\"]\n")
    tag = made.name("image") + ":1"
    progress = []

    started = time.monotonic()
    image_id = await engine.build_image(tmp_path, tag, made.labels, progress.append)
    print(f"\nbuild of a 3-instruction busybox image: {time.monotonic() - started:.2f} s")

    assert image_id.startswith("sha256:")
    steps = 3 + len(made.labels)  # the classic builder adds one LABEL step per label
    assert progress[0] == f"building image {tag} (step 1/{steps}): FROM {BUSYBOX}"
    assert progress[1].startswith(f"building image {tag} (step 2/{steps}): RUN echo built-")
    assert all("(step " in message for message in progress)
    labels = await engine.image_labels(tag)
    assert labels[TEST_LABEL] == "1" and labels["org.paradrop.test.run"] == made.labels["org.paradrop.test.run"]
    assert await engine.image_exists(tag)
    code, output = await run_to_exit(engine, ContainerSpec(name=made.name("run"), image=tag, labels=made.labels,
                                                           restart_policy={"Name": "no"}))
    assert (code, output) == (0, [f"built-{made.name('x')}"])


def _history(client, image_id):
    """An image's history; empty when another process removed it meanwhile (the engine is shared)."""
    try:
        return client.api.history(image_id)
    except docker.errors.NotFound:
        return []


@pytest_twisted.ensureDeferred
async def test_failed_build_names_the_failing_step_and_leaves_no_layers(engine, made, tmp_path, client):
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nRUN echo {made.name('layer')} > /f\n"
                                         "RUN echo about to fail && exit 3\nCMD [\"true\"]\n")
    layers_before = {image["Id"] for image in client.api.images(all=True)}

    with pytest.raises(BuildFailed) as failed:
        await engine.build_image(tmp_path, made.name("broken") + ":1", made.labels, None)

    message = str(failed.value)
    assert f"failed at step 3/{4 + len(made.labels)} (RUN echo about to fail && exit 3)" in message
    assert "returned a non-zero code: 3" in message
    assert "about to fail" in message.split("last output:")[1]
    marker = made.name("layer")
    new_layers = {image["Id"] for image in client.api.images(all=True)} - layers_before
    ours = [layer for layer in new_layers if any(marker in (step.get("CreatedBy") or "") for step in _history(client, layer))]
    assert ours == [], "the failed build left its intermediate layers"
    assert not await engine.image_exists(made.name("broken") + ":1")


@pytest_twisted.ensureDeferred
async def test_build_without_dockerfile_fails_clearly(engine, made, tmp_path):
    with pytest.raises(BuildFailed, match="no Dockerfile in"):
        await engine.build_image(tmp_path, made.name("none") + ":1", made.labels, None)


@pytest_twisted.ensureDeferred
async def test_pull_without_a_registry_fails_quickly_and_clearly(engine, made):
    started = time.monotonic()
    progress = []
    with pytest.raises(ImageUnavailable) as failed:
        await engine.pull_image(f"{made.name('nothing')}/nothing:1", progress.append)
    assert time.monotonic() - started < 10
    assert str(failed.value).startswith(f"image {made.name('nothing')}/nothing:1 is not on this node and the "
                                        "registry could not be reached: ")
    assert progress == [f"pulling image {made.name('nothing')}/nothing:1"]


@pytest_twisted.ensureDeferred
async def test_creating_a_container_of_a_missing_image_says_so(engine, made):
    with pytest.raises(ImageUnavailable, match="is not on this node"):
        await engine.create_container(ContainerSpec(name=made.name("c"), image=made.name("missing") + ":1",
                                                    labels=made.labels))


@pytest_twisted.ensureDeferred
async def test_an_image_in_use_is_not_removed(engine, made, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nCMD [\"sleep\", \"60\"]\n")
    tag = made.name("used") + ":1"
    await engine.build_image(tmp_path, tag, made.labels)
    await engine.create_container(ContainerSpec(name=made.name("user"), image=tag, labels=made.labels))
    await engine.start_container(made.name("user"))

    with pytest.raises(InUse, match=f"image {tag} is in use"):
        await engine.remove_image(tag)
    assert await engine.image_exists(tag)

    await engine.remove_container(made.name("user"))
    await engine.remove_image(tag)
    assert not await engine.image_exists(tag)
    await engine.remove_image(tag)  # absent: no error


# a web service on its own network

@pytest_twisted.ensureDeferred
async def test_a_web_service_runs_limited_published_and_with_its_volume(engine, made, client):
    network, volume = made.name("net"), made.name("data")
    await engine.create_network(network, made.labels)
    await engine.create_volume(volume, made.labels)
    external = free_port()
    web = spec(made, "web", ["sh", "-c", "echo kept > /data/proof && " + SERVE], network=network, aliases=["web"],
               port_bindings=[PortBinding(external, 8000, host_ip="127.0.0.1")], volumes={volume: "/data"},
               cpu_fraction=0.5, memory=64 * 1024 * 1024, environment={"GREETING": "hi"}, dns=("9.9.9.9",))

    started = time.monotonic()
    await engine.create_container(web)
    await engine.start_container(web.name)
    to_running = time.monotonic() - started
    ready = await wait_ready(engine, web.name, network, reactor, grace=0.0, web_port=8000, service="web")
    to_http = time.monotonic() - started
    again = time.monotonic()
    await wait_ready(engine, web.name, network, reactor, web_port=8000)
    print(f"\ncreate+start to running: {to_running:.2f} s; to first HTTP answer (grace 0): {to_http:.2f} s; "
          f"wait_ready with the default 1 s grace on a running service: {time.monotonic() - again:.2f} s")

    state = await engine.inspect_container(web.name)
    assert ready.id == state.id
    assert (state.status, state.running, state.health, state.restart_count) == ("running", True, None, 0)
    assert state.addresses[network].count(".") == 3
    assert made.labels.items() <= state.labels.items()  # containers also inherit their image's labels
    assert state.image == BUSYBOX and state.started_at
    host_config = client.api.inspect_container(web.name)["HostConfig"]
    assert (host_config["NanoCpus"], host_config["Memory"]) == (500_000_000, 64 * 1024 * 1024)
    assert (state.capabilities, state.memory) == ((), 64 * 1024 * 1024)  # every capability dropped by default
    assert host_config["SecurityOpt"] == ["no-new-privileges"]
    assert host_config["Dns"] == ["9.9.9.9"]
    assert host_config["RestartPolicy"]["Name"] == "unless-stopped"
    assert await http_get(f"http://{state.addresses[network]}:8000/") == (200, "hi\n")
    assert await http_get(f"http://127.0.0.1:{external}/", timeout=5.0) == (200, "hi\n")

    code, output = await run_to_exit(engine, one_shot(made, "reader", ["cat", "/data/proof"],
                                                      volumes={volume: "/data"}))
    assert (code, output) == (0, ["kept"])


@pytest_twisted.ensureDeferred
async def test_a_container_has_only_the_capabilities_it_is_given_and_no_new_privileges(engine, made):
    status = "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"
    code, output = await run_to_exit(engine, one_shot(made, "bare", ["sh", "-c", status + "; ip link set lo down"]))
    assert code != 0 and {"CapEff:\t0000000000000000", "NoNewPrivs:\t1"} <= set(output)  # stderr comes in any order
    code, output = await run_to_exit(engine, one_shot(made, "admin", ["sh", "-c", "ip link set lo down"],
                                                      capabilities=("NET_ADMIN",)))
    assert (code, output) == (0, [])
    assert (await engine.inspect_container(made.name("admin"))).capabilities == ("NET_ADMIN",)


@pytest_twisted.ensureDeferred
async def test_services_on_one_network_reach_each_other_by_alias(engine, made):
    network = made.name("net")
    await engine.create_network(network, made.labels)
    await engine.create_container(spec(made, "web", ["sh", "-c", SERVE], network=network, aliases=["web"]))
    await engine.start_container(made.name("web"))
    await wait_ready(engine, made.name("web"), network, reactor, grace=0.0, web_port=8000)

    code, output = await run_to_exit(engine, one_shot(made, "client", "wget -qO- http://web:8000/",
                                                      network=network))
    assert (code, output) == (0, ["hi"])
    gateway = await engine.network_gateway(network)
    web = await engine.inspect_container(made.name("web"))
    assert gateway.rsplit(".", 1)[0] == web.addresses[network].rsplit(".", 1)[0]


@pytest_twisted.ensureDeferred
async def test_networks_and_volumes_are_idempotent_and_removable_while_used(engine, made):
    network, volume = made.name("net"), made.name("vol")
    first = await engine.create_network(network, made.labels)
    assert await engine.create_network(network, made.labels) == first
    with pytest.raises(Conflict, match="exists with subnet"):
        await engine.create_network(network, made.labels, subnet="10.213.7.0/24")
    assert await engine.create_volume(volume, made.labels) == volume
    assert await engine.create_volume(volume, made.labels) == volume
    await engine.create_container(spec(made, "sleeper", "sleep 60", network=network, volumes={volume: "/data"}))
    await engine.start_container(made.name("sleeper"))

    with pytest.raises(InUse, match=f"volume {volume} is in use"):
        await engine.remove_volume(volume)
    await engine.remove_network(network)  # disconnects the running container first
    state = await engine.inspect_container(made.name("sleeper"))
    assert state.running and network not in state.addresses
    await engine.remove_network(network)  # absent: no error

    await engine.remove_container(made.name("sleeper"))
    await engine.remove_volume(volume)
    await engine.remove_volume(volume)
    assert (await engine.list_objects("org.paradrop.test.run=" + made.labels["org.paradrop.test.run"])) == {
        "containers": [], "networks": [], "volumes": [], "images": []}


@pytest_twisted.ensureDeferred
async def test_network_with_a_subnet(engine, made, client):
    network = made.name("net")
    await engine.create_network(network, made.labels, subnet="10.213.7.0/24")
    await engine.create_container(spec(made, "web", ["sh", "-c", SERVE], network=network))
    await engine.start_container(made.name("web"))
    state = await wait_ready(engine, made.name("web"), network, reactor, grace=0.0, web_port=8000)
    assert state.addresses[network].startswith("10.213.7.")
    assert await engine.network_gateway(network) == "10.213.7.1"
    with pytest.raises(NotFound):
        await engine.network_gateway(made.name("nonet"))
    assert client.api.inspect_network(network)["Driver"] == "bridge"


# container lifecycle

@pytest_twisted.ensureDeferred
async def test_container_lifecycle_create_conflict_rename_stop_remove(engine, made):
    sleeper = spec(made, "a", "sleep 60")
    await engine.create_container(sleeper)
    state = await engine.inspect_container(sleeper.name)
    assert (state.status, state.running, state.exit_code, state.started_at) == ("created", False, None, None)
    with pytest.raises(Conflict, match=f"a container named {sleeper.name} exists already"):
        await engine.create_container(sleeper)

    await engine.start_container(sleeper.name)
    await engine.rename_container(sleeper.name, made.name("b"))
    assert await engine.inspect_container(sleeper.name) is None
    assert (await engine.inspect_container(made.name("b"))).running
    await engine.create_container(sleeper)
    with pytest.raises(Conflict):
        await engine.rename_container(made.name("b"), sleeper.name)

    await engine.stop_container(made.name("b"), timeout=1)
    state = await engine.inspect_container(made.name("b"))
    assert (state.status, state.running) == ("exited", False)
    await engine.remove_container(made.name("b"))
    await engine.remove_container(made.name("b"))  # absent: no error
    assert await engine.inspect_container(made.name("b")) is None


@pytest_twisted.ensureDeferred
async def test_a_taken_host_port_is_a_conflict_at_start(engine, made):
    port = free_port()
    for what in ("first", "second"):
        await engine.create_container(spec(made, what, "sleep 60",
                                           port_bindings=[PortBinding(port, 8000, host_ip="127.0.0.1")]))
    await engine.start_container(made.name("first"))

    with pytest.raises(Conflict, match=f"Bind for 127.0.0.1:{port} failed: port is already allocated"):
        await engine.start_container(made.name("second"))
    assert (await engine.inspect_container(made.name("second"))).status == "created"


# readiness

@pytest_twisted.ensureDeferred
async def test_wait_ready_names_the_exit_code_of_a_service_that_exits_at_once(engine, made):
    crash = spec(made, "crash", "sh -c 'exit 3'")
    await engine.create_container(crash)
    await engine.start_container(crash.name)

    started = time.monotonic()
    with pytest.raises(NotReady) as failed:
        await wait_ready(engine, crash.name, None, reactor, service="main")
    assert failed.value.reason == "service main exited with code 3"
    assert time.monotonic() - started < 1.0  # an exit fails at once, without waiting for the grace period


@pytest_twisted.ensureDeferred
async def test_wait_ready_reports_a_service_that_never_answers_http(engine, made):
    network = made.name("net")
    await engine.create_network(network, made.labels)
    await engine.create_container(spec(made, "mute", "sleep 60", network=network))
    await engine.start_container(made.name("mute"))

    with pytest.raises(NotReady) as failed:
        await wait_ready(engine, made.name("mute"), network, reactor, grace=0.0, timeout=1.0, web_port=8000,
                         service="main")
    assert failed.value.reason.startswith("service main: no HTTP answer on port 8000 within 1 s (")


@pytest_twisted.ensureDeferred
async def test_wait_ready_follows_the_docker_health_check(engine, made):
    checked = dict(interval=100_000_000, timeout=1_000_000_000, retries=1)
    await engine.create_container(spec(made, "good", "sleep 60", healthcheck=dict(test="true", **checked)))
    await engine.create_container(spec(made, "bad", "sleep 60",
                                       healthcheck=dict(test="echo broken-check; exit 1", **checked)))
    await engine.start_container(made.name("good"))
    await engine.start_container(made.name("bad"))

    state = await wait_ready(engine, made.name("good"), None, reactor, grace=0.0, timeout=10.0)
    assert state.health == "healthy"
    with pytest.raises(NotReady) as failed:
        await wait_ready(engine, made.name("bad"), None, reactor, grace=0.0, timeout=10.0, service="main")
    assert failed.value.reason == "service main: health check unhealthy: broken-check"


# logs and listing

@pytest_twisted.ensureDeferred
async def test_logs_tail_and_follow_deliver_printed_lines(engine, made):
    printer = one_shot(made, "printer", "sh -c 'for i in 1 2 3; do echo line$i; sleep 0.2; done'")
    await engine.create_container(printer)
    await engine.start_container(printer.name)
    lines = []

    follower = await engine.follow_logs(printer.name, lines.append, tail=None)
    await follower.done
    assert lines == ["line1", "line2", "line3"]
    assert await engine.logs(printer.name, tail=2) == ["line2", "line3"]
    stamped = await engine.logs(printer.name, timestamps=True)
    assert [line.split(" ", 1)[1] for line in stamped] == ["line1", "line2", "line3"]


@pytest_twisted.ensureDeferred
async def test_a_stopped_follow_delivers_nothing_more(engine, made):
    ticker = spec(made, "ticker", "sh -c 'i=0; while true; do i=$((i+1)); echo tick$i; sleep 0.05; done'")
    await engine.create_container(ticker)
    await engine.start_container(ticker.name)
    lines = []
    follower = await engine.follow_logs(ticker.name, lines.append)
    deadline = time.monotonic() + 10
    while len(lines) < 3 and time.monotonic() < deadline:
        await sleep(0.02)

    await follower.stop()
    seen = len(lines)
    await sleep(0.3)
    assert seen >= 3 and len(lines) == seen
    assert lines[:2] == [lines[0], f"tick{int(lines[0][4:]) + 1}"]  # in order, none lost
    assert follower.done.called


@pytest_twisted.ensureDeferred
async def test_follow_ends_when_the_container_is_removed(engine, made):
    await engine.create_container(spec(made, "sleeper", "sh -c 'echo up; exec sleep 60'"))
    await engine.start_container(made.name("sleeper"))
    lines = []
    follower = await engine.follow_logs(made.name("sleeper"), lines.append, tail=10)
    await engine.remove_container(made.name("sleeper"))
    await follower.done
    assert lines == ["up"]


@pytest_twisted.ensureDeferred
async def test_list_objects_finds_what_we_made_by_label(engine, made, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BUSYBOX}\nCMD [\"true\"]\n")
    await engine.build_image(tmp_path, made.name("img") + ":2", made.labels)
    await engine.create_network(made.name("net"), made.labels)
    await engine.create_volume(made.name("vol"), made.labels)
    await engine.create_container(spec(made, "c", "true", network=made.name("net")))

    found = await engine.list_objects("org.paradrop.test.run=" + made.labels["org.paradrop.test.run"])
    [(image, image_labels)] = found.pop("images")
    [(container, container_labels)] = found.pop("containers")
    assert found == {"networks": [(made.name("net"), made.labels)], "volumes": [(made.name("vol"), made.labels)]}
    assert container == made.name("c") and made.labels.items() <= container_labels.items()
    assert image == made.name("img") + ":2" and made.labels.items() <= image_labels.items()
    by_key = await engine.list_objects("org.paradrop.test.run")
    assert made.name("c") in [name for name, _ in by_key["containers"]]


@pytest_twisted.ensureDeferred
async def test_ping_names_the_engine_version(engine):
    assert (await engine.ping())[0].isdigit()


OWNER = "org.paradrop.test.owner"


@pytest.fixture
def owned(client):
    """An engine adapter that marks what it makes with the owner label OWNER."""
    engine = DockerEngine(reactor, owner_label=OWNER)
    engine.startService()
    yield engine
    pytest_twisted.blockon(engine.stopService())


@pytest_twisted.ensureDeferred
async def test_networks_and_volumes_of_another_owner_are_never_reused(owned, made):
    mine, theirs = {**made.labels, OWNER: "node-a"}, {**made.labels, OWNER: "node-b"}
    network = await owned.create_network(made.name("net"), mine)
    assert await owned.create_network(made.name("net"), {**mine, "org.paradrop.version": "2"}) == network
    await owned.create_volume(made.name("vol"), mine)
    with pytest.raises(Conflict, match=f"belongs to {OWNER}=node-a"):
        await owned.create_network(made.name("net"), theirs)
    with pytest.raises(Conflict, match=f"belongs to {OWNER}=node-a"):
        await owned.create_volume(made.name("vol"), theirs)


@pytest_twisted.ensureDeferred
async def test_every_layer_and_intermediate_container_of_a_build_carries_the_owner(owned, made, tmp_path, client):
    """So a build killed halfway leaves nothing unlabelled: its dangling layer is found by the label."""
    (tmp_path / "Dockerfile").write_text(
        f"FROM {BUSYBOX} AS first\nRUN echo one > /one\n"
        f"FROM {BUSYBOX}\nCOPY --from=first /one /one\nRUN echo {made.name('x')} > /two && sleep 1\n")
    run = made.labels["org.paradrop.test.run"]
    labels = {**made.labels, OWNER: run}
    building = owned.build_image(tmp_path, made.name("img") + ":1", labels)
    seen = []
    while not building.called:
        seen += [c["Id"] for c in client.api.containers(all=True, filters={"label": f"{OWNER}={run}"})]
        await sleep(0.05)
    image_id = await building
    assert seen, "the builder's intermediate containers carry the owner label"
    layer, parents = image_id, []
    while layer:
        attrs = client.api.inspect_image(layer)
        if (attrs["Config"].get("Labels") or {}).get(OWNER) != run:
            break
        parents.append(layer)
        layer = attrs.get("Parent")
    assert client.api.inspect_image(layer)["Id"] == client.api.inspect_image(BUSYBOX)["Id"]
    assert len(parents) >= 4  # LABEL, COPY, RUN and the builder's own LABEL steps of the last stage
    assert (tmp_path / "Dockerfile").read_text().count("LABEL") == 0, "the project's files stay untouched"


@pytest_twisted.ensureDeferred
async def test_stopping_the_adapter_waits_for_calls_in_flight_and_refuses_new_ones(made):
    engine = DockerEngine(reactor)
    engine.startService()
    stubborn = spec(made, "stubborn", ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"], init=False)
    await engine.create_container(stubborn)
    await engine.start_container(stubborn.name)
    order = []
    stopping_container = engine.stop_container(stubborn.name, timeout=1)
    stopping_container.addCallback(lambda _: order.append("container stopped"))
    stopped = engine.stopService()
    stopped.addCallback(lambda _: order.append("adapter stopped"))
    with pytest.raises(EngineUnavailable, match="not running"):
        await engine.ping()
    await stopped
    assert order == ["container stopped", "adapter stopped"]


@pytest_twisted.ensureDeferred
async def test_engine_calls_do_not_wait_for_the_reactors_shared_thread_pool(engine):
    pool = reactor.getThreadPool()
    release = threading.Event()
    blockers = [threads.deferToThread(release.wait, 30) for _ in range(pool.max)]
    try:
        assert (await engine.ping().addTimeout(5, reactor))[0].isdigit()  # a shared pool would hold it 30 s
    finally:
        release.set()
        await defer.gatherResults(blockers)


@pytest_twisted.ensureDeferred
async def test_an_idle_engine_gives_its_threads_and_connections_back_and_still_answers(engine):
    import psutil
    engine.IDLE_TRIM = 0.2

    def busy():
        threads_left = [t for t in threading.enumerate() if t.name.startswith("pd-docker")]
        return threads_left or len(psutil.Process().net_connections("unix")) > sockets_before
    sockets_before = len(psutil.Process().net_connections("unix"))
    await defer.gatherResults([engine.ping() for _ in range(8)])
    assert busy()
    for _ in range(100):  # 5 s
        if not busy():
            break
        await sleep(0.05)
    assert not busy(), "the engine kept threads or connections after it went idle"
    assert (await engine.ping())[0].isdigit()
