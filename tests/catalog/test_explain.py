"""Schema violations said so that a person knows what to send instead."""

from __future__ import annotations

from typing import Any

import pytest

from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.explain import ROOT, summary, violations
from gpubridge.catalog.inputcheck import input_validator


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def explain(catalog: Catalog, key: str, payload: Any) -> list[dict[str, Any]]:
    return violations(input_validator(catalog.service(key).input_schema), payload)


def test_a_mistyped_field_names_the_field_that_was_meant_and_the_choices(
    catalog: Catalog,
) -> None:
    found = explain(catalog, "llm-4090", {"promt": "Hello"})
    assert found == [
        {
            "path": ROOT,
            "message": "unknown field `promt` (did you mean `prompt`?)",
            "field": "promt",
            "suggestion": "prompt",
        },
        {"path": ROOT, "message": "send `prompt` or `messages`"},
    ]
    assert summary(found) == (
        "unknown field `promt` (did you mean `prompt`?); send `prompt` or `messages`"
    )
    assert "not valid under any of the given schemas" not in summary(found)


def test_an_unknown_field_like_no_known_one_lists_the_known_fields(catalog: Catalog) -> None:
    found = explain(catalog, "embedding-l4", {"text": "hi", "colour": "red"})
    assert len(found) == 1 and "suggestion" not in found[0]
    assert found[0]["field"] == "colour"
    assert found[0]["message"] == (
        "unknown field `colour` (known fields: `text`, `model`, `normalize`)"
    )


def test_every_unknown_field_is_its_own_violation(catalog: Catalog) -> None:
    found = explain(catalog, "embedding-l4", {"text": "hi", "modle": "bge-m3", "nromalize": 1})
    assert [(v["field"], v.get("suggestion")) for v in found] == [
        ("modle", "model"),
        ("nromalize", "normalize"),
    ]


def test_an_unknown_field_inside_a_list_item_offers_the_items_fields(catalog: Catalog) -> None:
    found = explain(catalog, "llm-4090", {"messages": [{"role": "user", "contnt": "Hi"}]})
    assert found == [
        {
            "path": "messages/0",
            "message": "unknown field `contnt` (did you mean `content`?)",
            "field": "contnt",
            "suggestion": "content",
        },
        {"path": "messages/0", "message": "missing required field `content`"},
    ]


def test_each_missing_required_field_is_named_once(catalog: Catalog) -> None:
    found = explain(catalog, "llm-4090", {"messages": [{}]})
    assert found == [
        {"path": "messages/0", "message": "missing required field `role`"},
        {"path": "messages/0", "message": "missing required field `content`"},
    ]


def test_a_value_of_no_allowed_type_names_the_types(catalog: Catalog) -> None:
    found = explain(catalog, "llm-4090", {"prompt": "Hi", "stop": 5})
    assert found == [{"path": "stop", "message": "must be a string or an array"}]


@pytest.mark.parametrize(("stop", "path"), [("", "stop"), ([""], "stop/0"), (["a"] * 5, "stop")])
def test_a_value_of_an_allowed_type_says_what_that_form_refuses(
    catalog: Catalog, stop: Any, path: str
) -> None:
    found = explain(catalog, "llm-4090", {"prompt": "Hi", "stop": stop})
    assert len(found) == 1 and found[0]["path"] == path
    assert "not of type" not in found[0]["message"], found
    assert "not valid under any" not in found[0]["message"], found


def test_an_allowed_value_near_a_wrong_one_is_offered(catalog: Catalog) -> None:
    found = explain(catalog, "llm-4090", {"prompt": "Hi", "model": "llama-3.1-8b"})
    assert len(found) == 1 and found[0]["path"] == "model"
    assert found[0]["suggestion"] == "llama-3.1-8b-instant"
    assert found[0]["message"].endswith("(did you mean `llama-3.1-8b-instant`?)")


ONE_OF = {
    "type": "object",
    "additionalProperties": False,
    "oneOf": [{"required": ["image_url"]}, {"required": ["image_base64"]}],
    "properties": {"image_url": {"type": "string"}, "image_base64": {"type": "string"}},
}


def test_a_one_of_choice_sent_twice_asks_for_only_one() -> None:
    both = {"image_url": "https://example.com/a.png", "image_base64": "AAAA"}
    assert violations(input_validator(ONE_OF), both) == [
        {"path": ROOT, "message": "send only one of `image_url` or `image_base64`"}
    ]
    assert violations(input_validator(ONE_OF), {}) == [
        {"path": ROOT, "message": "send `image_url` or `image_base64`"}
    ]


def test_other_alternatives_that_fit_twice_or_never_are_still_explained() -> None:
    schema = {"oneOf": [{"type": "integer"}, {"type": "number"}]}
    assert violations(input_validator(schema), 3) == [
        {"path": ROOT, "message": "fits more than one of the allowed forms; send one"}
    ]
    ranges = {"anyOf": [{"minimum": 10}, {"maximum": 1}]}
    found = violations(input_validator(ranges), 5)
    assert len(found) == 1 and found[0]["path"] == ROOT
    assert "not valid under any" not in found[0]["message"]
