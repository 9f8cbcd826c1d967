"""Plans for chute changes: pure functions from the committed record and the wanted chute to steps.

Each plan ends its reversible part with one commit step (``save_chute`` or
``forget_chute``) that records the new state; everything after it only cleans
up what the old state left and is safe to repeat.
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

from pdserver.chutes import naming, policy
from pdserver.chutes.spec import ChuteSpec, ServiceSpec
from pdserver.chutes.store import RUNNING, STOPPED, ChuteRecord
from pdserver.execution import network_plans as net_plans
from pdserver.execution.network_plans import ChuteNetwork, NetworkFacts
from pdserver.execution.steps import Step

BASE_IMAGES = {"busybox": "paradrop/busybox:latest", "python3": "paradrop/python3:latest",
               "node": "paradrop/node:latest"}


@dataclasses.dataclass(frozen=True)
class NodeFacts:
    """What plans need of the node: the names it gives Docker objects and host links, its policy for chutes,
    its host networks, and the installed chutes (whose networks take subnets,
    radios and firewall rules)."""
    names: naming.ChuteNames
    policy: policy.NodePolicy
    network: NetworkFacts = NetworkFacts()
    chutes: Tuple[ChuteRecord, ...] = ()

    def others(self, chute: str) -> List[ChuteRecord]:
        return [r for r in self.chutes if r.name != chute]

    def networks_of(self, record: ChuteRecord) -> List[ChuteNetwork]:
        return net_plans.networks(self.names, self.network, record.spec(), record.networks)

    def firewall(self, chute: str, networks: List[ChuteNetwork]) -> dict:
        """The firewall with ``chute``'s networks as given and every other chute's as recorded."""
        others = [n for r in self.others(chute) for n in self.networks_of(r)]
        return net_plans.firewall_args(self.network, others + list(networks))



def _images(node: NodeFacts, spec: ChuteSpec, deployment: int, source_dir: Optional[str]
            ) -> Tuple[List[Step], Dict[str, str]]:
    steps, refs = [], {}
    for svc in spec.services:
        if svc.type == "image":
            refs[svc.name] = svc.image
            steps.append(Step("ensure_image", {"image": svc.image}, f"making sure image {svc.image} is here",
                              together=True))
            continue
        tag = node.names.image(spec.name, svc.name, spec.version, deployment)
        refs[svc.name] = tag
        args = {"tag": tag, "labels": naming.labels(spec.name, spec.version, deployment, svc.name),
                "source_dir": source_dir, "service_source": svc.source}
        if svc.type == "light":
            args["light"] = {"base": BASE_IMAGES[svc.image], "command": _command(svc.command), "as_root": svc.as_root}
        else:
            args["dockerfile"] = svc.dockerfile
        steps.append(Step("build_image", args, f"building image {tag} for service {svc.name}",
                          undo=Step("remove_image", {"image": tag}, f"removing image {tag}")))
    return steps, refs


def _command(command):
    return list(command) if isinstance(command, tuple) else command


def container_args(node: NodeFacts, spec: ChuteSpec, svc: ServiceSpec, image: str, deployment: int, volume: str
                   ) -> dict:
    environment = {**dict(spec.environment), **dict(svc.environment),
                   "PARADROP_CHUTE_NAME": spec.name, "PARADROP_CHUTE_VERSION": spec.version,
                   "PARADROP_DATA_DIR": "/data"}
    grant = policy.grants(spec, node.policy)[svc.name]
    return {
        "name": node.names.container(spec.name, svc.name, deployment),
        "image": image,
        "command": None if svc.type == "light" else _command(svc.command),
        "environment": environment,
        "labels": naming.labels(spec.name, spec.version, deployment, svc.name),
        "network": node.names.network(spec.name),
        "aliases": [svc.name],
        "port_bindings": [[b.external, b.internal, b.protocol] for b in svc.port_bindings],
        "volumes": {volume: "/data"},
        "cpu_fraction": svc.cpu_fraction,
        "memory": grant.memory,
        "capabilities": list(grant.capabilities),
        "healthcheck": svc.healthcheck,
        "dns": list(svc.dns),
        "chute": spec.name,
        "deployment": deployment,
    }


def _names(node: NodeFacts, record_or_spec, deployment: int) -> List[Tuple[str, str]]:
    spec = record_or_spec if isinstance(record_or_spec, ChuteSpec) else record_or_spec.spec()
    return [(svc.name, node.names.container(spec.name, svc.name, deployment)) for svc in spec.services]


def _create(node: NodeFacts, spec: ChuteSpec, deployment: int, refs: Dict[str, str], volume: str) -> List[Step]:
    steps = []
    for svc in spec.services:
        args = container_args(node, spec, svc, refs[svc.name], deployment, volume)
        steps.append(Step("create_container", args, f"creating service {svc.name}",
                          undo=Step("remove_container", {"name": args["name"]}, f"removing service {svc.name}")))
    return steps


def _start_new(node: NodeFacts, spec: ChuteSpec, deployment: int, refs: Dict[str, str], volume: str,
               networks: List[ChuteNetwork]) -> List[Step]:
    return _create(node, spec, deployment, refs, volume) + _start(node, spec, deployment, networks)


def _attach(node: NodeFacts, spec: ChuteSpec, deployment: int, networks: List[ChuteNetwork],
            commit: bool = False) -> List[Step]:
    return [net_plans.attach(node.names, net, node.names.container(spec.name, net.service, deployment), deployment,
                             commit=commit) for net in networks]


def _start(node: NodeFacts, spec: ChuteSpec, deployment: int, networks: List[ChuteNetwork]) -> List[Step]:
    steps = []
    for svc_name, name in _names(node, spec, deployment):
        steps.append(Step("start_container", {"name": name}, f"starting service {svc_name}",
                          undo=Step("stop_container", {"name": name}, f"stopping service {svc_name}")))
    steps += _attach(node, spec, deployment, networks)
    for svc in spec.services:
        web_port = spec.web_port if spec.web_service == svc.name else None
        steps.append(Step("wait_ready", {"name": node.names.container(spec.name, svc.name, deployment),
                                         "network": node.names.network(spec.name), "web_port": web_port,
                                         "service": svc.name},
                          f"waiting for service {svc.name} to be ready"))
    return steps


def _stop(node: NodeFacts, record: ChuteRecord, undo: bool) -> List[Step]:
    return [Step("stop_container", {"name": name}, f"stopping service {svc}",
                 undo=Step("start_container", {"name": name}, f"starting service {svc} again") if undo else None)
            for svc, name in _names(node, record, record.deployment)]


def _save(new: ChuteRecord, old: Optional[ChuteRecord], description: str) -> Step:
    return Step("save_chute", {"record": new.to_dict()}, description, commit=True,
                undo=Step("restore_chute", {"name": new.name, "record": old.to_dict() if old else None},
                          "restoring the previous chute record"))


def _cleanup(node: NodeFacts, record: ChuteRecord, keep_source: Optional[str] = None) -> List[Step]:
    """Remove the containers, built images and source of one deployment of a chute."""
    spec = record.spec()
    steps = [Step("remove_container", {"name": name}, f"removing old service {svc}")
             for svc, name in _names(node, record, record.deployment)]
    for svc in spec.services:
        if svc.type != "image":
            tag = node.names.image(spec.name, svc.name, spec.version, record.deployment)
            steps.append(Step("remove_image", {"image": tag}, f"removing image {tag}"))
    if record.source_dir and record.source_dir != keep_source:
        steps.append(Step("remove_source", {"path": record.source_dir}, "removing the old project files"))
    return steps


def _adopt(source_dir: Optional[str], current: Optional[str] = None) -> List[Step]:
    """Check the project to build from; a rollback removes an upload, never the installed chute's project
    (an update from the same project, as a restart with new environment variables, reuses it)."""
    if not source_dir:
        return []
    if source_dir == current:
        return [Step("check_source", {"path": source_dir}, "checking the installed project")]
    return [Step("check_source", {"path": source_dir}, "checking the uploaded project",
                 undo=Step("remove_source", {"path": source_dir}, "removing the uploaded project"))]


def _assign(node: NodeFacts, spec: ChuteSpec, current: Dict[str, dict]) -> Dict[str, dict]:
    return net_plans.assign(node.network, spec, current,
                            [a for r in node.others(spec.name) for a in r.networks.values()])


def _firewall(node: NodeFacts, chute: str, new: List[ChuteNetwork], old: List[ChuteNetwork]) -> List[Step]:
    """Apply the firewall with the chute's new networks (undo: with its old ones); nothing when neither has any."""
    if not any(n.bridged for n in new + old):
        return []
    return [Step("apply_firewall", node.firewall(chute, new), "applying the firewall of chute networks",
                 undo=Step("apply_firewall", node.firewall(chute, old), "restoring the firewall"))]


