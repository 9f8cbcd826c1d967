"""The chute model: paradrop.yaml parsed, converted from the legacy form, validated, normalised.

Everything here is pure: a ChuteSpec is frozen data that plans are generated from.
"""
import dataclasses
import ipaddress
import json
import re
from typing import List, Optional, Tuple, Union

from pdserver import parsing
from pdserver.chutes.schema import CHUTE, LIGHT_BASES, MAX_TEXT
from pdserver.containers.spec import PortBinding  # plain data shared with the engine adapter
from pdserver.errors import InvalidInput
from pdserver.validation import SchemaError, check, show

#: Largest description (as JSON) a node stores: in its chute record and in each change that carries it.
MAX_DESCRIPTION_BYTES = 64 * 1024
MAX_MEMORY = 1024 ** 4
RESERVED_INTERFACES = ("lo", "eth0")


class SpecError(InvalidInput):
    """A chute description we cannot accept; ``field`` is the dotted path of the culprit."""

    code = "invalid_chute"


@dataclasses.dataclass(frozen=True)
class DhcpSpec:
    """ParaDrop's DHCP section: leases from host offset ``start``, ``limit`` addresses, for ``leasetime``."""
    start: int = 100
    limit: int = 100
    leasetime: str = "12h"


@dataclasses.dataclass(frozen=True)
class InterfaceSpec:
    """A network interface the node gives a service (``services.<s>.interfaces.<name>``)."""
    name: str
    type: str
    dhcp: Optional[DhcpSpec] = None
    dns: Tuple[str, ...] = ()
    wireless: Tuple[Tuple[str, object], ...] = ()
    hwmode: Optional[str] = None
    ipv4_network: Optional[str] = None
    vlan_id: Optional[int] = None

    def wireless_options(self) -> dict:
        return dict(self.wireless)


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    name: str
    type: str
    image: Optional[str]
    command: Union[str, Tuple[str, ...], None]
    environment: Tuple[Tuple[str, str], ...]
    port_bindings: Tuple[PortBinding, ...]
    cpu_fraction: Optional[float]
    memory: Optional[int]
    as_root: bool
    source: str = "."
    dockerfile: str = "Dockerfile"
    healthcheck: Optional[dict] = None
    interfaces: Tuple[InterfaceSpec, ...] = ()
    dns: Tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class ChuteSpec:
    name: str
    version: str
    description: str
    environment: Tuple[Tuple[str, str], ...]
    services: Tuple[ServiceSpec, ...]
    web_service: Optional[str]
    web_port: Optional[int]
    raw: dict = dataclasses.field(compare=False, hash=False, repr=False)

    def service(self, name: str) -> ServiceSpec:
        return next(s for s in self.services if s.name == name)


_SIZE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)([KkMmGg]?)[Bb]?$")


def parse_size(value) -> int:
    if isinstance(value, int):
        return value
    number, unit = _SIZE.match(value).groups()
    return int(float(number) * {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}[unit.lower()])


_LEGACY_PORT = re.compile(r"^([0-9]{1,5})(?:/(?:tcp|udp))?$")

#: The keys of ParaDrop's single-service form, at the top and in its ``config`` section.
LEGACY_KEYS = {"type", "use", "image", "command", "config", "summary"}
_LEGACY_CONFIG = {"web", "environment", "host_config", "net"}
_LEGACY_HOST_CONFIG = {"port_bindings", "dns"}


def _mapping(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"{field} must be a mapping", field)
    return value


def _refuse_unknown(mapping: dict, known: set, prefix: str) -> None:
    for key in mapping:
        field = f"{prefix}.{key}"
        if key not in known:
            raise SpecError(f"{field} is not a known field (known: {', '.join(sorted(known))})", field)


def _legacy_bindings(host_config: dict) -> list:
    bindings = host_config.get("port_bindings") or {}
    if not isinstance(bindings, dict):
        raise SpecError("config.host_config.port_bindings must map container ports to host ports",
                        "config.host_config.port_bindings")
    out = []
    for internal, external in bindings.items():
        field = f"config.host_config.port_bindings.{internal}"
        match = _LEGACY_PORT.match(str(internal))
        if match is None or not isinstance(external, (int, str)) or not str(external).isdigit() \
                or len(str(external)) > 5:
            raise SpecError(f"{field}: expected a container port (5000 or 5000/tcp) mapped to a host port", field)
        protocol = "udp" if str(internal).endswith("/udp") else "tcp"
        out.append({"internal": int(match.group(1)), "external": int(external), "protocol": protocol})
    return out


