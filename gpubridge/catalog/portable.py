"""JSON Schemas that every tool client accepts: one type per schema, never a list of types.

JSON Schema allows ``"type": ["string", "null"]``, but clients that map schemas to a
single-type dialect (Gemini function declarations, OpenAPI 3.0 subsets, the MCP Inspector's
strict check) reject it. ``portable_schema`` writes each such list as ``anyOf`` branches of one
type each: ``{"anyOf": [{"type": "string"}, {"type": "null"}]}``.

The rewrite accepts exactly what the original accepts. A keyword that constrains one type only
(``minLength``, ``items``, ``properties``, ...) moves into the branch of its type, where it has
the same effect; the others (``enum``, ``description``, ``default``, ...) stay beside ``anyOf``.
"""

from __future__ import annotations

from typing import Any

_TYPE_KEYWORDS: dict[str, frozenset[str]] = {
    "string": frozenset(
        {
            "minLength",
            "maxLength",
            "pattern",
            "format",
            "contentEncoding",
            "contentMediaType",
            "contentSchema",
        }
    ),
    "number": frozenset(
        {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf"}
    ),
    "array": frozenset(
        {
            "items",
            "prefixItems",
            "contains",
            "minContains",
            "maxContains",
            "minItems",
            "maxItems",
            "uniqueItems",
            "unevaluatedItems",
        }
    ),
    "object": frozenset(
        {
            "properties",
            "patternProperties",
            "additionalProperties",
            "required",
            "minProperties",
            "maxProperties",
            "propertyNames",
            "dependentRequired",
            "dependentSchemas",
            "unevaluatedProperties",
        }
    ),
}
_TYPE_KEYWORDS["integer"] = _TYPE_KEYWORDS["number"]

_SCHEMA_KEYWORDS = frozenset(
    {
        "additionalProperties",
        "contains",
        "contentSchema",
        "else",
        "if",
        "items",
        "not",
        "propertyNames",
        "then",
        "unevaluatedItems",
        "unevaluatedProperties",
    }
)
"""Keywords whose value is one schema."""
_SCHEMA_LIST_KEYWORDS = frozenset({"allOf", "anyOf", "oneOf", "prefixItems"})
_SCHEMA_MAP_KEYWORDS = frozenset(
    {"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"}
)


def portable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with every list of types written as ``anyOf`` branches (``schema`` itself,
    not a copy, when it has none)."""
    result = _rewrite(schema)
    return result if isinstance(result, dict) else schema


def _rewrite(node: Any) -> Any:
    """The schema ``node`` rewritten; the same object when nothing in it changes."""
    if not isinstance(node, dict):
        return node
    changed: dict[str, Any] = {}
    for key, value in node.items():
        new = _rewrite_keyword(key, value)
        if new is not value:
            changed[key] = new
    current = {**node, **changed} if changed else node
    types = current.get("type")
    if isinstance(types, list):
        return _split_types(current, [str(t) for t in types])
    return current


def _rewrite_keyword(key: str, value: Any) -> Any:
    """The value of keyword ``key`` rewritten where it holds schemas (``enum``, ``default``
    and the like hold data, which stays as it is)."""
    if isinstance(value, list) and (key in _SCHEMA_LIST_KEYWORDS or key == "items"):
        items = [_rewrite(item) for item in value]
        return items if any(a is not b for a, b in zip(items, value, strict=True)) else value
    if isinstance(value, dict) and key in _SCHEMA_MAP_KEYWORDS:
        entries = {name: _rewrite(item) for name, item in value.items()}
        return entries if any(entries[k] is not value[k] for k in value) else value
    if key in _SCHEMA_KEYWORDS:
        return _rewrite(value)
    return value


def _split_types(schema: dict[str, Any], types: list[str]) -> dict[str, Any]:
    """``{"type": [a, b], ...}`` as ``{"anyOf": [{"type": a, ...}, {"type": b, ...}], ...}``."""
    rest = {key: value for key, value in schema.items() if key != "type"}
    unique = list(dict.fromkeys(types))
    if len(unique) == 1:
        return {"type": unique[0], **rest}
    specific = set().union(*(_TYPE_KEYWORDS.get(t, frozenset()) for t in unique))
    branches = [
        {"type": t, **{k: v for k, v in rest.items() if k in _TYPE_KEYWORDS.get(t, ())}}
        for t in sorted(unique, key=lambda t: t == "null")
    ]
    outer = {key: value for key, value in rest.items() if key not in specific}
    if "anyOf" not in outer:
        return {**outer, "anyOf": branches}
    # The schema has alternatives of its own: both they and one of the types must hold.
    return {**outer, "allOf": [*outer.get("allOf", []), {"anyOf": branches}]}
