"""Schemas with one type per schema: lists of types become ``anyOf`` branches."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from gpubridge.catalog import Catalog
from gpubridge.catalog.portable import portable_schema


def type_lists(node: Any, path: str = "") -> list[str]:
    """Where in ``node`` a ``type`` is a list (looking into every value, data included)."""
    found = []
    if isinstance(node, dict):
        if isinstance(node.get("type"), list):
            found.append(path or "/")
        for key, value in node.items():
            found += type_lists(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += type_lists(value, f"{path}/{index}")
    return found


NULLABLE_TEXT = {"type": ["string", "null"], "minLength": 2, "description": "a name"}
SCHEMAS: list[dict[str, Any]] = [
    NULLABLE_TEXT,
    {"type": ["integer", "string"], "minimum": 3, "maxLength": 2, "enum": [1, 5, "a", "abc"]},
    {
        "type": ["object", "null"],
        "required": ["a"],
        "properties": {"a": {"type": ["number", "boolean"], "maximum": 1}},
        "additionalProperties": False,
    },
    {"type": ["array", "null"], "items": {"type": ["string", "integer"]}, "maxItems": 2},
    {"type": ["string", "null"], "anyOf": [{"maxLength": 1}, {"const": None}]},
    {"type": ["string"], "pattern": "^a"},
    {"$defs": {"n": {"type": ["number", "null"]}}, "prefixItems": [{"$ref": "#/$defs/n"}]},
]
INSTANCES: list[Any] = [
    None,
    True,
    0,
    1,
    3,
    5,
    2.5,
    "",
    "a",
    "ab",
    "abc",
    "ba",
    [],
    ["x"],
    ["x", 1],
    ["x", 1, 2],
    [None],
    [2.0],
    [True],
    {},
    {"a": 1},
    {"a": 2},
    {"a": True},
    {"a": None},
    {"a": 1, "b": 2},
]


def test_a_list_of_types_becomes_one_branch_per_type_with_the_keywords_of_that_type():
    assert portable_schema(NULLABLE_TEXT) == {
        "description": "a name",
        "anyOf": [{"type": "string", "minLength": 2}, {"type": "null"}],
    }
    assert portable_schema({"type": ["string"], "pattern": "^a"}) == {
        "type": "string",
        "pattern": "^a",
    }


@pytest.mark.parametrize("schema", SCHEMAS)
def test_the_rewritten_schema_accepts_exactly_what_the_original_accepts(schema):
    original = copy.deepcopy(schema)
    rewritten = portable_schema(schema)

    assert type_lists(rewritten) == []
    assert schema == original, "the original is left as it was"
    before, after = Draft202012Validator(schema), Draft202012Validator(rewritten)
    for instance in INSTANCES:
        assert before.is_valid(instance) == after.is_valid(instance), instance


def test_lists_of_types_deep_inside_a_schema_are_rewritten_but_data_is_not():
    schema = {
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"type": ["string", "null"]}},
            "shape": {"default": {"type": ["data", "not", "schema"]}, "type": "object"},
        },
        "$defs": {"id": {"type": ["string", "integer"]}},
    }
    rewritten = portable_schema(schema)

    assert rewritten["properties"]["tags"]["items"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}]
    }
    assert rewritten["$defs"]["id"] == {"anyOf": [{"type": "string"}, {"type": "integer"}]}
    assert rewritten["properties"]["shape"] == schema["properties"]["shape"]


def test_alternatives_of_its_own_and_a_list_of_types_must_both_hold():
    rewritten = portable_schema({"type": ["string", "null"], "anyOf": [{"maxLength": 1}]})

    assert rewritten == {
        "anyOf": [{"maxLength": 1}],
        "allOf": [{"anyOf": [{"type": "string"}, {"type": "null"}]}],
    }


@pytest.mark.parametrize("starter", [False, True])
def test_the_packaged_catalog_schemas_have_no_list_of_types_and_come_back_unchanged(starter):
    catalog = Catalog.load(starter=starter)

    for service in catalog.services.values():
        assert type_lists(service.input_schema) == [], service.key
        assert portable_schema(service.input_schema) is service.input_schema
        if service.output_schema is not None:
            assert portable_schema(service.output_schema) is service.output_schema
