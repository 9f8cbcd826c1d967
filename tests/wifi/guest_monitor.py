"""The monitor chute of the real-radio scenario (guest_scenario.py runs it while the access point is up).

The node runs in network_netns mode here: its links, and the host config's third radio (phy2), live in the
namespace NODE_NS, as PARADROP_NETWORK_NETNS gives a node. The chute of tests/wifi/monitor.yaml asks for a
monitor interface; the plan's attach step gives its container (a parked process in its own namespace) the whole
radio, where the chute listens to the access point's beacons. The radio then follows a restarted container (its
old namespace died and handed the radio to the initial namespace, not the node's), is taken back from a running
one (the undo of an install), and comes back to NODE_NS when the chute is removed.
"""
from pathlib import Path

from twisted.internet import defer, threads

from pdserver.chutes import spec as chute_spec
from pdserver.execution import network_plans
from pdserver.execution.executor import Executor
from pdserver.execution.network_actions import NetworkActions
from pdserver.sysconfig.host_network import HostNetwork
from tests.wifi import guest_harness as harness

HERE = Path(__file__).resolve().parent
NODE_NS = "pdnode"
CONTAINER_NS = "listener"
PHY = "phy2"
DEPLOYMENT = 1


def in_thread(f, *args, **kwargs):
    return threads.deferToThread(f, *args, **kwargs)


def thd_make_node_namespace():
    """The node's namespace with the radio the host config gives it (iw moves a radio to a named namespace)."""
    harness.thd_run(harness.IP, "netns", "add", NODE_NS)
    harness.thd_run(harness.IW, "phy", PHY, "set", "netns", "name", NODE_NS)


def thd_remove_node_namespace():
    harness.thd_run(harness.IP, "netns", "del", NODE_NS, check=False)


