"""The chute model: paradrop.yaml parsed, converted from the legacy form, validated, normalised.

Everything here is pure: a ChuteSpec is frozen data that plans are generated from.
"""
import dataclasses
import re
from typing import List, Optional, Tuple, Union

import yaml

from pdserver.chutes.schema import CHUTE
from pdserver.errors import InvalidInput
from pdserver.validation import SchemaError, check

LEGACY_KEYS = {"type", "use", "image", "command", "config"}


class SpecError(InvalidInput):
    """A chute description we cannot accept; ``field`` is the dotted path of the culprit."""

    code = "invalid_chute"


@dataclasses.dataclass(frozen=True)
class PortBinding:
    external: int
    internal: int
    protocol: str = "tcp"


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
    interfaces: Tuple[str, ...] = ()


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


def convert_legacy(data: dict) -> dict:
    """ParaDrop's single-service form (type/use/command/config at the top) as one service 'main'."""
    if "services" in data or not (LEGACY_KEYS & set(data)):
        return data
    config = data.get("config") or {}
    if not isinstance(config, dict):
        raise SpecError("config must be a mapping", "config")
    service = {"type": data.get("type", "light")}
    image = data.get("use", data.get("image"))
    if image is not None:
        service["image"] = {"python2": "python3"}.get(image, image)
    if "command" in data:
        service["command"] = data["command"]
    if config.get("environment"):
        service["environment"] = config["environment"]
    bindings = (config.get("host_config") or {}).get("port_bindings") or {}
    if bindings:
        service["requests"] = {"port-bindings": [
            {"internal": int(str(k).split("/")[0]), "external": int(v)} for k, v in bindings.items()]}
    out = {k: v for k, v in data.items() if k not in LEGACY_KEYS}
    out["services"] = {"main": service}
    web = config.get("web")
    if isinstance(web, dict) and "port" in web:
        out["web"] = {"service": "main", "port": web["port"]}
    return out


def load_yaml(text: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise SpecError(f"paradrop.yaml is not valid YAML: {e}", "paradrop.yaml") from None
    if not isinstance(data, dict):
        raise SpecError("paradrop.yaml must hold a mapping", "paradrop.yaml")
    return data


def validate(data: dict) -> dict:
    """The converted, schema-checked description; SpecError names the first bad field."""
    data = convert_legacy(data)
    try:
        check(data, CHUTE)
    except SchemaError as e:
        raise SpecError(e.message, e.field) from None
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
    return data


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
            healthcheck=s.get("healthcheck"), interfaces=tuple(sorted(s.get("interfaces") or {}))))
    web = data.get("web") or {}
    return ChuteSpec(
        name=data["name"], version=str(data["version"]), description=data.get("description", ""),
        environment=_env(data.get("environment")), services=tuple(services),
        web_service=(web.get("service") or services[0].name) if web else None,
        web_port=web.get("port"), raw=data)

