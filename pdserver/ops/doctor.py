"""``pdserver doctor``: what a node can and cannot do on this machine, each check with its result and, when it
does not pass, the fix.

Each check is a small pure function from what a probe found (a value, or the exception the probe raised) to a
``Check``; the probes that look at the machine (``pdserver.ops.machine.MachineProbes``) are injected, so the unit
tests cover every outcome without the machine. A ``fail`` means the node cannot run here (exit status 1); a ``warn`` is
something it cannot do (Wi-Fi, VLANs, usage stats...) and keeps the exit status 0. Only click and the standard
library are imported at ``pdserver --help`` time; the probes import the node's own code when they run.
"""
import dataclasses
import os
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence

import click

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str
    fix: str = ""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- the checks: pure functions of what the probes found ---------------------------------------------------


def check_settings(error: Optional[Exception], config_file: Optional[Path]) -> Check:
    source = str(config_file) if config_file else "defaults and PARADROP_* variables"
    if error is None:
        return Check("settings", OK, f"valid ({source})")
    name = getattr(error, "name", "config")
    where = f"in {config_file} or " if config_file and name != "config" else ""
    return Check("settings", FAIL, str(error),
                 f"correct `{name}` {where}in PARADROP_{name.upper()}" if name != "config"
                 else f"make {config_file} a readable YAML mapping of settings")


def check_state_dir(facts, path: Path) -> Check:
    """``facts``: {exists, writable, mode, open_secrets: {name: mode}} (mode and secrets when it exists), or the
    exception the probe raised."""
    if isinstance(facts, Exception):
        return Check("state dir", FAIL, f"{path}: {facts}", f"make {path} a directory root can write")
    if not facts["writable"]:
        where = path if facts["exists"] else f"{path} (its nearest existing parent)"
        return Check("state dir", FAIL, f"{where} is not writable", "run as root, or choose a writable --state-dir")
    if not facts["exists"]:
        return Check("state dir", OK, f"{path} does not exist yet; the node will create it (mode 0700)")
    mode = facts["mode"]
    problems, fixes = [], []
    if mode & 0o002:
        problems.append(f"{path} is world-writable (mode {mode:04o}): anyone could replace the node's database "
                        f"and secrets")
    elif mode & 0o077:
        problems.append(f"{path} is open to others (mode {mode:04o})")
    if problems:
        fixes.append(f"chmod 700 {path} (the node sets it when it starts) and check who changed its files")
    loose = facts["open_secrets"]
    if loose:
        problems.append("secrets readable by others: " + ", ".join(f"{n} ({m:04o})" for n, m in sorted(loose.items())))
        fixes.append("chmod 600 " + " ".join(str(path / n) for n in sorted(loose)))
    if problems:
        return Check("state dir", WARN, "; ".join(problems), "; ".join(fixes))
    return Check("state dir", OK, f"{path} writable, mode {mode:04o}, secrets 0600")


def check_port(facts, host: str, port: int) -> Check:
    """``facts``: {free, error, pid, process, ours} or the probe's exception."""
    where = f"{host}:{port}"
    if isinstance(facts, Exception):
        return Check("API port", FAIL, f"{where}: {facts}", "choose another --host/--port (settings host, port)")
    if facts["free"]:
        return Check("API port", OK, f"{where} is free" if port else f"{host}: any free port (port 0)")
    if facts.get("ours"):
        return Check("API port", OK, f"{where} is held by the running node of this state dir (pid {facts['pid']})")
    if facts.get("error"):
        return Check("API port", FAIL, f"cannot listen on {where}: {facts['error']}",
                     "choose an address of this machine and a port you may bind (--host, --port)")
    holder = f" by {facts['process']} (pid {facts['pid']})" if facts.get("pid") else ""
    return Check("API port", FAIL, f"{where} is in use{holder}",
                 "stop what holds it, or give the node another port (--port, setting `port`)")


def check_engine(facts, docker_host: str) -> Check:
    """``facts``: {version, api_version} or the probe's exception."""
    if isinstance(facts, Exception):
        if "Permission denied" in str(facts):
            return Check("Docker engine", FAIL, f"no access to {docker_host}: {facts}",
                         "run the node as root (or as a member of the docker group)")
        return Check("Docker engine", FAIL, f"no answer at {docker_host}: {facts}",
                     "start the Docker engine (systemctl start docker, or tools/start-engine in the source tree); "
                     "DOCKER_HOST, when set, must name the engine's socket")
    return Check("Docker engine", OK, f"Docker {facts['version']}, API {facts['api_version']} at {docker_host}")