class MonitorScenario:
    """``scenario`` is the access point's (guest_scenario.Scenario: its plan, reactor, engine and journal),
    ``ap_assigned`` what the access point chute was assigned (its radio is not free)."""

    def __init__(self, scenario, ap_assigned, state):
        self.s = scenario
        self.checks = scenario.checks
        data = chute_spec.validate(chute_spec.load_yaml((HERE / "monitor.yaml").read_text()))
        self.chute = chute_spec.build(data)
        self.assigned = network_plans.assign(scenario.facts, self.chute, {}, ap_assigned.values())
        [self.net] = network_plans.networks(scenario.names, scenario.facts, self.chute, self.assigned)
        self.network = HostNetwork(scenario.reactor, in_thread, scenario.supervisor, state, netns=NODE_NS)
        self.executor = Executor(NetworkActions(self.network, scenario.engine).actions())
        self.container = scenario.names.container(self.chute.name, "main", DEPLOYMENT)
        self.parked = None

    def run_steps(self, steps):
        return self.executor.run(steps, self.s.journal)

    @defer.inlineCallbacks
    def start_container(self):
        self.parked = yield in_thread(harness.thd_park, CONTAINER_NS)
        self.s.engine.run(self.container, self.parked.pid)

    @defer.inlineCallbacks
    def stop_container(self):
        """The container's process ends and its namespace goes (the radio leaves it when the kernel frees it)."""
        yield in_thread(harness.thd_unpark, self.parked, CONTAINER_NS)
        self.parked = None

    @defer.inlineCallbacks
    def where(self):
        """(radios in the node's namespace, in the container's, in the initial one)."""
        node = yield in_thread(harness.thd_phys, NODE_NS)
        inside = (yield in_thread(harness.thd_phys, CONTAINER_NS)) if self.parked else set()
        initial = yield in_thread(harness.thd_phys, None)
        return PHY in node, PHY in inside, PHY in initial

    @defer.inlineCallbacks
    def listening(self, name, ssid, started):
        """Check that the container holds the radio with a monitor interface up on the AP's channel, and hears
        the AP's beacons on it."""
        net = self.net
        node, inside, initial = yield self.where()
        interfaces = yield in_thread(harness.thd_wireless_interfaces, CONTAINER_NS)
        mon = interfaces.get(net.interface.name, {})
        up = yield in_thread(harness.thd_link_up, CONTAINER_NS, net.interface.name)
        given = (inside and not node and not initial and mon.get("phy") == PHY and mon.get("type") == "monitor"
                 and mon.get("channel") == net.radio.channel and up)
        heard = yield in_thread(harness.thd_capture_beacons, CONTAINER_NS, net.interface.name, ssid)
        self.checks.record(name, given and heard["beacons"] >= 3 and heard["rx_after"] > heard["rx_before"],
                           f"given in {self.s.reactor.seconds() - started:.1f} s: {net.interface.name} {mon}, "
                           f"{'up' if up else 'DOWN'}; {PHY} in node/container/initial ns: {node}/{inside}/{initial};"
                           f" {heard['beacons']} beacons of {ssid!r} in {heard['seconds']} s, rx_packets "
                           f"{heard['rx_before']} -> {heard['rx_after']}")

    @defer.inlineCallbacks
    def run(self, ssid):
        net = self.net
        self.checks.record("monitor_planned", net.radio is not None and net.radio.id == PHY and net.subnet is None
                           and network_plans.setup(net, self.s.facts) == [],
                           f"{net.key}: radio {net.radio.id if net.radio else None}, channel "
                           f"{net.radio.channel if net.radio else None}, no subnet, no host link; assigned "
                           f"{self.assigned}")
        attach = network_plans.attach(self.s.names, net, self.container, DEPLOYMENT)
        yield self.start_container()
        started = self.s.reactor.seconds()
        yield self.run_steps([attach])
        yield self.listening("monitor_hears_beacons", ssid, started)

        index = (yield in_thread(harness.thd_wireless_interfaces, CONTAINER_NS)).get(net.interface.name)
        yield self.run_steps([attach])
        again = (yield in_thread(harness.thd_wireless_interfaces, CONTAINER_NS)).get(net.interface.name)
        self.checks.record("monitor_give_again_changes_nothing", index == again and index is not None, f"{again}")

        # The engine restarts the container: a new namespace; the old one's death hands the radio to the initial
        # namespace. The re-attach (the same call as the plan's attach) finds it there.
        yield self.stop_container()
        yield self.start_container()
        started = self.s.reactor.seconds()
        yield self.run_steps([attach])
        yield self.listening("monitor_follows_restarted_container", ssid, started)

        # The undo of the attach (an install failing after it): taken from the container that still runs.
        started = self.s.reactor.seconds()
        yield self.run_steps([attach.undo])
        node, inside, initial = yield self.where()
        left = yield in_thread(harness.thd_wireless_interfaces, NODE_NS)
        self.checks.record("monitor_undo_takes_radio_from_running_container",
                           node and not inside and not initial and not any(
                               i["type"] == "monitor" for i in left.values()),
                           f"in {self.s.reactor.seconds() - started:.1f} s; {PHY} in node/container/initial ns: "
                           f"{node}/{inside}/{initial}; node's Wi-Fi interfaces {left}")

        # Given again, then the chute is removed: its container goes, then the plan's teardown steps.
        yield self.run_steps([attach])
        yield self.stop_container()
        started = self.s.reactor.seconds()
        steps = network_plans.teardown(net)
        yield self.run_steps(steps)
        node, inside, initial = yield self.where()
        left = yield in_thread(harness.thd_wireless_interfaces, NODE_NS)
        self.checks.record("monitor_radio_back_after_removal",
                           [s.action for s in steps] == ["release_radio"] and node and not initial and not any(
                               i["type"] == "monitor" for i in left.values()),
                           f"{len(steps)} step(s) in {self.s.reactor.seconds() - started:.1f} s; {PHY} in node/"
                           f"initial ns: {node}/{initial}; node's Wi-Fi interfaces {left}")

    @defer.inlineCallbacks
    def clean_up(self):
        if self.parked is not None:
            yield self.stop_container()
