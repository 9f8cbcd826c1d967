"""The real-radio scenario, run by the QEMU guest's python3 (tools/wifi-vm/run; tests/wifi/test_wifi_vm.py).

The guest has two mac80211_hwsim radios (phy0, phy1). Our code brings up the wifi-ap of tests/wifi/paradrop.yaml
as the node does: the chute spec parser reads the file, the network plan names the bridge, the AP interface and
the subnet, pdserver.sysconfig.netlink makes the bridge and the AP interface on the radio, .hostapd and .dnsmasq
render the configs and the Supervisor runs hostapd (nl80211, WPA2-PSK) and dnsmasq. The harness plays the
client: wpa_supplicant on phy1, moved into its own network namespace so every packet crosses the simulated air,
and busybox udhcpc.
Each check prints "PASS name" or "FAIL name: why"; the exit status is 0 only when all pass.
"""
import ipaddress
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from twisted.internet import defer, task, threads
from twisted.logger import globalLogBeginner, textFileLogObserver

from pdserver.chutes import spec as chute_spec
from pdserver.chutes.naming import ChuteNames
from pdserver.execution import network_plans
from pdserver.sysconfig import dnsmasq, hostapd, netlink
from pdserver.sysconfig.supervisor import ChildSpec, Supervisor

HERE = Path(__file__).resolve().parent
STATE = Path("/run/pd")
STA_NS = "sta"
STA_IF = "wlan1"
NEW_SSID = "ParaDrop renamed"
IP = "/usr/bin/ip"  # full paths: the guest's busybox has applets of the same names
IW = "/usr/sbin/iw"
UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  bound|renew) /usr/bin/ip addr flush dev "$interface"; /usr/bin/ip addr add "$ip/${mask:-24}" dev "$interface" ;;
esac
exit 0
"""


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


def thd_run(*argv, netns=None, check=True):
    if netns is not None:
        argv = (IP, "netns", "exec", netns) + argv
    done = subprocess.run(argv, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stdout.strip()}")
    return done.stdout


def run(*argv, **kwargs):
    return threads.deferToThread(thd_run, *argv, **kwargs)


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


def chute_network():
    """The scenario's chute network, planned as the node plans it on a host with one nl80211 radio."""
    data = chute_spec.validate(chute_spec.load_yaml((HERE / "paradrop.yaml").read_text()))
    chute = chute_spec.build(data)
    facts = network_plans.NetworkFacts(radios=(network_plans.Radio(id="phy0", channel=6),))
    assigned = network_plans.assign(facts, chute, {}, [])
    [net] = network_plans.networks(ChuteNames("wifi-vm"), facts, chute, assigned)
    return net


def thd_make_host_side(net):
    """As the node does: the bridge with the gateway address, and an AP interface on the radio."""
    netlink.thd_ensure_bridge(net.bridge, ipaddress.IPv4Interface(net.gateway))
    netlink.thd_ensure_ap_interface(net.radio.id, net.ap_device)
    return {d["name"]: d for d in netlink.thd_devices()}


