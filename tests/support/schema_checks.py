"""What clients with a single-type schema dialect (Gemini function declarations, OpenAPI 3.0
subsets, the MCP Inspector's strict check) reject in a JSON Schema."""

from __future__ import annotations

from typing import Any

JSON_TYPES = {"array", "boolean", "integer", "null", "number", "object", "string"}
PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "array": (list,),
    "boolean": (bool,),
    "integer": (int,),
    "null": (type(None),),
    "number": (int, float),
    "object": (dict,),
    "string": (str,),
}


DATA_KEYWORDS = {"const", "default", "enum", "example", "examples"}
SCHEMA_MAPS = {"$defs", "definitions", "dependentSchemas", "patternProperties", "properties"}


def portability_problems(node: Any, path: str = "") -> list[str]:
    """What a single-type dialect rejects in a schema: ``type`` as a list or not a JSON type,
    OpenAPI 3.0's ``nullable``, and an ``enum`` with values its own ``type`` forbids (a null
    smuggled into a string enum). A schema without ``type`` is fine."""
    problems: list[str] = []
    if isinstance(node, list):
        for index, value in enumerate(node):
            problems += portability_problems(value, f"{path}/{index}")
        return problems
    if not isinstance(node, dict):
        return problems
    where = path or "/"
    kind = node.get("type")
    if isinstance(kind, list):
        problems.append(f"{where}: type is a list {kind}")
    elif "type" in node and (not isinstance(kind, str) or kind not in JSON_TYPES):
        problems.append(f"{where}: type {kind!r} is not a JSON type")
    if "nullable" in node:
        problems.append(f"{where}: nullable")
    if isinstance(kind, str) and isinstance(node.get("enum"), list):
        allowed = PYTHON_TYPES.get(kind, ())
        stray = [v for v in node["enum"] if not isinstance(v, allowed)]
        if stray:
            problems.append(f"{where}: enum values {stray} are not {kind}")
    for key, value in node.items():
        if key in SCHEMA_MAPS and isinstance(value, dict):
            for name, schema in value.items():
                problems += portability_problems(schema, f"{path}/{key}/{name}")
        elif key not in DATA_KEYWORDS:
            problems += portability_problems(value, f"{path}/{key}")
    return problems
