"""The radio steps of monitor interfaces through the executor and NetworkActions, on the in-memory engine and
configurator: what an install that fails after giving the radio leaves, and what a step on a stopped container
says."""
import pytest
from twisted.internet.task import Clock
from zope.interface.verify import verifyClass, verifyObject

from pdserver import errors
from pdserver.chutes import naming
from pdserver.chutes.naming import ChuteNames
from pdserver.chutes.spec import build
from pdserver.containers.memory import MemoryEngine
from pdserver.containers.spec import ContainerSpec
from pdserver.execution import network_plans as net_plans
from pdserver.execution.executor import Executor, StepFailed
from pdserver.execution.network_actions import NetworkActions
from pdserver.execution.network_plans import NetworkFacts, Radio
from pdserver.execution.steps import Step
from pdserver.sysconfig import netlink
from pdserver.sysconfig.host_network import HostNetwork
from pdserver.sysconfig.interfaces import INetworkConfigurator
from pdserver.sysconfig.memory import MemoryNetwork
from tests.unit.quiet_journal import QuietJournal

NAMES = ChuteNames("node-1")
IMAGE = "paradrop/busybox:latest"
FACTS = NetworkFacts(radios=(Radio(id="phy3", channel=6),))



@pytest.fixture
def world():
    engine = MemoryEngine(Clock(), images={IMAGE: {}}, owner_label=naming.LABEL_NODE)
    network = MemoryNetwork()
    container = NAMES.container("mon", "main", 1)
    engine.create_container(ContainerSpec(container, IMAGE, labels=NAMES.node_labels()))
    spec = build({"name": "mon", "version": 1, "services": {"main": {
        "type": "image", "image": IMAGE, "command": "sleep 1000", "interfaces": {"mon0": {"type": "monitor"}}}}})
    [net] = net_plans.networks(NAMES, FACTS, spec, net_plans.assign(FACTS, spec, {}, []))
    return engine, network, container, net


def run(network, engine, steps):
    return Executor(NetworkActions(network, engine).actions()).run(steps, QuietJournal())


def test_both_configurators_provide_the_radio_calls():
    assert verifyClass(INetworkConfigurator, HostNetwork)
    assert verifyObject(INetworkConfigurator, MemoryNetwork())


def test_an_install_failing_after_the_radio_was_given_takes_it_back_from_the_running_container(world):
    engine, network, container, net = world
    def fail(args, progress):
        raise errors.Unavailable("not ready")
    actions = {**NetworkActions(network, engine).actions(), "fail": fail}
    engine.start_container(container)
    d = Executor(actions).run([net_plans.attach(NAMES, net, container, 1), Step("fail", {}, "failing")],
                              QuietJournal())
    assert network.radios == {}  # given, then taken back by the undo
    failure = d.result
    d.addErrback(lambda f: None)
    assert isinstance(failure.value, StepFailed) and failure.value.undo_errors == []


def test_the_radio_is_given_at_the_channel_s_frequency_and_taken_back_when_the_chute_goes(world):
    engine, network, container, net = world
    engine.start_container(container)
    run(network, engine, [net_plans.attach(NAMES, net, container, 1)])
    pid = engine.inspect_container(container).result.pid
    assert network.radios == {"phy3": {"pid": pid, "inner": "mon0", "frequency": 2437}}
    run(network, engine, net_plans.teardown(net))
    assert network.radios == {}


def test_a_radio_is_not_given_to_a_container_that_does_not_run(world):
    engine, network, container, net = world
    d = run(network, engine, [net_plans.attach(NAMES, net, container, 1)])
    failure = d.result
    d.addErrback(lambda f: None)
    assert "is not running" in str(failure.value) and network.radios == {}


@pytest.mark.parametrize("args, field", [
    (("-phy0", 1, "mon0", 2437), "phy"),
    (("phy0", 1, "mon 0", 2437), "inner_name"),
    (("phy0", 1, "mon0\n", 2437), "inner_name"),
    (("phy0", 1, "mon0", True), "frequency"),
    (("phy0", 1, "mon0", 900), "frequency"),
    (("phy0", 0, "mon0", 2437), "pid"),
    (("phy0", "1", "mon0", 2437), "pid"),
])
def test_hostile_radio_arguments_are_refused_before_any_netlink_call(args, field):
    with pytest.raises(errors.InvalidInput) as caught:
        netlink.thd_give_radio(*args)
    assert caught.value.field == field
    with pytest.raises(errors.InvalidInput):
        netlink.thd_release_radio("phy0 -x" if field == "phy" else "../phy0")
