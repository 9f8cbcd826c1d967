"""What a node lets a chute have: the one pure policy that the API (at once) and the change handler (at
run time) both apply.

- Capabilities: all are dropped; DEFAULT_CAPABILITIES plus what ``requests.capabilities`` names are given
  back. NET_BIND_SERVICE stays in the default set: it only lets a process bind ports below 1024 inside the
  chute's own network namespace (what reaches the host is decided by port-bindings, below), and engines
  older than 20.10 do not lower ``ip_unprivileged_port_start`` in containers, so without it a web server
  on port 80 inside its container, as in ParaDrop's examples, would fail to start there.
- Memory: a service without a limit gets the node's default; a limit below MIN_MEMORY (``"0"`` once meant
  unlimited) is refused, because silently replacing what a chute asked for would surprise its author.
- Host ports: those of the node's own services (its API, ssh, DNS, DHCP) are refused; other ports below
  1024 only while the host config allows it (``system.chutePrivilegedPorts``, on by default).
"""
import dataclasses
from typing import Dict, Tuple

from pdserver.chutes.spec import ChuteSpec, ServiceSpec, SpecError

DEFAULT_CAPABILITIES = ("NET_BIND_SERVICE",)
MIN_MEMORY = 4 * 1024 * 1024
DEFAULT_MEMORY = 256 * 1024 * 1024
NODE_PORTS = {22: "ssh", 53: "DNS", 67: "DHCP", 68: "DHCP"}


@dataclasses.dataclass(frozen=True)
class NodePolicy:
    api_port: int
    privileged_ports: bool = True
    default_memory: int = DEFAULT_MEMORY

    @classmethod
    def from_config(cls, hostconfig: dict, api_port: int, default_memory: int = DEFAULT_MEMORY) -> "NodePolicy":
        system = hostconfig.get("system") or {}
        return cls(api_port, bool(system.get("chutePrivilegedPorts", True)), default_memory)


@dataclasses.dataclass(frozen=True)
class Grant:
    """What one service runs with."""
    capabilities: Tuple[str, ...]
    memory: int


def requested_capabilities(spec: ChuteSpec, service: ServiceSpec) -> Tuple[str, ...]:
    """``requests.capabilities`` of a service, as validated in the description."""
    requests = (spec.raw.get("services", {}).get(service.name) or {}).get("requests") or {}
    return tuple(requests.get("capabilities") or ())


def grants(spec: ChuteSpec, policy: NodePolicy) -> Dict[str, Grant]:
    """Service name -> Grant. Never refuses: recreating an installed chute applies it as it stands."""
    out = {}
    for svc in spec.services:
        capabilities = tuple(sorted(set(DEFAULT_CAPABILITIES) | set(requested_capabilities(spec, svc))))
        memory = svc.memory if svc.memory is not None and svc.memory >= MIN_MEMORY else policy.default_memory
        out[svc.name] = Grant(capabilities, memory)
    return out


def check(spec: ChuteSpec, policy: NodePolicy) -> Dict[str, Grant]:
    """The grants of a chute the node accepts; SpecError naming the field of the first thing it refuses."""
    reserved = {**NODE_PORTS, policy.api_port: "the node's Edge API"}
    for svc in spec.services:
        prefix = f"services.{svc.name}.requests"
        if svc.memory is not None and svc.memory < MIN_MEMORY:
            raise SpecError(f"memory must be at least 4M ({MIN_MEMORY} bytes); leave it out for the node's "
                            f"default of {policy.default_memory} bytes", f"{prefix}.memory")
        for i, binding in enumerate(svc.port_bindings):
            field = f"{prefix}.port-bindings[{i}].external"
            if binding.external in reserved:
                raise SpecError(f"host port {binding.external} is used by the node ({reserved[binding.external]})"
                                f"; choose another", field)
            if binding.external < 1024 and not policy.privileged_ports:
                raise SpecError(f"host ports below 1024 are not allowed on this node (host config "
                                f"system.chutePrivilegedPorts is off); {binding.external} was asked", field)
    return grants(spec, policy)
