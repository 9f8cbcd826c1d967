"""JSON Schema of paradrop.yaml in ParaDrop's multi-service form (the legacy form is converted first)."""
from pdserver.chutes.capabilities import LINUX_CAPABILITIES

_ENV = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_SIZE = {"anyOf": [{"type": "integer", "minimum": 4194304},
                   {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?[KkMmGg]?[Bb]?$"}]}

_INTERFACE = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {
        "type": {"enum": ["wifi-ap", "lan", "vlan"]},
        "intfName": {"type": "string"},
        "dhcp": {"type": "object", "additionalProperties": False, "properties": {
            "start": {"type": "integer", "minimum": 1}, "limit": {"type": "integer", "minimum": 1},
            "leasetime": {"type": "string"}}},
        "wireless": {"type": "object", "additionalProperties": False, "properties": {
            "ssid": {"type": "string", "minLength": 1, "maxLength": 32},
            "key": {"type": "string", "minLength": 8, "maxLength": 63},
            "hidden": {"type": "boolean"}, "isolate": {"type": "boolean"}}},
        "requirements": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "vlan_id": {"type": "integer", "minimum": 1, "maximum": 4094},
        "ipv4": {"type": "string"},
    },
}

SERVICE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "type": {"enum": ["light", "normal", "image"]},
        "image": {"type": "string", "minLength": 1, "maxLength": 255},
        "source": {"type": "string", "minLength": 1, "maxLength": 255},
        "dockerfile": {"type": "string", "minLength": 1, "maxLength": 255},
        "command": {"anyOf": [{"type": "string", "minLength": 1},
                              {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
        "environment": _ENV,
        "requests": {"type": "object", "additionalProperties": False, "properties": {
            "port-bindings": {"type": "array", "maxItems": 64, "items": {
                "type": "object", "additionalProperties": False, "required": ["external", "internal"],
                "properties": {"external": _PORT, "internal": _PORT, "protocol": {"enum": ["tcp", "udp"]}}}},
            "cpu-fraction": {"type": "number", "exclusiveMinimum": 0, "maximum": 64},
            "memory": _SIZE,
            "as-root": {"type": "boolean"},
            "capabilities": {"type": "array", "uniqueItems": True, "maxItems": len(LINUX_CAPABILITIES),
                             "items": {"enum": list(LINUX_CAPABILITIES)}},
        }},
        "interfaces": {"type": "object", "additionalProperties": _INTERFACE,
                       "propertyNames": {"pattern": "^[a-z][a-z0-9]{0,14}$"}},
        "healthcheck": {"type": "object", "additionalProperties": False, "required": ["test"], "properties": {
            "test": {"anyOf": [{"type": "string", "minLength": 1},
                               {"type": "array", "minItems": 1, "items": {"type": "string"}}]},
            "interval": {"type": "number", "minimum": 0.1}, "timeout": {"type": "number", "minimum": 0.1},
            "retries": {"type": "integer", "minimum": 1}}},
    },
    "required": ["type"],
    "allOf": [
        {"if": {"properties": {"type": {"const": "light"}}},
         "then": {"required": ["image", "command"],
                  "properties": {"image": {"enum": ["busybox", "python3", "node"]}}}},
        {"if": {"properties": {"type": {"const": "image"}}}, "then": {"required": ["image"]}},
    ],
}

CHUTE = {
    "type": "object", "additionalProperties": False, "required": ["name", "version", "services"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
        "version": {"anyOf": [{"type": "integer", "minimum": 0},
                              {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$"}]},
        "description": {"type": "string", "maxLength": 4096},
        "owner": {"type": "string", "maxLength": 255},
        "environment": _ENV,
        "web": {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
            "service": {"type": "string"}, "port": _PORT}},
        "services": {"type": "object", "minProperties": 1, "maxProperties": 16, "additionalProperties": SERVICE,
                     "propertyNames": {"pattern": "^[a-z][a-z0-9-]{0,31}$"}},
    },
}