_LEGACY_NET_KEYS = {"type", "intfName", "mode", "dhcp", "ipv4_network", "ssid", "key", "options", "dns", "l3bridge",
                    "requests", "vlan_id"}
_LEGACY_WIRELESS_OPTIONS = {"nasid", "acct_server", "acct_secret", "acct_interval", "hidden", "isolate", "maxassoc"}


def _legacy_interface(key: str, net: dict) -> Tuple[str, dict]:
    """One of ParaDrop's ``config.net`` objects as (interface name, interface object)."""
    prefix = f"config.net.{key}"
    net = _mapping(net, prefix)
    _refuse_unknown(net, _LEGACY_NET_KEYS, prefix)
    kind, mode = net.get("type"), net.get("mode", "ap")
    if kind == "wifi" and mode in ("ap", "monitor"):
        out = {"type": "wifi-ap" if mode == "ap" else "monitor"}
    elif kind in ("vlan", "monitor"):
        out = {"type": kind}
    else:
        raise SpecError(f"{prefix}: type {show(kind)} with mode {show(mode)} is not one this node gives "
                        "(wifi with mode ap or monitor, vlan)", f"{prefix}.type")
    name = net.get("intfName")
    if not isinstance(name, str):
        raise SpecError(f"{prefix}.intfName must name the interface inside the chute (wlan0)", f"{prefix}.intfName")
    dhcp = _mapping(net.get("dhcp"), f"{prefix}.dhcp")
    if dhcp:
        _refuse_unknown(dhcp, {"start", "limit", "leasetime", "lease"}, f"{prefix}.dhcp")
        out["dhcp"] = {("leasetime" if k == "lease" else k): v for k, v in dhcp.items()}
    options = _mapping(net.get("options"), f"{prefix}.options")
    _refuse_unknown(options, _LEGACY_WIRELESS_OPTIONS, f"{prefix}.options")
    wireless = {**{k: net[k] for k in ("ssid", "key") if k in net}, **options}
    if wireless:
        out["wireless"] = wireless
    requests = _mapping(net.get("requests"), f"{prefix}.requests")
    _refuse_unknown(requests, {"hwmode"}, f"{prefix}.requests")
    requirements = {**requests, **({"ipv4_network": net["ipv4_network"]} if "ipv4_network" in net else {})}
    if requirements:
        out["requirements"] = requirements
    for source, target in (("dns", "dns"), ("l3bridge", "l3bridge"), ("vlan_id", "vlan-id")):
        if source in net:
            out[target] = net[source]
    return name, out


def _legacy_interfaces(net) -> dict:
    interfaces = {}
    for key, value in _mapping(net, "config.net").items():
        name, interface = _legacy_interface(str(key), value)
        if name in interfaces:
            raise SpecError(f"config.net.{key}.intfName: interface {show(name)} is named twice",
                            f"config.net.{key}.intfName")
        interfaces[name] = interface
    return interfaces


def _legacy_service(data: dict, config: dict) -> dict:
    """Service 'main': light from a base (``use``), image (``image``), or normal from the root Dockerfile."""
    if "use" in data:
        service = {"type": data.get("type", "light"), "image": data["use"]}
    elif "image" in data:
        service = {"type": data.get("type", "image"), "image": data["image"]}
    else:
        service = {"type": data.get("type", "normal")}
    if "command" in data:
        service["command"] = data["command"]
    if config.get("environment"):
        service["environment"] = config["environment"]
    host_config = _mapping(config.get("host_config"), "config.host_config")
    _refuse_unknown(host_config, _LEGACY_HOST_CONFIG, "config.host_config")
    if host_config.get("dns"):
        service["dns"] = host_config["dns"]
    bindings = _legacy_bindings(host_config)
    if bindings:
        service["requests"] = {"port-bindings": bindings}
    if config.get("net"):
        service["interfaces"] = _legacy_interfaces(config["net"])
    return service


