"""Arrays of plain strings (a deployment's node ids) are checked in one quick pass; what the pass refuses goes
through the full check, so the error (field, message, code) is the one jsonschema item by item would give."""
import pytest
from jsonschema.validators import Draft202012Validator, extend

from pdserver import validation
from pdserver.validation import SchemaError, check

IDS = {"type": "object", "properties": {"nodes": {"type": "array", "maxItems": 50, "items": {
    "type": "string", "pattern": "^[0-9a-f]{8,64}$", "minLength": 8, "maxLength": 64}}}}
NAMES = {"type": "array", "items": {"type": "string", "maxLength": 5}}
MIXED = {"type": "array", "prefixItems": [{"type": "integer"}], "items": {"type": "string", "pattern": "^a+$"}}
GOOD = "0123456789abcdef"


def item_by_item(instance, schema):
    """The errors of the same check without the quick pass (the strict pattern kept)."""
    slow = extend(Draft202012Validator, {"pattern": validation._pattern})(schema)
    return sorted((list(e.absolute_path), e.validator) for e in slow.iter_errors(instance))


def quick(instance, schema):
    return sorted((list(e.absolute_path), e.validator)
                  for e in validation._validator_for(schema).iter_errors(instance))


@pytest.mark.parametrize("schema, instance", [
    (IDS, {"nodes": [GOOD] * 3}),
    (IDS, {"nodes": [GOOD, "abc", 5, None, GOOD + "\n", "g" * 8, "a" * 65, {"x": 1}, [GOOD], GOOD]}),
    (IDS, {"nodes": "not a list"}),
    (IDS, {"nodes": [GOOD] * 51}),
    (NAMES, ["ab", "abcdef", "", 3, "é" * 5, "é" * 6]),
    (MIXED, [1, "aaa", "b", 2]),
    (MIXED, ["a", "aa"]),
])
def test_the_quick_pass_finds_exactly_the_errors_the_full_check_finds(schema, instance):
    assert quick(instance, schema) == item_by_item(instance, schema)


def test_the_first_bad_id_is_named_with_its_index():
    with pytest.raises(SchemaError) as caught:
        check({"nodes": [GOOD, GOOD, "0123456789ABCDEF"]}, IDS)
    assert caught.value.field == "nodes[2]" and "does not match" in caught.value.message