def plan_install(node: NodeFacts, spec: ChuteSpec, deployment: int, source_dir: Optional[str], now: float
                 ) -> List[Step]:
    labels = naming.labels(spec.name, spec.version)
    image_steps, refs = _images(node, spec, deployment, source_dir)
    network, volume = node.names.network(spec.name), node.names.volume(spec.name)
    assigned = _assign(node, spec, {})
    networks = net_plans.networks(node.names, node.network, spec, assigned)
    record = ChuteRecord(spec.name, spec.version, RUNNING, spec.raw, deployment, source_dir, now, now, volume,
                         assigned)
    # The host networks come before the Docker network (which takes 0.1-0.2 s to make): their clients get
    # leases that much sooner. The network and the volume (and an image chute's image check, when nothing
    # comes between) are made together.
    return (_adopt(source_dir) + image_steps + [s for net in networks for s in net_plans.setup(net, node.network)]
            + _firewall(node, spec.name, networks, []) + [
        Step("create_network", {"name": network, "labels": labels}, f"creating network {network}",
             undo=Step("remove_network", {"name": network}, f"removing network {network}"), together=True),
        Step("create_volume", {"name": volume, "labels": labels}, "creating the /data volume",
             undo=Step("remove_volume", {"name": volume}, "removing the /data volume"), together=True),
    ] + _start_new(node, spec, deployment, refs, volume, networks) + [
        _save(record, None, f"recording {spec.name} {spec.version} as installed")])