def is_legacy(data: dict) -> bool:
    """ParaDrop's single-service form: no ``services`` (a Dockerfile chute may have nothing but a name)."""
    return "services" not in data


def convert_legacy(data: dict) -> dict:
    """ParaDrop's single-service form as the multi-service form: one service 'main'; ``summary`` becomes the
    description when there is none; a project without ``use`` or ``image`` is built from its root Dockerfile."""
    if not is_legacy(data):
        return data
    config = _mapping(data.get("config"), "config")
    _refuse_unknown(config, _LEGACY_CONFIG, "config")
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    summary = data.get("summary", "")
    if not isinstance(summary, str) or len(summary) > MAX_TEXT:
        raise SpecError(f"summary must be a string of at most {MAX_TEXT} characters", "summary")
    if data.get("summary") and not data.get("description"):
        out["description"] = data["summary"]
    out["services"] = {"main": _legacy_service(data, config)}
    web = _mapping(config.get("web"), "config.web")
    _refuse_unknown(web, {"port"}, "config.web")
    if "port" in web:
        out["web"] = {"service": "main", "port": web["port"]}
    return out


def _check_bases(data: dict, legacy_field: Optional[str]) -> None:
    """Light base names ParaDrop had that this node does not build (python2, old node versions) are named;
    ``legacy_field`` is the top-level key that named the base of a converted legacy description."""
    services = data.get("services")
    for name, service in (services.items() if isinstance(services, dict) else ()):
        if isinstance(service, dict) and service.get("type") == "light":
            image = service.get("image")
            if isinstance(image, str) and image not in LIGHT_BASES:
                field = legacy_field or f"services.{name}.image"
                raise SpecError(f"{field}: this node has no light base {show(image)}; its bases are "
                                f"{', '.join(LIGHT_BASES)}", field)


def load_yaml(text: str, source: str = "paradrop.yaml") -> dict:
    """paradrop.yaml parsed as hostile input (pdserver.parsing: size, depth, alias budget, 64-bit integers)."""
    try:
        data = parsing.load_yaml(text, source)
    except InvalidInput as e:
        raise SpecError(e.message, e.field) from None
    if not isinstance(data, dict):
        raise SpecError(f"{source} must hold a mapping (name, version, services...)", source)
    return data


def _check_size(data: dict) -> None:
    size = len(json.dumps(data))
    if size > MAX_DESCRIPTION_BYTES:
        raise SpecError(f"the description takes {size} bytes as JSON (at most {MAX_DESCRIPTION_BYTES})", None)


def validate(data: dict) -> dict:
    """The converted, schema-checked description; SpecError names the first bad field."""
    if not isinstance(data, dict):
        raise SpecError("a chute description is a mapping (name, version, services...)", None)
    legacy_field = ("use" if "use" in data else "image") if is_legacy(data) else None
    data = convert_legacy(data)
    _check_bases(data, legacy_field)
    try:
        check(data, CHUTE)
    except SchemaError as e:
        raise SpecError(e.message, e.field) from None
    _check_size(data)
    web = data.get("web")
    if web:
        service = web.get("service") or (next(iter(data["services"])) if len(data["services"]) == 1 else None)
        if service not in data["services"]:
            raise SpecError("web.service must name one of the services", "web.service")
    externals = {}
    for name, service in data["services"].items():
        for i, binding in enumerate((service.get("requests") or {}).get("port-bindings", [])):
            key = (binding["external"], binding.get("protocol", "tcp"))
            if key in externals:
                raise SpecError(f"external port {key[0]}/{key[1]} is bound twice",
                                f"services.{name}.requests.port-bindings[{i}].external")
            externals[key] = name
        memory = (service.get("requests") or {}).get("memory")
        if memory is not None and parse_size(memory) > MAX_MEMORY:
            raise SpecError(f"memory {memory} is more than 1024G", f"services.{name}.requests.memory")
        for interface, spec in (service.get("interfaces") or {}).items():
            _check_interface(spec, f"services.{name}.interfaces.{interface}")
    return data