def thd_make_station():
    """phy1 into its own namespace (iw moves a phy by the pid of a process inside), then wpa_supplicant on it."""
    thd_run(IP, "netns", "add", STA_NS)
    parked = subprocess.Popen([IP, "netns", "exec", STA_NS, "sleep", "100000"])
    deadline = time.monotonic() + 10
    while not _same_netns(parked.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    thd_run(IW, "phy", "phy1", "set", "netns", str(parked.pid))
    thd_run(IP, "link", "set", "lo", "up", netns=STA_NS)
    return parked


def _same_netns(pid):
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{STA_NS}").st_ino
    except FileNotFoundError:
        return False


def station_config(ssid, key):
    return (f"ctrl_interface=/run/wpa_supplicant\nnetwork={{\n    ssid={ssid.encode().hex()}\n"
            f"    psk=\"{key}\"\n    key_mgmt=WPA-PSK\n    proto=RSN\n    pairwise=CCMP\n    group=CCMP\n}}\n")


def thd_station_status():
    status = thd_run("wpa_cli", "-i", STA_IF, "status", netns=STA_NS, check=False)
    return dict(line.split("=", 1) for line in status.splitlines() if "=" in line)


def thd_scan_sees(ssid):
    thd_run("wpa_cli", "-i", STA_IF, "scan", netns=STA_NS, check=False)
    results = thd_run("wpa_cli", "-i", STA_IF, "scan_results", netns=STA_NS, check=False)
    return any(line.split("\t")[-1] == ssid for line in results.splitlines()[1:])


def thd_station_address():
    out = thd_run(IP, "-4", "-o", "addr", "show", "dev", STA_IF, netns=STA_NS)
    return out.split()[3].split("/")[0] if out.strip() else None


@defer.inlineCallbacks
def scenario(reactor, checks):
    net = chute_network()
    wireless = net.interface.wireless_options()
    checks.record("chute_planned", net.ap_device and net.radio.id == "phy0",
                  f"{net.key}: AP {net.ap_device} on {net.radio.id}, bridge {net.bridge}, subnet {net.subnet}")
    conf_dir, ctrl_dir, local_dir = STATE / "sysconfig", STATE / "run/hostapd", STATE / "run/ctrl"
    for path in (conf_dir, ctrl_dir, local_dir, STATE / "pids"):
        path.mkdir(parents=True, exist_ok=True)
    devices = yield threads.deferToThread(thd_make_host_side, net)
    checks.record("host_side_made", devices.get(net.bridge, {}).get("kind") == "bridge"
                  and devices.get(net.ap_device, {}).get("kind") == "wifi",
                  f"{[(n, d['kind']) for n, d in sorted(devices.items())]}")

    ap = hostapd.ApConfig(interface=net.ap_device, ssid=wireless["ssid"], ctrl_dir=ctrl_dir, driver="nl80211",
                          key=wireless["key"], channel=net.radio.channel, hwmode=net.radio.hwmode, bridge=net.bridge)
    leases = conf_dir / f"{net.bridge}.leases"
    dhcp = net.interface.dhcp
    dhcp_cfg = dnsmasq.DhcpConfig(interface=net.bridge, address=ipaddress.IPv4Interface(net.gateway),
                                  start=dhcp.start, limit=dhcp.limit, leasetime=dhcp.leasetime, lease_file=leases)
    ap_conf, dhcp_conf = conf_dir / f"{net.ap_child()}.conf", conf_dir / f"{net.dhcp_child()}.conf"
    ap_conf.write_text(hostapd.render(ap))
    dhcp_conf.write_text(dnsmasq.render(dhcp_cfg))

    supervisor = Supervisor(reactor, STATE / "pids")
    supervisor.startService()
    control = hostapd.HostapdControl(reactor, str(ap.ctrl_path), local_dir)
    parked = wpa = None
    try:
        yield supervisor.ensure(ChildSpec(net.ap_child(), tuple(hostapd.argv(ap_conf))))
        yield supervisor.ensure(ChildSpec(net.dhcp_child(), tuple(dnsmasq.argv(dhcp_conf))))
        status = yield wait_for(reactor, lambda: control.status().addCallback(
            lambda s: s if s.get("state") == "ENABLED" else None), 30)
        checks.record("ap_enabled", bool(status), f"ssid {status.get('ssid')!r}" if status else "never ENABLED")

        parked = yield threads.deferToThread(thd_make_station)
        sta_conf = Path("/run/station.conf")
        sta_conf.write_text(station_config(wireless["ssid"], wireless["key"]))
        wpa = subprocess.Popen([IP, "netns", "exec", STA_NS, "wpa_supplicant", "-D", "nl80211", "-i", STA_IF,
                                "-c", str(sta_conf)], stdout=open("/tmp/wpa_supplicant.log", "w"),
                               stderr=subprocess.STDOUT)
        started = reactor.seconds()
        state = yield wait_for(reactor, lambda: threads.deferToThread(thd_station_status).addCallback(
            lambda s: s if s.get("wpa_state") == "COMPLETED" else None), 60)
        checks.record("station_associated", bool(state),
                      f"{state.get('key_mgmt')} {state.get('pairwise_cipher')} in "
                      f"{reactor.seconds() - started:.1f} s" if state else "wpa_state never COMPLETED")
        sta_mac = (state or {}).get("address", "")

        script = Path("/run/udhcpc.script")
        script.write_text(UDHCPC_SCRIPT)
        script.chmod(0o755)
        started = reactor.seconds()
        yield run("/usr/bin/busybox", "udhcpc", "-i", STA_IF, "-n", "-q", "-f", "-t", "10", "-T", "1", "-s",
                  str(script), netns=STA_NS, check=False)
        sta_ip = yield threads.deferToThread(thd_station_address)
        in_subnet = sta_ip is not None and ipaddress.IPv4Address(sta_ip) in ipaddress.IPv4Network(net.subnet)
        checks.record("lease_obtained", in_subnet, f"{sta_ip} in {net.subnet} in {reactor.seconds() - started:.1f} s")

        pinged = yield run("ping", "-c", "2", "-W", "2", net.gateway.split("/")[0], netns=STA_NS, check=False)
        checks.record("ping_gateway_over_the_air", " 0% packet loss" in pinged, pinged.strip().splitlines()[-1]
                      if pinged.strip() else "no output")

        stations = yield control.stations()
        listed = [s for s in stations if s["mac"] == sta_mac]
        checks.record("station_listed_by_hostapd", bool(listed) and "AUTHORIZED" in listed[0].get("flags", ""),
                      f"{sta_mac} in {[s['mac'] for s in stations]}")

        found = yield threads.deferToThread(dnsmasq.thd_read_leases, leases)
        checks.record("lease_listed", any(lease.mac == sta_mac and lease.ip == sta_ip for lease in found),
                      f"{[(lease.mac, lease.ip) for lease in found]}")

        yield control.set_ssid(NEW_SSID)
        status = yield control.status()
        checks.record("ssid_change_read_back", status.get("ssid") == NEW_SSID, f"{status.get('ssid')!r}")
        seen = yield wait_for(reactor, lambda: threads.deferToThread(thd_scan_sees, NEW_SSID), 30, interval=1.0)
        checks.record("ssid_change_seen_by_station_scan", bool(seen), NEW_SSID)
    finally:
        control.close()
        if wpa is not None:
            wpa.terminate()
        if parked is not None:
            parked.kill()
        yield supervisor.stopService()
    checks.record("children_stopped", not any(c.running for c in supervisor.children().values()), "")


def main(reactor):
    globalLogBeginner.beginLoggingTo([textFileLogObserver(open("/tmp/scenario.log", "w"))], redirectStandardIO=False)
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

    d = scenario(reactor, checks)
    d.addCallbacks(report, crashed)
    return d


if __name__ == "__main__":
    sys.exit(task.react(main))
