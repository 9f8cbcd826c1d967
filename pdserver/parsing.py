"""Documents from outside (JSON bodies, paradrop.yaml) parsed as hostile input.

Whatever arrives becomes JSON's data model or an InvalidInput naming the field: strict UTF-8,
nesting at most MAX_DEPTH deep, integers within 64 bits, finite numbers, no lone surrogates, string
keys; a YAML document additionally has a size limit and an alias expansion budget, so the work
spent on it (here and in every later walk of it, such as schema validation) is bounded by its
size, not by what its aliases expand to.
"""
import io
import json
import math
import re
from typing import Iterable, Optional, Union

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from pdserver.errors import InvalidInput, shorten

try:
    from yaml.cyaml import CParser
except ImportError:  # PyYAML built without libyaml
    CParser = None

MAX_DEPTH = 32
INT_MIN, INT_MAX = -2 ** 63, 2 ** 63 - 1
MAX_YAML_BYTES = 64 * 1024
#: Nodes plus scalar characters a YAML document may expand to through its aliases.
YAML_BUDGET = 256 * 1024
_MAX_NUMBER_CHARS = 128  # a 64-bit integer in any notation (0b..., 1_000_...) fits; longer ones are refused unparsed
_SURROGATE = re.compile("[\ud800-\udfff]")


def field_name(parts: Iterable[Union[str, int]]) -> Optional[str]:
    """``services.main.ports[0]`` from the path ("services", "main", "ports", 0)."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def decode_utf8(raw: bytes, field: str, code: str = "malformed_json") -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidInput(f"{field} is not valid UTF-8 (byte {e.start})", field=field, code=code) from None


class _Refused:
    """A literal refused while decoding; check_tree reports it with its field."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _json_int(text: str):
    if len(text) > _MAX_NUMBER_CHARS:
        return _Refused("is an integer outside 64 bits")
    return int(text)


def _json_float(text: str):
    value = float(text)
    return value if math.isfinite(value) else _Refused("is a number out of range")


def _json_constant(name: str):
    return _Refused(f"is {name}, which JSON does not allow")


def load_json(raw: bytes, root: str = "body"):
    """The JSON document in ``raw``; errors name the field below the document (``root`` for itself)."""
    text = decode_utf8(raw, root)
    try:
        data = json.loads(text, parse_int=_json_int, parse_float=_json_float, parse_constant=_json_constant)
    except RecursionError:
        raise InvalidInput(f"{root} is nested deeper than {MAX_DEPTH} levels", field=root,
                           code="malformed_json") from None
    except ValueError as e:
        raise InvalidInput(f"malformed JSON: {e}", field=root, code="malformed_json") from None
    check_tree(data, root)
    return data


