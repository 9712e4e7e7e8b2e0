"""The fast input check answers as jsonschema does, and leaves jsonschema what it cannot judge."""

from __future__ import annotations

import math
from typing import Any

import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpubridge.catalog import Catalog
from gpubridge.catalog.explain import violations
from gpubridge.catalog.inputcheck import InputCheck, fast_checkable, input_validator

CATALOG = Catalog.load(None, starter=False)

SIMPLE = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "additionalProperties": False,
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 8},
        "max_tokens": {"type": "integer", "minimum": 1, "maximum": 64, "multipleOf": 2},
        "temperature": {"type": "number", "minimum": 0, "maximum": 2},
        "mode": {"enum": ["fast", "slow"]},
        "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
    },
}


def reference(schema: dict[str, Any], payload: Any) -> list[dict[str, Any]]:
    return violations(input_validator(schema), payload)


def example_of(schema: Any) -> Any:
    """A valid instance of a schema of the kinds the catalog has."""
    if not isinstance(schema, dict):
        return None
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    kind = kind[0] if isinstance(kind, list) else kind
    if kind is None and schema.get("anyOf"):
        return example_of(schema["anyOf"][0])
    if kind == "object":
        properties = schema.get("properties", {})
        required = list(schema.get("required", []))
        for branch in schema.get("anyOf", []) + schema.get("oneOf", []):
            required += branch.get("required", [])
            break
        return {name: example_of(properties.get(name, {})) for name in required}
    if kind == "array":
        return [example_of(schema.get("items", {}))] * max(schema.get("minItems", 1), 1)
    if kind == "string":
        return "x" * max(schema.get("minLength", 1), 1)
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum", 0))
        step = schema.get("multipleOf", 1)
        return math.ceil((low + 1) / step) * step if kind == "integer" else low + 0.5
    if kind == "boolean":
        return True
    return None


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)


def near_bounds(schema: Any) -> st.SearchStrategy[Any]:
    """Values for a field: valid ones, and ones just past each of its limits."""
    if not isinstance(schema, dict):
        return json_values
    found: list[Any] = [example_of(schema), *schema.get("enum", [])]
    for key in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if key in schema:
            edge = schema[key]
            found += [edge, edge - 1, edge + 1, float(edge), edge + 0.5, edge - 0.5, 2**64]
    if "multipleOf" in schema:
        step = schema["multipleOf"]
        found += [step, step * 3, step + 1, float(step * 2)]
    for key in ("minLength", "maxLength"):
        if key in schema:
            size = schema[key]
            found += ["a" * size, "a" * (size + 1), "é" * size, "\U0001f600" * max(size - 1, 0)]
    for key in ("minItems", "maxItems"):
        if key in schema:
            found += [
                [example_of(schema.get("items", {}))] * n for n in (schema[key], schema[key] + 1)
            ]
    if "items" in schema:
        inner = near_bounds(schema["items"])
        return st.sampled_from(found) | st.lists(inner, max_size=3) | json_values
    for branch in schema.get("anyOf", []):
        found.append(example_of(branch))
    return st.sampled_from(found) | json_values


def mutated(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """A valid instance with up to three fields removed, set near their limits, or added."""
    base = example_of(schema)
    properties = schema.get("properties", {})
    names = sorted({*properties, "unknown"})

    @st.composite
    def edits(draw: st.DrawFn) -> Any:
        payload = dict(base)
        for name in draw(st.lists(st.sampled_from(names), min_size=1, max_size=3)):
            if draw(st.booleans()) and name in payload and draw(st.booleans()):
                payload.pop(name)
            else:
                payload[name] = draw(near_bounds(properties.get(name)))
        return payload

    return st.just(base) | edits() | json_values


FAST_SERVICES = [key for key, s in CATALOG.services.items() if fast_checkable(s.input_schema)]


def test_the_generated_instances_start_from_a_valid_one() -> None:
    for key in FAST_SERVICES:
        schema = CATALOG.service(key).input_schema
        assert reference(schema, example_of(schema)) == [], key


def test_most_packaged_services_are_checked_fast_and_a_pattern_is_left_to_jsonschema() -> None:
    assert "llm-4090" in FAST_SERVICES
    assert len(FAST_SERVICES) >= len(CATALOG.services) - 3
    assert not fast_checkable(CATALOG.service("whisper-l4").input_schema)  # a pattern


@pytest.mark.parametrize("key", FAST_SERVICES)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_fast_check_answers_as_jsonschema_does(key: str, data: st.DataObject) -> None:
    schema = CATALOG.service(key).input_schema
    payload = data.draw(mutated(schema))
    assert InputCheck(schema).violations(payload) == reference(schema, payload)


def test_valid_input_is_proven_without_loading_a_jsonschema_validator() -> None:
    check = InputCheck(SIMPLE)
    assert check.fast
    assert check.violations({"prompt": "hi", "max_tokens": 8, "temperature": 0.7}) == []
    assert check._full is None
    refused = check.violations({"prompt": "hi", "max_tokens": 3})
    assert refused == reference(SIMPLE, {"prompt": "hi", "max_tokens": 3}) != []


@pytest.mark.parametrize(
    "payload",
    [
        {"prompt": "hi", "max_tokens": 8.0},  # jsonschema-rs takes a whole float as an integer
        {"prompt": "hi", "temperature": float("nan")},
        {"prompt": "hi", "temperature": float("inf")},
        {"prompt": "hi", "tags": [2**64]},
        {"prompt": "hi\ud800"},
        {"prompt": "hi", "tags": ("a",)},
    ],
)
def test_input_the_two_may_judge_apart_goes_to_jsonschema(payload: dict[str, Any]) -> None:
    check = InputCheck(SIMPLE)
    assert check.violations(payload) == reference(SIMPLE, payload)
    assert check._full is not None
    if payload.get("max_tokens") == 8.0:
        assert jsonschema_rs.validator_for(SIMPLE).is_valid(payload)
        assert check.violations(payload) != []


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "pattern": "^[a-z]+$"},
        {"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}},
        {"type": "array", "uniqueItems": True},
        {"enum": [1, True]},
        {"enum": ["a", 1.5]},
        {"enum": [None]},
        {"type": "number", "multipleOf": 0.1},
        {"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"},
        {"type": "object", "properties": {"a": {"type": "string", "$schema": SIMPLE["$schema"]}}},
        {"type": "object", "patternProperties": {"^a": {}}},
        {"type": "strange"},
        {"minimum": float("inf")},
    ],
)
def test_a_schema_with_what_the_two_read_apart_is_left_to_jsonschema(
    schema: dict[str, Any],
) -> None:
    assert not fast_checkable(schema)
    assert not InputCheck(schema).fast


def test_deeply_nested_input_does_not_take_the_fast_check_deeper_than_its_schema() -> None:
    deep: list[Any] = []
    inner = deep
    for _ in range(100_000):
        inner.append([])
        inner = inner[0]
    schema = {"type": "object", "properties": {"a": {"type": "array", "items": {"items": {}}}}}
    check = InputCheck(schema)
    assert check.fast
    assert check.violations({"a": deep}) == []