def _ports(spec: ChuteSpec) -> set:
    return {(b.external, b.protocol) for svc in spec.services for b in svc.port_bindings}


def plan_update(node: NodeFacts, old: ChuteRecord, spec: ChuteSpec, deployment: int, source_dir: Optional[str],
                now: float) -> List[Step]:
    """New version beside the old one, on the old one's /data volume (download-then-kill): the old one
    stops only once the new one is ready and recorded, and after the drain (``drain_old``), so a client that
    moves over when the node reports the new version never finds neither answering. When they would share a
    host port the old one must stop before the new one starts: the new containers are created first, so the
    gap is only the old one's stop and the new one's start."""
    image_steps, refs = _images(node, spec, deployment, source_dir)
    labels = naming.labels(spec.name, spec.version)
    network, volume = node.names.network(spec.name), old.volume
    stop_first = old.state == RUNNING and bool(_ports(old.spec()) & _ports(spec))
    assigned = _assign(node, spec, old.networks)
    networks, old_networks = net_plans.networks(node.names, node.network, spec, assigned), node.networks_of(old)
    record = ChuteRecord(spec.name, spec.version, RUNNING, spec.raw, deployment, source_dir, old.installed, now,
                         volume, assigned)
    steps = _adopt(source_dir, old.source_dir) + image_steps + [
        Step("create_network", {"name": network, "labels": labels}, f"making sure network {network} exists",
             together=True),
        Step("create_volume", {"name": volume, "labels": labels}, "making sure the /data volume exists",
             together=True),
    ] + _network_changes(node, networks, old_networks) + _firewall(node, spec.name, networks, old_networks)
    steps += _create(node, spec, deployment, refs, volume)
    if stop_first:
        steps += _stop(node, old, undo=True)
    # Beside the old version, the new one gets its host interfaces only once the old one is stopped: they
    # carry the same address and MAC address, which two containers on one bridge must not hold at once.
    steps += _start(node, spec, deployment, networks if stop_first else [])
    steps.append(_save(record, old, f"recording {spec.name} {spec.version} as installed"))
    if not stop_first:
        if old.state == RUNNING:
            steps.append(Step("drain_old", {"chute": spec.name},
                              f"letting clients move to {spec.name} {spec.version} before the old one stops"))
        steps += _stop(node, old, undo=False) + _attach(node, spec, deployment, networks)
    kept = {n.host_key for n in networks}
    return steps + _cleanup(node, old, keep_source=source_dir) + [
        s for net in old_networks if net.host_key not in kept for s in net_plans.teardown(net)]