def check_tree(data, root: str, max_depth: int = MAX_DEPTH) -> None:
    """Refuse what JSON's data model (and SQLite's integers) cannot hold, naming the field."""
    stack = [(data, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if isinstance(value, (dict, list)):
            if depth >= max_depth:
                _refuse(path, root, f"is nested deeper than {max_depth} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    if not isinstance(key, str):
                        _refuse(path, root, f"has a key that is not a string ({shorten(repr(key), 40)})")
                    if _SURROGATE.search(key):
                        _refuse(path, root, "has a key that is not valid Unicode (a lone surrogate)")
                    stack.append((item, path + (key,), depth + 1))
            else:
                stack.extend((item, path + (i,), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str):
            if _SURROGATE.search(value):
                _refuse(path, root, "is not valid Unicode (a lone surrogate)")
        elif value is None or isinstance(value, bool):
            continue
        elif isinstance(value, int):
            if not INT_MIN <= value <= INT_MAX:
                _refuse(path, root, "is an integer outside 64 bits")
        elif isinstance(value, float):
            if not math.isfinite(value):
                _refuse(path, root, "is a number out of range")
        elif isinstance(value, _Refused):
            _refuse(path, root, value.reason)
        else:
            _refuse(path, root, f"is a {type(value).__name__}, which is not a JSON value")


def _refuse(path, root: str, reason: str):
    field = field_name(path) or root
    raise InvalidInput(f"{field} {reason}", field=field, code="invalid_field")


class _PythonEvents(Reader, Scanner, Parser):
    """PyYAML's own scanner and parser (where the libyaml binding is not built)."""

    def __init__(self, stream):
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)


class _BoundedComposer(Composer, SafeConstructor, Resolver):
    """Composes parser events into nodes counting what aliases expand to and bounding the nesting depth, so
    a billion-laughs document fails after a few hundred nodes, not after building them; constructs only
    the safe types, with integers and floats of bounded length."""

    def __init__(self, budget: int, max_depth: int):
        Composer.__init__(self)
        SafeConstructor.__init__(self)
        Resolver.__init__(self)
        self._budget = budget
        self._max_depth = max_depth
        self._depth = 0
        self._weights = {}

    def _spend(self, weight: int, mark) -> None:
        self._budget -= weight
        if self._budget < 0:
            raise ComposerError(None, None, "aliases expand the document past its size budget", mark)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            node = super().compose_node(parent, index)
            weight = self._weights.get(id(node))
            if weight is None:
                raise ComposerError(None, None, "an alias refers to a node that contains it", mark)
            self._spend(weight, mark)
            return node
        mark = self.peek_event().start_mark
        nested = self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent)
        if nested:
            self._depth += 1
            if self._depth > self._max_depth:
                raise ComposerError(None, None, f"nested deeper than {self._max_depth} levels", mark)
        node = super().compose_node(parent, index)
        if nested:
            self._depth -= 1
            children = node.value if isinstance(node, yaml.SequenceNode) else [n for kv in node.value for n in kv]
            weight = 1 + sum(self._weights[id(child)] for child in children)
            self._spend(1, mark)
        else:
            weight = 1 + len(node.value)
            self._spend(weight, mark)
        self._weights[id(node)] = weight
        return node

    def construct_yaml_int(self, node):
        if len(node.value) > _MAX_NUMBER_CHARS:
            raise ConstructorError(None, None, "integer outside 64 bits", node.start_mark)
        return super().construct_yaml_int(node)

    def construct_yaml_float(self, node):
        if len(node.value) > _MAX_NUMBER_CHARS:
            raise ConstructorError(None, None, "number out of range", node.start_mark)
        return super().construct_yaml_float(node)

    def construct_mapping(self, node, deep=False):
        """Integer keys (``5000: 8080`` in legacy port bindings) become strings, as in JSON."""
        mapping = super().construct_mapping(node, deep)
        if any(type(key) is int for key in mapping):
            mapping = {str(key) if type(key) is int else key: value for key, value in mapping.items()}
        return mapping


_BoundedComposer.add_constructor("tag:yaml.org,2002:int", _BoundedComposer.construct_yaml_int)
_BoundedComposer.add_constructor("tag:yaml.org,2002:float", _BoundedComposer.construct_yaml_float)
# Dates stay the text they were written as: JSON has no date type.
_BoundedComposer.add_constructor("tag:yaml.org,2002:timestamp", SafeConstructor.construct_yaml_str)


def _loader(events: type) -> type:
    class Loader(_BoundedComposer, events):
        def __init__(self, stream, budget: int, max_depth: int):
            events.__init__(self, stream)
            _BoundedComposer.__init__(self, budget, max_depth)
    return Loader


#: Scanning and parsing in C (libyaml) when PyYAML was built with it, else in Python; composing in Python.
LOADERS = {"python": _loader(_PythonEvents)}
if CParser is not None:
    LOADERS["libyaml"] = _loader(CParser)
_LOADER = LOADERS.get("libyaml", LOADERS["python"])


def load_yaml(text: str, root: str, max_chars: int = MAX_YAML_BYTES, budget: int = YAML_BUDGET,
              max_depth: int = MAX_DEPTH, loader: type = _LOADER):
    """One YAML document as JSON's data model; InvalidInput (field ``root`` or the path inside it)."""
    if len(text) > max_chars:
        raise InvalidInput(f"{root} is larger than {max_chars} characters", field=root, code="too_large")
    stream = io.StringIO(text)
    stream.name = root  # YAML's error marks name it
    try:
        parser = loader(stream, budget, max_depth)
        try:
            data = parser.get_single_data()
        finally:
            parser.dispose()
    except yaml.YAMLError as e:
        raise InvalidInput(f"{root} is not valid YAML: {e}", field=root, code="malformed_yaml") from None
    check_tree(data, root, max_depth)
    return data