def check_base_images(found, bases: Dict[str, str]) -> Check:
    """``found``: {base: present} of the light bases ``bases`` ({base: image ref}), the probe's exception, or None
    when the engine does not answer."""
    if found is None or isinstance(found, Exception):
        reason = "the engine does not answer" if found is None else str(found)
        return Check("base images", SKIP, f"not checked: {reason}")
    missing = [base for base in bases if not found.get(base)]
    present = [bases[base] for base in bases if found.get(base)]
    if not missing:
        return Check("base images", OK, ", ".join(present))
    return Check("base images", WARN,
                 f"missing {', '.join(bases[b] for b in missing)}: light chutes on {', '.join(missing)} cannot be "
                 f"installed" + (f" (present: {', '.join(present)})" if present else ""),
                 f"tools/build-base-images {' '.join(missing)} (in the source tree)")


# program -> (needed for, status when missing, Debian package)
PROGRAMS = {
    "dnsmasq": ("DHCP and DNS on chute networks and the host LAN", FAIL, "dnsmasq"),
    "nft": ("the firewall of chute networks", FAIL, "nftables"),
    "hostapd": ("Wi-Fi access points", WARN, "hostapd"),
    "ip": ("network namespaces and Wi-Fi interfaces", WARN, "iproute2"),
}


def check_program(name: str, found) -> Check:
    """``found``: {path, version} of the program on PATH, None when it is not there, or the probe's exception."""
    use, level, package = PROGRAMS[name]
    if isinstance(found, Exception):
        return Check(name, level, f"cannot run {name}: {found}", f"reinstall it: apt-get install {package}")
    if found is None:
        return Check(name, level, f"not found on PATH: no {use}",
                     f"apt-get install {package} (or put {name} on the node's PATH)")
    return Check(name, OK, f"{found['version'] or 'version unknown'} ({found['path']})")


def check_radios(found) -> Check:
    """``found``: the nl80211 radios (phy names) or the probe's exception."""
    fix = "add a Wi-Fi card with an nl80211 (mac80211) driver; without one, a wired port with driver: wired serves"
    if isinstance(found, Exception):
        return Check("radios", WARN, f"cannot list the links: {found}", fix)
    if not found:
        return Check("radios", WARN, "no Wi-Fi radio (nl80211): wifi-ap and monitor chutes cannot run", fix)
    return Check("radios", OK, ", ".join(found))


def check_networkmanager(found) -> Check:
    """``found``: (present, detail) or the probe's exception. Absent is fine: the node works without it."""
    if isinstance(found, Exception):
        return Check("NetworkManager", OK, f"not reachable ({found}): the node works without it")
    present, detail = found
    if present:
        return Check("NetworkManager", OK, "on the system bus: the node marks the interfaces it makes unmanaged")
    return Check("NetworkManager", OK, f"{detail}: the node works without it")


def check_cgroup(found) -> Check:
    """``found``: {"v2_controllers": [...] or None, "v1_controllers": [...]} or the probe's exception."""
    fix = ("boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or mount the cpuacct and memory controllers "
           "of cgroup v1")
    if isinstance(found, Exception):
        return Check("cgroup", WARN, f"cannot read the cgroups: {found}; no CPU and memory usage of chutes", fix)
    v2 = found.get("v2_controllers")
    if v2 is not None and {"cpu", "memory"} <= set(v2):
        return Check("cgroup", OK, "cgroup v2 with the cpu and memory controllers: usage stats of chutes")
    if {"cpuacct", "memory"} <= set(found.get("v1_controllers") or ()):
        return Check("cgroup", OK, "cgroup v1 (cpuacct, memory), no v2 controllers: usage stats of chutes work")
    return Check("cgroup", WARN, "no cpu and memory cgroup controllers: no CPU and memory usage of chutes", fix)


# feature -> (kernel config option, module, status when missing, what needs it)
KERNEL_FEATURES = {
    "nftables": ("NF_TABLES", "nf_tables", FAIL, "the firewall of chute networks"),
    "veth": ("VETH", "veth", FAIL, "the links of chute containers"),
    "bridge": ("BRIDGE", "bridge", FAIL, "chute networks (Docker's and ours)"),
    "802.1Q": ("VLAN_8021Q", "8021q", WARN, "VLAN chutes"),
}


def check_kernel_feature(feature: str, found) -> Check:
    """``found``: {"config": {option: y|m} or None (no kernel config to read), "loaded": [modules],
    "modules": [modules installed] or None}, or the probe's exception."""
    option, module, level, use = KERNEL_FEATURES[feature]
    name = f"kernel: {feature}"
    if isinstance(found, Exception):
        return Check(name, WARN, f"cannot tell: {found}")
    config, modules = found.get("config"), found.get("modules")
    value = None if config is None else config.get(f"CONFIG_{option}")
    if module in (found.get("loaded") or ()) or value == "y":
        return Check(name, OK, "built in" if value == "y" else "module loaded")
    if modules is not None and module in modules:
        return Check(name, OK, "available as a module")
    if value == "m":
        return Check(name, level, f"CONFIG_{option}=m but the module {module} is not installed: no {use}",
                     f"install the kernel's modules (linux-modules for {found.get('release', 'this kernel')})")
    if config is None and modules is None:
        return Check(name, WARN, f"cannot tell (no kernel config or module list to read); {use} need it",
                     f"modprobe {module}, or check CONFIG_{option} in the kernel's config")
    return Check(name, level, f"not in this kernel (CONFIG_{option} is not set): no {use}",
                 f"use a kernel with CONFIG_{option}=y or m")


