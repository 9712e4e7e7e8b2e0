"""Input schemas are proven valid JSON Schemas once, and the proof is kept by digest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.catalog.schemacheck import (
    InvalidSchema,
    SchemaChecks,
    packaged_digests,
    schema_digest,
)

GOOD: dict[str, Any] = {"type": "object", "properties": {"prompt": {"type": "string"}}}
BAD: dict[str, Any] = {"type": "object", "properties": {"prompt": {"type": "text"}}}


def test_the_digest_is_of_the_content_whatever_the_order_of_its_keys() -> None:
    reordered = {"properties": {"prompt": {"type": "string"}}, "type": "object"}
    assert schema_digest(GOOD) == schema_digest(reordered)
    assert schema_digest(GOOD) != schema_digest(BAD)


def test_an_invalid_schema_is_refused_every_time_and_never_remembered(tmp_path: Path) -> None:
    checks = SchemaChecks(tmp_path / "checked")
    for _ in range(2):
        with pytest.raises(InvalidSchema):
            checks.check(BAD)
    checks.save()
    assert schema_digest(BAD) not in checks.known
    assert not (tmp_path / "checked").exists()


def test_a_proven_schema_is_kept_in_the_file_for_the_next_start(tmp_path: Path) -> None:
    path = tmp_path / "data" / "checked"
    first = SchemaChecks(path)
    first.check(GOOD)
    first.save()
    assert path.read_text().split() == [schema_digest(GOOD)]

    later = SchemaChecks(path)
    assert later.known == {schema_digest(GOOD)}
    later.check(GOOD)
    later.save()  # nothing new: the file stays as it was
    assert path.read_text().split() == [schema_digest(GOOD)]


def test_a_remembered_digest_skips_the_check(tmp_path: Path) -> None:
    """What the file says is trusted (it lives in the operator's data directory)."""
    path = tmp_path / "checked"
    path.write_text(schema_digest(BAD) + "\n")
    SchemaChecks(path).check(BAD)


def test_an_unreadable_or_unwritable_file_only_costs_the_checks_again(tmp_path: Path) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    checks = SchemaChecks(blocked / "checked")
    assert checks.known == set()
    checks.check(GOOD)
    checks.save()
    assert checks.known == {schema_digest(GOOD)}
    assert list(tmp_path.iterdir()) == [blocked]


def test_loading_the_catalog_with_a_file_proves_its_schemas_once(tmp_path: Path) -> None:
    path = tmp_path / "checked"
    checks = SchemaChecks(path, packaged=False)
    catalog = Catalog.load(starter=True, schema_checks=checks)
    checks.save()
    digests = {schema_digest(s.input_schema) for s in catalog.services.values()}
    assert digests <= set(path.read_text().split())

    again = SchemaChecks(path, packaged=False)
    Catalog.load(starter=True, schema_checks=again)
    assert again.seen <= again.known
    again.save()
    assert set(path.read_text().split()) == checks.known


def test_the_shipped_digests_are_those_of_the_packaged_catalog() -> None:
    assert SchemaChecks().packaged == packaged_digests(), (
        "the packaged catalog's input schemas changed: run "
        "`.venv/bin/python -c 'from gpubridge.catalog.schemacheck import write_packaged; "
        "write_packaged()'` and commit gpubridge/catalog/packaged.checked"
    )


def test_a_first_start_proves_only_the_schemas_the_operator_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proven: list[dict[str, Any]] = []
    monkeypatch.setattr(Draft202012Validator, "check_schema", staticmethod(proven.append))
    path = tmp_path / "checked"

    checks = SchemaChecks(path)
    Catalog.load(starter=True, schema_checks=checks)
    checks.save()
    assert proven == [] and not path.exists()

    own = yaml.safe_load(packaged_catalog_text())
    own["services"]["caption"]["input_schema"]["properties"]["detail"] = {"type": "boolean"}
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(yaml.safe_dump(own))
    Catalog.load(catalog, starter=True, schema_checks=SchemaChecks(path))
    assert [schema["properties"].get("detail") for schema in proven] == [{"type": "boolean"}]
