"""The packaged catalog's models: as many distinct ones as the documents say, each real."""

from __future__ import annotations

import re
from pathlib import Path

from gpubridge.catalog.catalog import Catalog

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_MODELS = 47
"""The number of models the API document promises, and the README repeats."""
MODEL_COUNT = re.compile(r"\b(\d+)\s+(?:open\s+)?models\b")


def distinct_model_ids(catalog: Catalog) -> set[str]:
    return {model.id for service in catalog.services.values() for model in service.models}


def test_the_packaged_catalog_has_the_documents_47_distinct_models() -> None:
    assert len(distinct_model_ids(Catalog.load())) == DOCUMENTED_MODELS


def test_every_model_count_in_the_readme_is_the_catalogs() -> None:
    count = len(distinct_model_ids(Catalog.load()))
    readme = (ROOT / "README.md").read_text()
    written = [int(number) for number in MODEL_COUNT.findall(readme)]
    assert written, "the README should say how many models the catalog has"
    assert set(written) == {count}, written


def test_the_catalog_files_own_header_states_the_same_count() -> None:
    header = (ROOT / "gpubridge" / "catalog" / "catalog.yaml").read_text().split("\nversion:")[0]
    assert [int(n) for n in MODEL_COUNT.findall(header)] == [DOCUMENTED_MODELS]


def test_a_model_shared_by_two_services_loads_the_same_weights_in_both() -> None:
    catalog = Catalog.load()
    sources: dict[str, set[str]] = {}
    for service in catalog.services.values():
        for model in service.models:
            sources.setdefault(model.id, set()).add(model.source)
    assert {model_id: found for model_id, found in sources.items() if len(found) > 1} == {}
