"""The OpenAPI document's schemas, as clients that turn operations into tools read them."""

from __future__ import annotations

from typing import Any

import pytest

from gpubridge.catalog import Catalog
from gpubridge.http_api.openapi import openapi_document
from tests.support.schema_checks import portability_problems


def schemas_of(document: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every schema in the document: the components' and each ``schema`` under the paths."""
    found = [(f"components/{k}", v) for k, v in document["components"]["schemas"].items()]

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "schema":
                    found.append((path, value))
                else:
                    walk(value, f"{path}/{key}")
        elif isinstance(node, list):
            for index, value in enumerate(node):
                walk(value, f"{path}/{index}")

    walk(document["paths"], "paths")
    return found


@pytest.mark.parametrize("x402", [False, True])
def test_every_schema_in_the_document_has_one_type_per_schema(x402):
    document = openapi_document(Catalog.load(), x402=x402)
    schemas = schemas_of(document)

    assert len(schemas) > 100
    problems = [p for path, schema in schemas for p in portability_problems(schema, path)]
    assert problems == []
    job = document["components"]["schemas"]["Job"]["properties"]
    assert job["cost_usd"] == {"anyOf": [{"type": "number"}, {"type": "null"}]}
