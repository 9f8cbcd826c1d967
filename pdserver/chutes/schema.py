"""JSON Schema of paradrop.yaml in ParaDrop's multi-service form (the legacy form is converted first).

Every string, list and mapping has a size limit: what a chute record and a change record store is
bounded (pdserver.chutes.spec also caps the whole description).
"""
from pdserver.chutes.capabilities import LINUX_CAPABILITIES

MAX_TEXT = 4096  # a command, an environment value, a description
_ENV = {"type": "object", "maxProperties": 64,
        "additionalProperties": {"anyOf": [{"type": "string", "maxLength": MAX_TEXT}, {"type": ["number", "boolean"]}]},
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$"}}
_PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
_SIZE = {"anyOf": [{"type": "integer", "minimum": 4194304},
                   {"type": "string", "maxLength": 32, "pattern": "^[0-9]+(\\.[0-9]+)?[KkMmGg]?[Bb]?$"}]}
_COMMAND = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_TEXT},
                      {"type": "array", "minItems": 1, "maxItems": 64,
                       "items": {"type": "string", "maxLength": MAX_TEXT}}]}
_NAME = {"type": "string", "maxLength": 64}
_DNS = {"type": "array", "maxItems": 8, "items": {"type": "string", "maxLength": 45, "pattern": "^[0-9A-Fa-f.:]+$"}}

#: The light bases this node builds (pdserver.execution.chute_plans.BASE_IMAGES).
LIGHT_BASES = ("python3", "node", "busybox")

_VLAN_ID = {"type": "integer", "minimum": 1, "maximum": 4094}
#: ParaDrop's interface object (services.<s>.interfaces.<name>); the legacy ``config.net`` form is converted to it.
INTERFACE_TYPES = ("wifi-ap", "vlan", "monitor")
_INTERFACE = {
    "type": "object", "additionalProperties": False, "required": ["type"],
    "properties": {
        "type": {"enum": list(INTERFACE_TYPES)},
        "dns": _DNS,
        "l3bridge": {"type": "string", "maxLength": 15},
        "dhcp": {"type": "object", "additionalProperties": False, "properties": {
            "start": {"type": "integer", "minimum": 3, "maximum": 65535},
            "limit": {"type": "integer", "minimum": 1, "maximum": 65535},
            "leasetime": {"type": "string", "maxLength": 16, "pattern": "^([0-9]{1,7}[smhdw]?|infinite)$"}}},
        "wireless": {"type": "object", "additionalProperties": False, "properties": {
            "ssid": {"type": "string", "minLength": 1, "maxLength": 32},
            "key": {"type": "string", "minLength": 8, "maxLength": 63, "pattern": "^[ -~]*$"},
            "hidden": {"type": "boolean"}, "isolate": {"type": "boolean"},
            "nasid": {"type": "string", "maxLength": 48, "pattern": "^[!-~]*$"},
            "acct_server": {"type": "string", "maxLength": 45, "pattern": "^[0-9A-Fa-f.:]+$"},
            "acct_secret": {"type": "string", "maxLength": 255, "pattern": "^[ -~]*$"},
            "acct_interval": {"type": "integer", "minimum": 1, "maximum": 86400},
            "maxassoc": {"type": "integer", "minimum": 1, "maximum": 2007}}},
        "requirements": {"type": "object", "additionalProperties": False, "properties": {
            "hwmode": {"enum": ["11a", "11b", "11g"]},
            "ipv4_network": {"type": "string", "maxLength": 18,
                             "pattern": "^[0-9]{1,3}(\\.[0-9]{1,3}){3}/[0-9]{1,2}$"}}},
        "vlan_id": _VLAN_ID,
        "vlan-id": _VLAN_ID,
    },
    "allOf": [{"if": {"properties": {"type": {"const": "vlan"}}},
               "then": {"anyOf": [{"required": ["vlan-id"]}, {"required": ["vlan_id"]}]}}],
}

SERVICE = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "type": {"enum": ["light", "normal", "image"]},
        "image": {"type": "string", "minLength": 1, "maxLength": 255},
        "source": {"type": "string", "minLength": 1, "maxLength": 255},
        "dockerfile": {"type": "string", "minLength": 1, "maxLength": 255},
        "command": _COMMAND,
        "dns": _DNS,
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
        "interfaces": {"type": "object", "maxProperties": 8, "additionalProperties": _INTERFACE,
                       "propertyNames": {"pattern": "^[a-z][a-z0-9]{0,14}$"}},
        "healthcheck": {"type": "object", "additionalProperties": False, "required": ["test"], "properties": {
            "test": _COMMAND,
            "interval": {"type": "number", "minimum": 0.1, "maximum": 86400},
            "timeout": {"type": "number", "minimum": 0.1, "maximum": 86400},
            "retries": {"type": "integer", "minimum": 1, "maximum": 1000}}},
    },
    "required": ["type"],
    "allOf": [
        {"if": {"properties": {"type": {"const": "light"}}},
         "then": {"required": ["image", "command"],
                  "properties": {"image": {"enum": list(LIGHT_BASES)}}}},
        {"if": {"properties": {"type": {"const": "image"}}}, "then": {"required": ["image"]}},
    ],
}

CHUTE = {
    "type": "object", "additionalProperties": False, "required": ["name", "version", "services"],
    "properties": {
        "name": {"type": "string", "pattern": "^[a-z][a-z0-9-]{0,62}$"},
        "version": {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "number", "minimum": 0},
                              {"type": "string", "pattern": "^[0-9A-Za-z][0-9A-Za-z._+-]{0,31}$"}]},
        "description": {"type": "string", "maxLength": MAX_TEXT},
        "owner": {"type": "string", "maxLength": 255},
        "environment": _ENV,
        "web": {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
            "service": _NAME, "port": _PORT}},
        "services": {"type": "object", "minProperties": 1, "maxProperties": 16, "additionalProperties": SERVICE,
                     "propertyNames": {"pattern": "^[a-z][a-z0-9-]{0,31}$"}},
    },
}