def _network_changes(node: NodeFacts, new: List[ChuteNetwork], old: List[ChuteNetwork]) -> List[Step]:
    """Networks an update brings or changes (a changed one is set up again in place and, on rollback, set
    back up as it was); unchanged ones are left alone, dropped ones go after the commit."""
    before = {n.host_key: n for n in old}
    steps = []
    for net in new:
        previous = before.get(net.host_key)
        if previous == net:
            continue
        if previous is None:
            steps += net_plans.setup(net, node.network)
            continue
        before_steps = net_plans.setup(previous, node.network)
        after_steps = net_plans.setup(net, node.network, undo=False)
        wanted = {step.action for step in after_steps}
        # What the old network had and the new one lacks goes first (a rollback brings it back)...
        steps += net_plans.undone([step for step in before_steps if step.action not in wanted])
        # ...then the new settings, each undone by the old setting of the same piece.
        restore = {step.action: dataclasses.replace(step, undo=None) for step in before_steps}
        for step in after_steps:
            steps.append(dataclasses.replace(step, undo=restore.get(step.action)))
    return steps


def plan_delete(node: NodeFacts, old: ChuteRecord) -> List[Step]:
    network, volume = node.names.network(old.name), old.volume
    old_networks = node.networks_of(old)
    firewall = [Step("apply_firewall", node.firewall(old.name, []), "removing the chute's firewall rules")
                ] if any(n.bridged for n in old_networks) else []
    return _stop(node, old, undo=old.state == RUNNING) + [
        Step("forget_chute", {"name": old.name}, f"removing {old.name} from the installed chutes", commit=True,
             undo=Step("restore_chute", {"name": old.name, "record": old.to_dict()}, "restoring the chute record")),
    ] + _cleanup(node, old) + firewall + [s for net in old_networks for s in net_plans.teardown(net)] + [
        Step("remove_network", {"name": network}, f"removing network {network}"),
        Step("remove_volume", {"name": volume}, "removing the /data volume"),
    ]


def _with_state(record: ChuteRecord, state: str, now: float) -> ChuteRecord:
    return dataclasses.replace(record, state=state, updated=now)


def _releases(node: NodeFacts, record: ChuteRecord, commit: bool = False) -> List[Step]:
    """The radios of a chute's monitor interfaces back home once its containers stopped (a stopped chute keeps
    them assigned; its next start gives them again)."""
    return [net_plans.release(net, commit=commit) for net in node.networks_of(record)
            if not net.bridged and net.radio is not None]


def plan_stop(node: NodeFacts, old: ChuteRecord, now: float) -> List[Step]:
    return _stop(node, old, undo=True) + _releases(node, old) + [
        _save(_with_state(old, STOPPED, now), old, f"recording {old.name} as stopped")]


def plan_start(node: NodeFacts, old: ChuteRecord, now: float) -> List[Step]:
    return _start(node, old.spec(), old.deployment, node.networks_of(old)) + [
        _save(_with_state(old, RUNNING, now), old, f"recording {old.name} as running")]


def plan_restart(node: NodeFacts, old: ChuteRecord, now: float) -> List[Step]:
    return _stop(node, old, undo=old.state == RUNNING) + plan_start(node, old, now)


_REMOVALS = {"containers": "remove_container", "networks": "remove_network", "volumes": "remove_volume",
             "images": "remove_image"}


def _orphans(observed: Dict[str, Dict[str, dict]], wanted: Dict[str, set], kinds) -> List[Step]:
    return [Step(_REMOVALS[kind], {"image" if kind == "images" else "name": name},
                 f"removing orphaned {kind[:-1]} {name}", commit=True)
            for kind in kinds for name in sorted(set(observed[kind]) - wanted[kind])]


