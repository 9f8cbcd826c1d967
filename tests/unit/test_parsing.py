"""Hostile input for the two document parsers: every refusal is an InvalidInput naming the field, and the
work is bounded by the input, not by what it expands to."""
import tracemalloc

import pytest

from pdserver.errors import InvalidInput
from pdserver.parsing import LOADERS, MAX_DEPTH, MAX_YAML_BYTES, load_json
from pdserver.parsing import load_yaml as default_load_yaml


def refused(load, document, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as info:
        load(document, **kwargs)
    assert len(info.value.message) < 500, info.value.message
    return info.value


class TestHostileJson:
    def test_a_plain_document_is_parsed(self):
        assert load_json(b'{"a": [1, 2.5, "\\ud83d\\ude00", null, true]}') == {"a": [1, 2.5, "\U0001F600", None, True]}

    @pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5000, 500_000])
    def test_nesting_deeper_than_the_limit_is_refused(self, depth):
        error = refused(load_json, b"[" * depth + b"]" * depth)
        assert "nested deeper than 32 levels" in error.message

    def test_nesting_at_the_limit_is_accepted(self):
        assert load_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)

    def test_a_deep_object_names_the_field_where_the_limit_is_passed(self):
        error = refused(load_json, b'{"a": ' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1))
        assert error.field == ".".join(["a"] * MAX_DEPTH)

    @pytest.mark.parametrize("raw, field", [
        (b'{"username": "\\ud800", "password": "x"}', "username"),
        (b'{"username": "a", "password": "\\udfff"}', "password"),
        (b'{"a": [1, {"b": "x\\ud83d"}]}', "a[1].b"),
        (b'{"a": {"\\ud800": 1}}', "a"),
    ])
    def test_lone_surrogate_escapes_are_refused_naming_the_field(self, raw, field):
        error = refused(load_json, raw)
        assert error.field == field and "lone surrogate" in error.message

    def test_bytes_that_are_not_utf8_are_refused(self):
        for raw in (b'{"username": "\xed\xa0\x80"}', b'{"a": "\xff"}'):
            assert refused(load_json, raw).field == "body"

    @pytest.mark.parametrize("literal", [b"9223372036854775808", b"-9223372036854775809", b"1180591620717411303424",
                                         b"9" * 5000])
    def test_integers_outside_64_bits_are_refused(self, literal):
        error = refused(load_json, b'{"limit": ' + literal + b"}")
        assert error.field == "limit" and "outside 64 bits" in error.message

    def test_64_bit_integers_are_accepted(self):
        assert load_json(b"[9223372036854775807, -9223372036854775808]") == [2 ** 63 - 1, -2 ** 63]

    @pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e400"])
    def test_non_finite_numbers_are_refused(self, literal):
        assert refused(load_json, b'{"x": [' + literal + b"]}").field == "x[0]"

    def test_malformed_json_names_the_body(self):
        error = refused(load_json, b"{not json")
        assert error.field == "body" and error.code == "malformed_json"


BOMB = """name: bomb
version: 1
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
services: {main: {type: light, image: busybox, command: *i}}
"""


@pytest.fixture(params=sorted(LOADERS))
def load_yaml(request):
    """Each test runs with libyaml's parser (the default where PyYAML has it) and with PyYAML's own."""
    return lambda text, root, **kwargs: default_load_yaml(text, root, loader=LOADERS[request.param], **kwargs)


def test_libyaml_parses_by_default():
    assert "libyaml" in LOADERS


class TestHostileYaml:
    def test_aliases_within_the_budget_are_expanded(self, load_yaml):
        assert load_yaml("a: &x [1, 2]\nb: *x\n", "doc") == {"a": [1, 2], "b": [1, 2]}

    def test_an_alias_bomb_is_refused_with_little_memory(self, load_yaml):
        assert len(BOMB) < 512
        tracemalloc.start()
        try:
            error = refused(load_yaml, BOMB, root="paradrop.yaml")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert error.field == "paradrop.yaml" and "size budget" in error.message
        assert peak < 5_000_000

    def test_a_merge_key_bomb_is_refused(self, load_yaml):
        levels = ["m0: &m0 {" + ", ".join(f"k{i}: {i}" for i in range(10)) + "}"]
        for n in range(1, 8):
            levels.append(f"m{n}: &m{n} {{<<: [" + ", ".join([f"*m{n - 1}"] * 10) + "]}")
        assert "size budget" in refused(load_yaml, "\n".join(levels), root="doc").message

    def test_a_recursive_alias_is_refused(self, load_yaml):
        assert "contains it" in refused(load_yaml, "a: &a [*a]\n", root="doc").message

    @pytest.mark.parametrize("document", ["a: " + "[" * 30_000 + "]" * 30_000,
                                          "a:\n" + "".join(" " * i + "- \n" for i in range(100)),
                                          "a: " + "{b: " * 40 + "1" + "}" * 40])
    def test_deep_documents_are_refused(self, load_yaml, document):
        error = refused(load_yaml, document, root="paradrop.yaml")
        assert error.field == "paradrop.yaml" and "nest" in error.message  # libyaml stops scanning at 1000 itself

    def test_a_document_past_the_size_limit_is_refused_unparsed(self, load_yaml):
        assert "larger than" in refused(load_yaml, "#" * (MAX_YAML_BYTES + 1), root="doc").message

    @pytest.mark.parametrize("value", ["99999999999999999999999", "-9223372036854775809", "0x" + "f" * 17,
                                       "0b" + "1" * 64, "1:2:3:4:5:6:7:8:9:10:11:12:13:14:15:16"])
    def test_integers_outside_64_bits_are_refused_naming_the_field(self, load_yaml, value):
        error = refused(load_yaml, f"version: {value}\n", root="paradrop.yaml")
        assert error.field == "version" and "outside 64 bits" in error.message

    @pytest.mark.parametrize("value", ["9" * 5000, "1:" * 3000 + "1", "0x" + "f" * 60_000])
    def test_integers_too_long_to_convert_are_refused_unconverted(self, load_yaml, value):
        assert "outside 64 bits" in refused(load_yaml, f"memory: {value}\n", root="paradrop.yaml").message

    @pytest.mark.parametrize("document, field", [("x: .nan", "x"), ("x: [-.inf]", "x[0]"),
                                                 ("x: !!binary aGk=", "x"), ("x: !!set {a}", "x"),
                                                 ("x: {null: 1}", "x"), ("x: {true: 1}", "x")])
    def test_values_outside_jsons_model_are_refused_naming_the_field(self, load_yaml, document, field):
        assert refused(load_yaml, document, root="doc").field == field

    def test_a_lone_surrogate_escape_is_refused(self, load_yaml):
        """libyaml refuses the escape itself (field: the document); PyYAML decodes it and we refuse the value."""
        assert refused(load_yaml, 'x: "\\ud800"', root="doc").field in ("doc", "x")

    def test_integer_keys_and_dates_become_strings(self, load_yaml):
        assert load_yaml("ports: {5000: 8080}\nwhen: 2020-01-01\n", "doc") == {"ports": {"5000": 8080},
                                                                               "when": "2020-01-01"}

    @pytest.mark.parametrize("document", ["a: [unclosed", "? [a]\n: 1", "a: !!python/object:os.system x",
                                          "a: *nowhere", "a: 1\n---\nb: 2", "a: \x07"])
    def test_every_yaml_error_is_an_invalid_input(self, load_yaml, document):
        error = refused(load_yaml, document, root="paradrop.yaml")
        assert error.field == "paradrop.yaml" and "is not valid YAML" in error.message