def exit_status(checks: Iterable[Check]) -> int:
    """1 when the node cannot run here (a check failed); warnings keep 0."""
    return 1 if any(check.status == FAIL for check in checks) else 0


# --- running the probes -----------------------------------------------------------------------------------


async def collect(probes, config_file: Optional[Path], state_dir: Optional[Path]) -> List[Check]:
    """Every check, in the order a person reads them; the probes run concurrently (each may answer a value or a
    Deferred, or raise)."""
    from twisted.internet import defer

    from pdserver import settings as settings_module
    from pdserver.execution.chute_plans import BASE_IMAGES

    try:
        settings, settings_error = probes.settings(config_file, state_dir), None
    except settings_module.SettingsError as e:
        settings, settings_error = settings_module.Settings(**({"state_dir": state_dir} if state_dir else {})), e

    def outcome(function, *args) -> defer.Deferred:
        return defer.maybeDeferred(function, *args).addErrback(lambda failure: failure.value)

    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    pending = {
        "state dir": outcome(probes.state_dir, settings),
        "port": outcome(probes.port, settings.host, settings.port, settings.state_dir),
        "engine": outcome(probes.engine, list(BASE_IMAGES.values())),
        "kernel": outcome(probes.kernel),
        "cgroup": outcome(probes.cgroup),
        "radios": outcome(probes.radios, settings.network_netns),
        "networkmanager": outcome(probes.networkmanager, settings.dbus_system_address),
    }
    pending.update({f"program {name}": outcome(probes.program, name) for name in PROGRAMS})
    found = {key: await d for key, d in pending.items()}
    engine = found["engine"]
    images = None if isinstance(engine, Exception) else {base: engine["images"].get(ref, False)
                                                         for base, ref in BASE_IMAGES.items()}
    return ([check_settings(settings_error, config_file),
             check_state_dir(found["state dir"], settings.state_dir),
             check_port(found["port"], settings.host, settings.port),
             check_engine(engine, docker_host),
             check_base_images(images, BASE_IMAGES)]
            + [check_program(name, found[f"program {name}"]) for name in PROGRAMS]
            + [check_kernel_feature(feature, found["kernel"]) for feature in KERNEL_FEATURES]
            + [check_cgroup(found["cgroup"]), check_radios(found["radios"]),
               check_networkmanager(found["networkmanager"])])


# --- output ---------------------------------------------------------------------------------------------------

_STYLES = {OK: "green", WARN: "yellow", FAIL: "bold red", SKIP: "dim"}


def summary(checks: Sequence[Check]) -> str:
    failed = [c.name for c in checks if c.status == FAIL]
    warned = [c.name for c in checks if c.status == WARN]
    if failed:
        return f"The node cannot run here: {len(failed)} check(s) failed ({', '.join(failed)})."
    return "The node can run here" + (f"; {len(warned)} warning(s) ({', '.join(warned)})." if warned else ".")


def render_table(checks: Sequence[Check], console) -> None:
    """A table of the checks (their texts as plain text: a bracket in a path or an error is no markup)."""
    from rich.table import Table
    from rich.text import Text
    table = Table(title="pdserver doctor")
    for column in ("check", "result", "detail", "fix"):
        table.add_column(column, overflow="fold")
    for check in checks:
        table.add_row(Text(check.name), Text(check.status, style=_STYLES[check.status]), Text(check.detail),
                      Text(check.fix))
    console.print(table)
    console.print(Text(summary(checks)))


def as_json(checks: Sequence[Check]) -> dict:
    return {"ok": exit_status(checks) == 0, "summary": summary(checks), "checks": [c.as_dict() for c in checks]}


@click.command()
@click.option("--state-dir", type=click.Path(path_type=Path), help="The node's state dir (as for `pdserver node`).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML settings file (as for `pdserver node`).")
@click.option("--json", "json_output", is_flag=True, help="One JSON document instead of the table.")
def doctor(state_dir, config_file, json_output):
    """Check what a node can and cannot do on this machine, with the fix for each problem. Exit status 1 when the
    node cannot run here."""
    from twisted.internet import defer, task

    from pdserver.ops.machine import MachineProbes

    async def main(reactor):
        checks = await collect(MachineProbes(reactor), config_file, state_dir)
        if json_output:
            import json
            click.echo(json.dumps(as_json(checks), indent=2))
        else:
            from rich.console import Console
            render_table(checks, Console())
        raise SystemExit(exit_status(checks))

    task.react(lambda reactor: defer.ensureDeferred(main(reactor)))
