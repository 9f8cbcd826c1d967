"""The real-radio scenario, run by the QEMU guest's python3 (tools/wifi-vm/run; tests/wifi/test_wifi_vm.py).

The guest has three mac80211_hwsim radios (phy0, phy1, phy2) and 802.1Q. The node's own configurator does the work, as
on a node: the chute of tests/wifi/paradrop.yaml (a WPA2 access point and a network on VLAN 42 of the LAN port)
is planned by pdserver.execution.network_plans, and its setup, attach and teardown steps run through the
executor with pdserver.execution.network_actions on pdserver.sysconfig.host_network.HostNetwork and the
Supervisor (hostapd on an AP interface of phy0, dnsmasq on each bridge). The guest has no Docker: a process in
its own namespace is the service's container (tests/wifi/guest_harness.py). The harness plays the clients: a
wpa_supplicant station on phy1 in its own namespace (every packet crosses the simulated air), and a LAN switch
with a client tagged with VLAN 42 and an untagged one. Then a second chute is given phy2 in monitor mode and
hears the access point (tests/wifi/guest_monitor.py).
Each check prints "PASS name" or "FAIL name: why"; the exit status is 0 only when all pass.
"""
import ipaddress
import os
import signal
import subprocess
import sys
import traceback
from pathlib import Path

from twisted.internet import defer, task, threads
from twisted.logger import Logger, globalLogBeginner, textFileLogObserver

from pdserver.chutes import spec as chute_spec
from pdserver.chutes.naming import ChuteNames
from pdserver.execution import network_plans
from pdserver.execution.executor import Executor
from pdserver.execution.network_actions import NetworkActions
from pdserver.sysconfig.host_network import HostNetwork
from pdserver.sysconfig.supervisor import Supervisor
from tests.wifi import guest_harness as harness
from tests.wifi import guest_monitor

HERE = Path(__file__).resolve().parent
STATE = Path("/run/pd")
CHUTE_NS = "chute"
STA_NS, STA_PHY, STA_IF = "sta", "phy1", "wlan1"
LAN = "lan0"
LAN_ADDRESS = "192.168.1.1/24"  # the LAN port's own (untagged) network, as lan.ipaddr gives a node
UNTAGGED_ADDRESS = "192.168.1.20/24"
TAGGED_NS, UNTAGGED_NS = "tagged", "untagged"
NEW_SSID = "ParaDrop renamed"
DEPLOYMENT = 1
log = Logger()


class Checks:
    def __init__(self):
        self.passed, self.failed = 0, 0

    def record(self, name, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"PASS {name}{': ' + detail if detail else ''}", flush=True)
        else:
            self.failed += 1
            print(f"FAIL {name}: {detail}", flush=True)
        return ok


def in_thread(f, *args, **kwargs):
    return threads.deferToThread(f, *args, **kwargs)


@defer.inlineCallbacks
def wait_for(reactor, condition, timeout, interval=0.1):
    """Poll `condition` (returns a value or a Deferred of one) until it is truthy; the last value otherwise."""
    deadline = reactor.seconds() + timeout
    while True:
        try:
            value = yield defer.maybeDeferred(condition)
        except Exception as e:  # not there yet: a socket not made, a program still starting
            value = None
            last_error = e
        else:
            last_error = None
        if value or reactor.seconds() >= deadline:
            if not value and last_error is not None:
                print(f"  (last error: {last_error})", flush=True)
            return value
        yield task.deferLater(reactor, interval, lambda: None)


def plan():
    """The chute's networks as the node plans them on a host with nl80211 radios (one for the access point, one
    for the monitor chute) and a LAN port."""
    data = chute_spec.validate(chute_spec.load_yaml((HERE / "paradrop.yaml").read_text()))
    chute = chute_spec.build(data)
    facts = network_plans.NetworkFacts(lan=LAN, radios=(network_plans.Radio(id="phy0", channel=6),
                                                        network_plans.Radio(id=guest_monitor.PHY, channel=6)),
                                       reserved=(str(ipaddress.IPv4Interface(LAN_ADDRESS).network),))
    assigned = network_plans.assign(facts, chute, {}, [])
    names = ChuteNames("wifi-vm")
    nets = {net.interface.type: net for net in network_plans.networks(names, facts, chute, assigned)}
    return names, facts, chute, nets, assigned