def plan_reconcile(node: NodeFacts, records: List[ChuteRecord], observed: Dict[str, Dict[str, dict]],
                   sources: Tuple[List[str], List[str]] = ((), ())) -> List[Step]:
    """Converge the engine on the records: recreate what is missing, start what should run and stop what
    should not, remove orphans. Containers, networks and images under the names of an earlier release are
    orphans too, removed once their replacements exist (they hold no data); volumes are never replaced: a
    chute keeps the /data volume its record names.

    ``observed`` maps "containers" to {name: {"running": bool}}, and "networks", "volumes", "images" to
    {name: {}} for the objects carrying this node's label (dangling layers of a build killed halfway
    included: they carry it too). ``sources`` is (project dirs on disk, dirs that queued changes still
    need): unpacked projects that no record or change uses are removed too. Every step is idempotent and
    committed.
    """
    steps: List[Step] = []
    to_start: List[str] = []
    attach: List[Step] = []
    wanted = {"containers": set(), "networks": set(), "volumes": set(), "images": set()}
    chute_networks = {r.name: node.networks_of(r) for r in records}
    if node.network.host_lan is not None:
        steps += net_plans.host_lan_setup(node.names, node.network.host_lan, undo=False, commit=True)
    for ap in node.network.host_aps:
        steps += net_plans.host_ap_setup(node.names, ap, undo=False, commit=True)
    for record in records:
        for net in chute_networks[record.name]:
            steps += net_plans.setup(net, node.network, undo=False, commit=True)
    if any(n.bridged for nets in chute_networks.values() for n in nets):
        steps.append(Step("apply_firewall", net_plans.firewall_args(
            node.network, [n for nets in chute_networks.values() for n in nets]),
            "applying the firewall of chute networks", commit=True))
    for record in records:
        spec = record.spec()
        if record.state == RUNNING:
            attach += _attach(node, spec, record.deployment, chute_networks[record.name], commit=True)
        else:
            attach += _releases(node, record, commit=True)
        labels = naming.labels(spec.name, spec.version)
        network, volume = node.names.network(spec.name), record.volume
        wanted["networks"].add(network)
        # A volume under the chute's node-scoped name stays too when the record names another: data is
        # never removed on a guess of where it lives.
        wanted["volumes"] |= {volume, node.names.volume(spec.name)}
        if network not in observed["networks"]:
            steps.append(Step("create_network", {"name": network, "labels": labels},
                              f"recreating network {network}", commit=True))
        if volume not in observed["volumes"]:
            steps.append(Step("create_volume", {"name": volume, "labels": labels},
                              f"recreating the /data volume of {spec.name}", commit=True))
        image_steps, refs = _images(node, spec, record.deployment, record.source_dir)
        for svc, image_step in zip(spec.services, image_steps):
            if svc.type != "image":
                wanted["images"].add(refs[svc.name])
            name = node.names.container(spec.name, svc.name, record.deployment)
            wanted["containers"].add(name)
            container = observed["containers"].get(name)
            if container is None:
                if svc.type == "image" or refs[svc.name] not in observed["images"]:
                    steps.append(Step(image_step.action, image_step.args, image_step.description, commit=True))
                steps.append(Step("create_container", container_args(node, spec, svc, refs[svc.name],
                                                                     record.deployment, volume),
                                  f"recreating service {svc.name} of {spec.name}", commit=True))
            running = (container or {}).get("running", False)
            if record.state == RUNNING and not running:
                to_start.append(name)
            elif record.state != RUNNING and running:
                steps.append(Step("stop_container", {"name": name}, f"stopping service {svc.name} of {spec.name}",
                                  commit=True))
    steps += _orphans(observed, wanted, ("containers",))  # first: one may hold a host port a start needs
    if to_start:
        steps.append(Step("start_containers", {"names": to_start}, f"starting {len(to_start)} service(s) together",
                          commit=True))
    steps += attach
    steps += _orphans(observed, wanted, ("images", "networks", "volumes"))
    on_disk, pending = sources
    used = {r.source_dir for r in records if r.source_dir} | set(pending)
    for path in sorted(set(on_disk) - used):
        steps.append(Step("remove_source", {"path": path}, f"removing unused project files {path}", commit=True))
    return steps
