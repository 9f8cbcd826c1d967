"""MemoryEngine stands in for DockerEngine: the same interface, the same answers and errors in the same
situations (as tests/integration/test_containers_engine.py shows them on the real engine)."""
import pytest
from twisted.internet import reactor
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from zope.interface.verify import verifyObject

from pdserver.containers import (BuildFailed, Conflict, ContainerSpec, DockerEngine, EngineError, IContainerEngine,
                                 ImageUnavailable, InUse, NotFound, NotReady, PortBinding, wait_ready)
from pdserver.containers.memory import MemoryEngine

BASE = "paradrop/busybox:latest"
LABELS = {"org.paradrop.test": "1"}


def result(d):
    """The result of a Deferred that has fired; its exception raised when it failed."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def engine(clock):
    return MemoryEngine(clock, images={BASE: {"org.paradrop.base": "busybox"}},
                        registry={"example.org/tool:1": {"vendor": "example"}})


def spec(name, **kwargs):
    return ContainerSpec(name=name, image=BASE, labels=LABELS, **kwargs)


def test_both_engines_provide_the_interface_and_docker_needs_no_daemon_to_be_built():
    opened = []
    assert verifyObject(IContainerEngine, MemoryEngine())
    assert verifyObject(IContainerEngine, DockerEngine(reactor, client_factory=lambda: opened.append(1)))
    assert opened == []


# images

def test_images_are_pulled_from_the_registry_or_unavailable(engine):
    progress = []
    assert not result(engine.image_exists("example.org/tool:1"))
    assert result(engine.pull_image("example.org/tool:1", progress.append)).startswith("sha256:")
    assert result(engine.image_labels("example.org/tool:1")) == {"vendor": "example"}
    with pytest.raises(ImageUnavailable, match="is not on this node"):
        result(engine.pull_image("example.org/none:1", progress.append))
    assert progress == ["pulling image example.org/tool:1", "pulling image example.org/none:1"]
    assert result(engine.image_labels("example.org/none:1")) is None


def test_a_build_reports_its_steps_inherits_labels_and_fails_like_the_classic_builder(engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n# a comment\nCMD [\"true\"]\n")
    progress = []
    result(engine.build_image(tmp_path, "mine:1", {"own": "yes"}, progress.append))
    assert progress == [f"building image mine:1 (step 1/2): FROM {BASE}",
                        'building image mine:1 (step 2/2): CMD ["true"]']
    assert result(engine.image_labels("mine:1")) == {"org.paradrop.base": "busybox", "own": "yes"}

    with pytest.raises(BuildFailed, match="no Other.Dockerfile in"):
        result(engine.build_image(tmp_path, "other:1", {}, dockerfile="Other.Dockerfile"))
    (tmp_path / "Dockerfile").write_text("FROM nowhere/nothing:1\n")
    with pytest.raises(BuildFailed, match=r"failed at step 1/1 \(FROM nowhere/nothing:1\)"):
        result(engine.build_image(tmp_path, "broken:1", {}))
    assert not result(engine.image_exists("broken:1"))


def test_an_image_a_container_uses_is_not_removed_even_when_the_container_is_stopped(engine):
    result(engine.create_container(spec("user")))
    with pytest.raises(InUse, match=f"image {BASE} is in use"):
        result(engine.remove_image(BASE))
    result(engine.remove_container("user"))
    result(engine.remove_image(BASE))
    result(engine.remove_image(BASE))  # absent: no error
    assert engine.objects()["images"] == set()


# networks and volumes

def test_networks_are_idempotent_have_their_own_subnets_and_refuse_another_subnet(engine):
    first = result(engine.create_network("a", LABELS))
    assert result(engine.create_network("a", LABELS)) == first
    result(engine.create_network("b", LABELS))
    assert result(engine.network_gateway("a")) != result(engine.network_gateway("b"))
    with pytest.raises(Conflict, match="exists with subnet"):
        result(engine.create_network("a", LABELS, subnet="10.213.7.0/24"))
    result(engine.create_network("c", LABELS, subnet="10.213.7.0/24"))
    assert result(engine.network_gateway("c")) == "10.213.7.1"
    with pytest.raises(Conflict, match="overlaps"):
        result(engine.create_network("d", LABELS, subnet="10.213.0.0/16"))
    with pytest.raises(NotFound):
        result(engine.network_gateway("none"))


def test_removing_a_network_disconnects_running_containers_and_strands_created_ones(engine):
    result(engine.create_network("net", LABELS, subnet="10.213.7.0/24"))
    for name in ("runner", "waiter"):
        result(engine.create_container(spec(name, network="net")))
    result(engine.start_container("runner"))
    assert result(engine.inspect_container("runner")).addresses == {"net": "10.213.7.2"}

    result(engine.remove_network("net"))
    result(engine.remove_network("net"))  # absent: no error
    runner = result(engine.inspect_container("runner"))
    assert runner.running and runner.addresses == {}
    with pytest.raises(NotFound, match="network net not found"):
        result(engine.start_container("waiter"))
    with pytest.raises(NotFound):
        result(engine.create_container(spec("late", network="net")))


def test_volumes_are_idempotent_made_by_containers_and_kept_while_mounted(engine):
    assert result(engine.create_volume("data", LABELS)) == "data"
    assert result(engine.create_volume("data", {})) == "data"
    result(engine.create_container(spec("user", volumes={"data": "/data", "made": "/more"})))
    assert result(engine.list_objects("org.paradrop.test"))["volumes"] == [("data", LABELS)]
    assert engine.objects()["volumes"] == {"data", "made"}  # Docker makes a missing named volume, unlabelled
    with pytest.raises(InUse, match="volume data is in use"):
        result(engine.remove_volume("data"))
    result(engine.remove_container("user"))
    result(engine.remove_volume("data"))
    result(engine.remove_volume("data"))
    assert engine.objects()["volumes"] == {"made"}


# containers

def test_container_lifecycle_create_conflict_rename_stop_remove(engine, clock):
    result(engine.create_container(spec("a")))
    state = result(engine.inspect_container("a"))
    assert (state.status, state.running, state.exit_code, state.started_at) == ("created", False, None, None)
    assert state.labels == {"org.paradrop.base": "busybox", **LABELS}  # containers inherit image labels
    with pytest.raises(Conflict, match="a container named a exists already"):
        result(engine.create_container(spec("a")))
    with pytest.raises(ImageUnavailable):
        result(engine.create_container(ContainerSpec(name="b", image="missing:1")))

    clock.advance(5)
    result(engine.start_container("a"))
    result(engine.start_container("a"))  # running already: no error
    result(engine.rename_container("a", "b"))
    assert result(engine.inspect_container("a")) is None
    assert result(engine.inspect_container("b")).started_at == "1970-01-01T00:00:05.000000000Z"
    result(engine.create_container(spec("a")))
    with pytest.raises(Conflict):
        result(engine.rename_container("b", "a"))
    with pytest.raises(NotFound):
        result(engine.rename_container("none", "c"))

    result(engine.stop_container("b", timeout=1))
    result(engine.stop_container("b"))  # stopped already: no error
    assert result(engine.inspect_container("b")).status == "exited"
    result(engine.remove_container("b"))
    result(engine.remove_container("b"))  # absent: no error
    for call in (engine.start_container, engine.stop_container, engine.logs):
        with pytest.raises(NotFound):
            result(call("b"))
    assert engine.objects()["containers"] == {"a": "created"}


def test_a_taken_host_port_is_a_conflict_at_start_and_the_container_stays_created(engine):
    result(engine.create_container(spec("first", port_bindings=[PortBinding(8001, 80, host_ip="127.0.0.1")])))
    result(engine.create_container(spec("second", port_bindings=[PortBinding(8001, 81)])))
    result(engine.create_container(spec("udp", port_bindings=[PortBinding(8001, 81, protocol="udp")])))
    result(engine.start_container("first"))

    with pytest.raises(Conflict, match="Bind for 0.0.0.0:8001 failed: port is already allocated"):
        result(engine.start_container("second"))
    assert result(engine.inspect_container("second")).status == "created"
    result(engine.start_container("udp"))
    result(engine.stop_container("first"))
    result(engine.start_container("second"))


def test_an_exit_follows_the_restart_policy(engine, clock):
    result(engine.create_container(spec("kept")))
    result(engine.create_container(spec("once", restart_policy={"Name": "on-failure"})))
    for name in ("kept", "once"):
        result(engine.start_container(name))
    clock.advance(1)

    engine.exit_container("kept", 3)
    engine.exit_container("once", 0)
    kept, once = result(engine.inspect_container("kept")), result(engine.inspect_container("once"))
    assert (kept.running, kept.restart_count, kept.started_at) == (True, 1, "1970-01-01T00:00:01.000000000Z")
    assert (once.status, once.exit_code, once.restart_count) == ("exited", 0, 0)


def test_wait_ready_works_against_it_on_a_clock(engine, clock):
    result(engine.create_container(spec("web", healthcheck={"test": ["CMD", "true"]})))
    result(engine.start_container("web"))
    ready = wait_ready(engine, "web", None, clock, grace=1.0)
    clock.pump([0.1] * 10)
    assert result(ready).health == "healthy"

    failed = wait_ready(engine, "web", None, clock, grace=1.0)
    engine.exit_container("web", 1)  # the default policy, unless-stopped, starts it again
    clock.advance(0.1)
    with pytest.raises(NotReady, match="restarted"):
        result(failed)


# listing and logs

def test_list_objects_finds_objects_by_label_key_or_key_and_value(engine, tmp_path):
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    result(engine.build_image(tmp_path, "img:1", {"run": "1"}))
    result(engine.create_network("net", {"run": "1"}))
    result(engine.create_volume("vol", {"run": "2"}))
    result(engine.create_container(ContainerSpec(name="c", image="img:1", labels={"own": "x"})))

    found = result(engine.list_objects("run=1"))
    assert found == {"containers": [("c", {"org.paradrop.base": "busybox", "run": "1", "own": "x"})],
                     "networks": [("net", {"run": "1"})], "volumes": [],
                     "images": [("img:1", {"org.paradrop.base": "busybox", "run": "1"})]}
    assert [name for name, _ in result(engine.list_objects("run"))["volumes"]] == ["vol"]


def test_logs_tail_and_follow_deliver_printed_lines(engine, clock):
    result(engine.create_container(spec("printer")))
    result(engine.start_container("printer"))
    clock.advance(2)
    engine.write_output("printer", "line1", "line2")
    assert result(engine.logs("printer", tail=1)) == ["line2"]
    assert result(engine.logs("printer", tail=None, timestamps=True)) == [
        "1970-01-01T00:00:02.000000000Z line1", "1970-01-01T00:00:02.000000000Z line2"]

    lines, stamped = [], []
    follower = result(engine.follow_logs("printer", lines.append, tail=1))
    result(engine.follow_logs("printer", stamped.append, tail=0, timestamps=True))
    engine.write_output("printer", "line3")
    assert lines == ["line2", "line3"] and stamped == ["1970-01-01T00:00:02.000000000Z line3"]
    result(follower.stop())
    engine.write_output("printer", "line4")
    assert lines == ["line2", "line3"] and follower.done.called


def test_a_follow_ends_when_the_container_stops_and_a_stopped_one_gives_its_output(engine):
    result(engine.create_container(spec("sleeper")))
    result(engine.start_container("sleeper"))
    engine.write_output("sleeper", "up")
    lines = []
    follower = result(engine.follow_logs("sleeper", lines.append, tail=10))
    result(engine.stop_container("sleeper"))
    assert follower.done.called and lines == ["up"]

    again = result(engine.follow_logs("sleeper", lines.append, tail=None))
    assert again.done.called and lines == ["up", "up"]
    with pytest.raises(NotFound):
        result(engine.follow_logs("none", lines.append))


# faults

def test_fail_next_fails_one_chosen_call_and_changes_nothing(engine):
    engine.fail_next("create_network", skip=1)
    result(engine.create_network("a", LABELS))
    with pytest.raises(EngineError, match="injected failure of create_network"):
        result(engine.create_network("b", LABELS))
    result(engine.create_network("c", LABELS))
    assert engine.objects()["networks"] == {"a", "c"}


def test_fail_when_fails_matching_calls_until_removed(engine):
    gone = EngineError("the engine went away")
    remove = engine.fail_when(lambda method, args: method.startswith("create") and args[0] != "kept", gone)
    result(engine.create_volume("kept", LABELS))
    for _ in range(2):
        with pytest.raises(EngineError, match="went away"):
            result(engine.create_volume("lost", LABELS))
    remove()
    result(engine.create_volume("lost", LABELS))
    assert engine.objects()["volumes"] == {"kept", "lost"}