def host(address):
    return address.split("/")[0]


def devices():
    """name -> (kind, master) of the guest's links, by iproute2 (not by the code under test)."""
    out = {}
    for line in harness.thd_run(harness.IP, "-o", "-d", "link", "show").splitlines():
        words = line.split()
        name = words[1].rstrip(":").split("@")[0]
        master = words[words.index("master") + 1] if "master" in words else None
        kind = next((k for k in ("bridge", "vlan", "veth") if f" {k} " in f" {line} "), "other")
        out[name] = (kind, master)
    return out


class Scenario:
    def __init__(self, reactor, checks):
        self.reactor = reactor
        self.checks = checks
        self.names, self.facts, self.chute, self.nets, assigned = plan()
        self.wifi, self.vlan = self.nets["wifi-ap"], self.nets["vlan"]
        self.supervisor = Supervisor(reactor, STATE / "pids")
        self.network = HostNetwork(reactor, in_thread, self.supervisor, STATE)
        self.engine = harness.ProcessEngine()
        self.executor = Executor(NetworkActions(self.network, self.engine).actions())
        self.journal = harness.Journal(log)
        self.container = self.names.container(self.chute.name, "main", DEPLOYMENT)
        self.parked = {}
        self.baseline = {}
        self.lan_clients = {}
        self.sta_mac = self.sta_ip = None
        self._control = None
        self.wpa = None
        self.monitor = guest_monitor.MonitorScenario(self, assigned, STATE)

    def run_steps(self, steps):
        return self.executor.run(steps, self.journal)

    def control(self):
        """One control client for the whole run: it must find hostapd again after hostapd restarts."""
        if self._control is None:
            self._control = self.network.access_point(self.wifi.ap_child())
        return self._control

    def close_control(self):
        if self._control is not None:
            self._control.close()
            self._control = None

    @defer.inlineCallbacks
    def run(self):
        wifi, vlan = self.wifi, self.vlan
        self.checks.record(
            "chute_planned", wifi.radio.id == "phy0" and wifi.host_link and vlan.host_link,
            f"{wifi.key}: AP {wifi.ap_device} on {wifi.radio.id}, bridge {wifi.bridge}, {wifi.subnet}; "
            f"{vlan.key}: VLAN {vlan.interface.vlan_id} {vlan.host_link} on {LAN}, bridge {vlan.bridge}, "
            f"{vlan.subnet}")
        yield self.make_clients()
        self.baseline = yield in_thread(devices)
        self.supervisor.startService()
        try:
            yield self.set_up()
            yield self.station_joins()
            yield self.vlan_clients()
            yield self.plan_again()
            yield self.hostapd_killed()
            yield self.ssid_change()
            yield self.monitor.run(NEW_SSID)
        finally:
            self.close_control()
            if self.wpa is not None:
                self.wpa.terminate()
            try:
                yield self.tear_down()
            finally:
                yield self.supervisor.stopService()
                yield self.monitor.clean_up()
                yield in_thread(guest_monitor.thd_remove_node_namespace)
                for netns in (STA_NS, CHUTE_NS):
                    yield in_thread(harness.thd_unpark, self.parked.get(netns), netns)
                yield in_thread(harness.thd_remove_lan, LAN, (TAGGED_NS, UNTAGGED_NS))

    @defer.inlineCallbacks
    def make_clients(self):
        self.parked[STA_NS] = yield in_thread(harness.thd_make_station, STA_NS, STA_PHY)
        yield in_thread(guest_monitor.thd_make_node_namespace)
        self.lan_clients = yield in_thread(harness.thd_make_lan, LAN, {TAGGED_NS: vlan_id(self.vlan),
                                                                      UNTAGGED_NS: None})
        yield in_thread(harness.thd_run, harness.IP, "addr", "add", LAN_ADDRESS, "dev", LAN)
        yield in_thread(harness.thd_run, harness.IP, "addr", "add", UNTAGGED_ADDRESS, "dev",
                        self.lan_clients[UNTAGGED_NS], netns=UNTAGGED_NS)

    @defer.inlineCallbacks
    def set_up(self):
        wifi, vlan = self.wifi, self.vlan
        started = self.reactor.seconds()
        steps = [s for net in (wifi, vlan) for s in network_plans.setup(net, self.facts)]
        yield self.run_steps(steps)
        links = yield in_thread(devices)
        made = {wifi.bridge: ("bridge", None), vlan.bridge: ("bridge", None), vlan.host_link: ("vlan", vlan.bridge)}
        phy = harness.thd_run(harness.IW, "dev", wifi.host_link, "info", check=False)
        self.checks.record(
            "plan_set_up", all(links.get(name) == want for name, want in made.items())
            and "type AP" in phy and "wiphy 0" in phy,
            f"{len(steps)} steps in {self.reactor.seconds() - started:.1f} s ({self.journal.timings()}); "
            f"{[(n, links.get(n)) for n in made]}; {wifi.host_link}: {' '.join(phy.split())[:80]}")

        status = yield wait_for(self.reactor, lambda: self.control().status().addCallback(
            lambda s: s if s.get("state") == "ENABLED" else None), 30)
        self.checks.record("ap_enabled", bool(status), f"ssid {status.get('ssid')!r} on {wifi.host_link} in bridge "
                           f"{links.get(wifi.host_link, (None, None))[1]}" if status else "never ENABLED")

        self.parked[CHUTE_NS] = yield in_thread(harness.thd_park, CHUTE_NS)
        self.engine.run(self.container, self.parked[CHUTE_NS].pid)
        yield self.run_steps([network_plans.attach(self.names, net, self.container, DEPLOYMENT)
                              for net in (wifi, vlan)])
        inside = {}
        for net in (wifi, vlan):
            inside[net.interface.name] = yield in_thread(harness.thd_address, CHUTE_NS, net.interface.name)
        self.checks.record("chute_interfaces_attached",
                           inside == {net.interface.name: net.chute_address for net in (wifi, vlan)},
                           f"in the container's namespace: {inside}")

    @defer.inlineCallbacks
    def station_joins(self):
        wifi = self.wifi
        wireless = wifi.interface.wireless_options()
        sta_conf = Path("/run/station.conf")
        sta_conf.write_text(harness.station_config(wireless["ssid"], wireless["key"], 2407 + 5 * wifi.radio.channel))
        self.wpa = subprocess.Popen([harness.IP, "netns", "exec", STA_NS, "wpa_supplicant", "-D", "nl80211", "-i",
                                     STA_IF, "-c", str(sta_conf)], stdout=open("/tmp/wpa_supplicant.log", "w"),
                                    stderr=subprocess.STDOUT)
        started = self.reactor.seconds()
        state = yield self.associated(60)
        self.checks.record("station_associated", bool(state),
                           f"{state.get('key_mgmt')} {state.get('pairwise_cipher')} in "
                           f"{self.reactor.seconds() - started:.1f} s" if state else "wpa_state never COMPLETED")
        self.sta_mac = (state or {}).get("address", "")

        started = self.reactor.seconds()
        sta_ip = yield in_thread(harness.thd_dhcp, STA_NS, STA_IF, 10)
        in_subnet = sta_ip is not None and ipaddress.IPv4Interface(sta_ip).ip in ipaddress.IPv4Network(wifi.subnet)
        self.checks.record("lease_obtained", in_subnet, f"{sta_ip} in {wifi.subnet} in "
                           f"{self.reactor.seconds() - started:.1f} s")
        self.sta_ip = host(sta_ip or "")

        ok, summary = yield in_thread(harness.thd_ping, STA_NS, host(wifi.gateway))
        self.checks.record("ping_gateway_over_the_air", ok, summary)
        ok, summary = yield in_thread(harness.thd_ping, STA_NS, host(wifi.chute_address))
        self.checks.record("station_reaches_chute", ok, f"{host(wifi.chute_address)}: {summary}")

        stations = yield self.control().stations()
        listed = [s for s in stations if s["mac"] == self.sta_mac]
        self.checks.record("station_listed_by_hostapd", bool(listed) and "AUTHORIZED" in listed[0].get("flags", ""),
                           f"{self.sta_mac} in {[s['mac'] for s in stations]}")
        leases = yield self.network.leases(wifi.bridge)
        self.checks.record("lease_listed", any(lease["mac_addr"] == self.sta_mac and lease["ip_addr"] == self.sta_ip
                                               for lease in leases),
                           f"{[(lease['mac_addr'], lease['ip_addr']) for lease in leases]}")

    def associated(self, timeout):
        return wait_for(self.reactor, lambda: in_thread(harness.thd_station_status, STA_NS, STA_IF).addCallback(
            lambda s: s if s.get("wpa_state") == "COMPLETED" else None), timeout)

    @defer.inlineCallbacks
    def vlan_clients(self):
        vlan = self.vlan
        tagged_if, untagged_if = self.lan_clients[TAGGED_NS], self.lan_clients[UNTAGGED_NS]
        untagged = in_thread(self.thd_untagged_probe, untagged_if)  # meanwhile: it waits for no answer
        started = self.reactor.seconds()
        tagged_ip = yield in_thread(harness.thd_dhcp, TAGGED_NS, tagged_if, 10)
        in_subnet = tagged_ip is not None and ipaddress.IPv4Interface(tagged_ip).ip in ipaddress.IPv4Network(
            vlan.subnet)
        tagged_mac = yield in_thread(harness.thd_mac, TAGGED_NS, tagged_if)
        leases = yield self.network.leases(vlan.bridge)
        listed = any(lease["mac_addr"] == tagged_mac for lease in leases)
        self.checks.record("vlan_tagged_client_lease", in_subnet and listed,
                           f"{tagged_if} ({tagged_mac}): {tagged_ip} in {vlan.subnet} in "
                           f"{self.reactor.seconds() - started:.1f} s; leases {[lease['ip_addr'] for lease in leases]}")
        ok, summary = yield in_thread(harness.thd_ping, TAGGED_NS, host(vlan.chute_address))
        self.checks.record("vlan_tagged_client_reaches_chute", ok, f"{host(vlan.chute_address)}: {summary}")

        wire, untagged_ip, untagged_mac = yield untagged
        leases = yield self.network.leases(vlan.bridge)
        self.checks.record("vlan_untagged_client_no_lease",
                           wire and untagged_ip is None and not any(lease["mac_addr"] == untagged_mac
                                                                   for lease in leases),
                           f"wire to {host(LAN_ADDRESS)} {'works' if wire else 'BROKEN'}; DHCP gave {untagged_ip}")

    @defer.inlineCallbacks
    def plan_again(self):
        """Recovery and reconciliation run the same steps again: on a running network they change nothing."""
        before = {name: (c.pid, c.restarts) for name, c in self.supervisor.children().items()}
        links = yield in_thread(devices)
        yield self.run_steps([s for net in (self.wifi, self.vlan) for s in network_plans.setup(net, self.facts)]
                             + [network_plans.attach(self.names, net, self.container, DEPLOYMENT)
                                for net in (self.wifi, self.vlan)])
        after = {name: (c.pid, c.restarts) for name, c in self.supervisor.children().items()}
        links_after = yield in_thread(devices)
        ok, summary = yield in_thread(harness.thd_ping, STA_NS, host(self.wifi.chute_address), 1)
        self.checks.record("plan_again_changes_nothing", before == after and links == links_after and ok,
                           f"children {after}; links {'same' if links == links_after else links_after}; "
                           f"station to chute: {summary}")

    @staticmethod
    def thd_untagged_probe(ifname):
        """The untagged client is on the same wire (it reaches the LAN port's own address) but outside the VLAN:
        (wire works, the address DHCP gave it, its MAC)."""
        wire, _ = harness.thd_ping(UNTAGGED_NS, host(LAN_ADDRESS), 1)
        harness.thd_run(harness.IP, "addr", "flush", "dev", ifname, netns=UNTAGGED_NS)
        return wire, harness.thd_dhcp(UNTAGGED_NS, ifname, 3), harness.thd_mac(UNTAGGED_NS, ifname)

    @defer.inlineCallbacks
    def hostapd_killed(self):
        child = self.wifi.ap_child()
        before = self.supervisor.children()[child]
        os.kill(before.pid, signal.SIGKILL)
        killed = self.reactor.seconds()

        def back():
            now = self.supervisor.children().get(child)
            return now if now and now.running and now.pid != before.pid else None
        now = yield wait_for(self.reactor, back, 10)
        status = yield wait_for(self.reactor, lambda: self.control().status().addCallback(
            lambda s: s if s.get("state") == "ENABLED" else None), 20)
        self.checks.record("hostapd_back_after_kill", bool(now and status),
                           f"pid {before.pid} -> {now.pid if now else None}, restarts {now.restarts if now else '?'}, "
                           f"ENABLED {self.reactor.seconds() - killed:.1f} s after kill -9")

        def listed():
            return self.control().stations().addCallback(
                lambda stations: [s for s in stations if s["mac"] == self.sta_mac and "AUTHORIZED" in s["flags"]])
        again = yield wait_for(self.reactor, listed, 30, interval=0.3)
        ok, summary = yield in_thread(harness.thd_ping, STA_NS, host(self.wifi.chute_address))
        self.checks.record("station_reassociated", bool(again) and ok,
                           f"authorized by the new hostapd {self.reactor.seconds() - killed:.1f} s after kill -9; "
                           f"ping chute: {summary}")

    @defer.inlineCallbacks
    def ssid_change(self):
        control = self.control()
        yield control.set_ssid(NEW_SSID)
        status = yield control.status()
        self.checks.record("ssid_change_read_back", status.get("ssid") == NEW_SSID, f"{status.get('ssid')!r}")
        seen = yield wait_for(self.reactor, lambda: in_thread(harness.thd_scan_sees, STA_NS, STA_IF, NEW_SSID), 30,
                              interval=1.0)
        self.checks.record("ssid_change_seen_by_station_scan", bool(seen), NEW_SSID)

    @defer.inlineCallbacks
    def tear_down(self):
        """As a chute removal: the container stops (its namespace, and the veths into it, go), then the plan's
        teardown steps."""
        started = self.reactor.seconds()
        yield in_thread(harness.thd_unpark, self.parked.pop(CHUTE_NS, None), CHUTE_NS)
        stopped = self.reactor.seconds()
        steps = [s for net in (self.wifi, self.vlan) for s in network_plans.teardown(net)]
        yield self.run_steps(steps)
        ran = self.reactor.seconds()
        baseline = set(self.baseline)
        yield wait_for(self.reactor, lambda: in_thread(devices).addCallback(lambda links: set(links) == baseline), 10)
        left = set((yield in_thread(devices))) ^ baseline
        self.checks.record("teardown_no_link", not left,
                           f"container stopped in {stopped - started:.1f} s, {len(steps)} steps in "
                           f"{ran - stopped:.1f} s "
                           f"({self.journal.timings()}), links gone {self.reactor.seconds() - ran:.1f} s later; "
                           f"differs from before: {sorted(left)}")
        processes = yield in_thread(harness.thd_processes, "hostapd", "dnsmasq")
        self.checks.record("teardown_no_process", not processes and not any(
            c.running for c in self.supervisor.children().values()), f"{processes}")
        files = harness.files_under(STATE)
        self.checks.record("teardown_no_file", not files, f"{files}")