def _check_interface(interface: dict, prefix: str) -> None:
    name = prefix.rsplit(".", 1)[1]
    if name in RESERVED_INTERFACES:
        raise SpecError(f"{prefix}: {name} is taken inside every chute (eth0 is its own network); name it wlan0, "
                        "lan1 or the like", prefix)
    if "l3bridge" in interface:
        raise SpecError(f"{prefix}.l3bridge: ARP-proxy bridging (experimental in ParaDrop) is not available on "
                        "this node; remove it", f"{prefix}.l3bridge")
    if interface.get("type") == "monitor":
        # A radio listening to the air: it has no network of the node (no subnet, DHCP, DNS, SSID or VLAN).
        extra = [k for k in ("dhcp", "dns", "wireless", "vlan-id", "vlan_id") if k in interface] + [
            f"requirements.{k}" for k in ("ipv4_network",) if k in (interface.get("requirements") or {})]
        if extra:
            raise SpecError(f"{prefix}: a monitor interface is a radio listening in monitor mode; it takes no "
                            f"{extra[0]}", f"{prefix}.{extra[0]}")
    if "vlan-id" in interface and "vlan_id" in interface and interface["vlan-id"] != interface["vlan_id"]:
        raise SpecError(f"{prefix}: vlan-id and vlan_id differ", f"{prefix}.vlan-id")
    wanted = (interface.get("requirements") or {}).get("ipv4_network")
    if wanted is not None:
        field = f"{prefix}.requirements.ipv4_network"
        try:
            network = ipaddress.IPv4Network(wanted)
        except ValueError as e:
            raise SpecError(f"{field}: {show(wanted)} is not a network in slash notation ({e})", field) from None
        if not 16 <= network.prefixlen <= 29:
            raise SpecError(f"{field}: ask for a network of /16 to /29, not /{network.prefixlen}", field)
        dhcp = interface.get("dhcp") or {}
        if dhcp and dhcp.get("start", 100) + dhcp.get("limit", 100) - 1 >= network.num_addresses - 1:
            raise SpecError(f"{prefix}.dhcp: start + limit run past the end of {network}", f"{prefix}.dhcp")


def _interface(name: str, data: dict) -> InterfaceSpec:
    dhcp = data.get("dhcp")
    requirements = data.get("requirements") or {}
    return InterfaceSpec(
        name=name, type=data["type"], dhcp=None if dhcp is None else DhcpSpec(**dhcp),
        dns=tuple(data.get("dns") or ()), wireless=tuple(sorted((data.get("wireless") or {}).items())),
        hwmode=requirements.get("hwmode"), ipv4_network=requirements.get("ipv4_network"),
        vlan_id=data.get("vlan-id", data.get("vlan_id")))


def _env(mapping) -> Tuple[Tuple[str, str], ...]:
    return tuple(sorted((str(k), str(v).lower() if isinstance(v, bool) else str(v))
                        for k, v in (mapping or {}).items()))


def build(data: dict) -> ChuteSpec:
    """Validate and normalise a description (a dict from paradrop.yaml or a JSON body)."""
    data = validate(data)
    services: List[ServiceSpec] = []
    for name, s in sorted(data["services"].items()):
        requests = s.get("requests") or {}
        command = s.get("command")
        services.append(ServiceSpec(
            name=name, type=s["type"], image=s.get("image"),
            command=tuple(command) if isinstance(command, list) else command,
            environment=_env(s.get("environment")),
            port_bindings=tuple(PortBinding(b["external"], b["internal"], b.get("protocol", "tcp"))
                                for b in requests.get("port-bindings", [])),
            cpu_fraction=requests.get("cpu-fraction"),
            memory=parse_size(requests["memory"]) if "memory" in requests else None,
            as_root=bool(requests.get("as-root", False)),
            source=s.get("source", "."), dockerfile=s.get("dockerfile", "Dockerfile"),
            healthcheck=s.get("healthcheck"),
            interfaces=tuple(_interface(n, i) for n, i in sorted((s.get("interfaces") or {}).items())),
            dns=tuple(s.get("dns") or ())))
    web = data.get("web") or {}
    return ChuteSpec(
        name=data["name"], version=str(data["version"]), description=data.get("description", ""),
        environment=_env(data.get("environment")), services=tuple(services),
        web_service=(web.get("service") or services[0].name) if web else None,
        web_port=web.get("port"), raw=data)