def vlan_id(net):
    return net.interface.vlan_id


def since_boot():
    """(seconds since boot, of them before this process started): the part the kernel, init and imports took."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    start = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    return uptime, start


def main(reactor):
    globalLogBeginner.beginLoggingTo([textFileLogObserver(open("/tmp/scenario.log", "w"))], redirectStandardIO=False)
    uptime, start = since_boot()
    print(f"TIME boot_to_python={start:.1f}s imports={uptime - start:.1f}s", flush=True)
    checks = Checks()
    started = reactor.seconds()

    def report(result):
        print(f"TIME scenario={reactor.seconds() - started:.1f}s", flush=True)
        print(f"{checks.passed} passed, {checks.failed} failed", flush=True)
        if checks.failed or checks.passed == 0:
            for name in ("/tmp/scenario.log", "/tmp/wpa_supplicant.log"):
                print(f"----- {name} (tail) -----")
                print("".join(open(name, errors="replace").readlines()[-40:]) if os.path.exists(name) else "")
            raise SystemExit(1)

    def crashed(failure):
        checks.record("scenario_completed", False, failure.getErrorMessage())
        traceback.print_exception(failure.value)
        return report(None)

    d = defer.maybeDeferred(lambda: Scenario(reactor, checks).run())
    d.addCallbacks(report, crashed)
    return d


if __name__ == "__main__":
    sys.exit(task.react(main))
