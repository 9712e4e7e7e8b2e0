"""The packaged catalog, input validation, price quotes and money helpers."""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator

from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.catalog.models import ModelSpec, Service
from gpubridge.engines.base import Usage
from gpubridge.engines.registry import BUILTIN_TYPES
from gpubridge.errors import ConfigurationError, InvalidInput, NotFound
from gpubridge.money import ceil_div, micros_to_decimal, micros_to_usd, percent_of, usd_to_micros

IMAGE = "https://cdn.example.com/photo.jpg"
MASK = "https://cdn.example.com/mask.png"
AUDIO = "https://cdn.example.com/speech.mp3"

# The document's service tables: key -> (category, "From" price, example input). The
# document writes "..." for the values a user fills in; they are filled in here.
DOCUMENT_SERVICES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # Text & Intelligence
    "llm-4090": (
        "text",
        "0.003",
        {"prompt": "Hello world", "model": "llama-3.3-70b-versatile", "max_tokens": 512},
    ),
    "embedding-l4": ("text", "0.01", {"text": "The quick brown fox"}),
    "llava-4090": ("text", "0.05", {"image_url": IMAGE, "prompt": "What is in this picture?"}),
    "caption": ("text", "0.01", {"image_url": IMAGE}),
    "clip": ("text", "0.02", {"image_url": IMAGE}),
    # Image & Video
    "image-4090": ("image", "0.003", {"prompt": "A lighthouse at dawn"}),
    "video": ("image", "0.30", {"prompt": "Waves rolling in", "image_url": IMAGE}),
    "inpaint": (
        "image",
        "0.04",
        {"image_url": IMAGE, "mask_url": MASK, "prompt": "A red vase of tulips"},
    ),
    "controlnet": ("image", "0.05", {"image_url": IMAGE, "prompt": "A futuristic city"}),
    "img2img": ("image", "0.04", {"image_url": IMAGE, "prompt": "As a watercolour painting"}),
    "image-variation": ("image", "0.04", {"image_url": IMAGE}),
    "photomaker": ("image", "0.05", {"image_url": IMAGE, "prompt": "A portrait as an astronaut"}),
    "sticker": ("image", "0.02", {"image_url": IMAGE, "prompt": "A happy cat sticker"}),
    "ad-inpaint": ("image", "0.05", {"image_url": IMAGE, "prompt": "On a marble kitchen counter"}),
    "animate": ("image", "0.10", {"image_url": IMAGE}),
    # Audio & Speech
    "whisper-l4": ("audio", "0.05", {"audio_url": AUDIO}),
    "whisperx": ("audio", "0.05", {"audio_url": AUDIO}),
    "tts-l4": ("audio", "0.02", {"text": "Hello from gpubridge", "voice": "af_alloy"}),
    "bark": ("audio", "0.03", {"text": "Hello [laughter]"}),
    "musicgen-l4": ("audio", "0.05", {"prompt": "Lo-fi piano beat", "duration_seconds": 10}),
    "voice-clone": ("audio", "0.10", {"audio_url": AUDIO}),
    # Utilities
    "rembg-l4": ("utility", "0.01", {"image_url": IMAGE}),
    "upscale-l4": ("utility", "0.04", {"image_url": IMAGE, "scale": 4}),
    "face-restore": ("utility", "0.02", {"image_url": IMAGE}),
    "ocr": ("utility", "0.01", {"image_url": IMAGE}),
    "segmentation": ("utility", "0.02", {"image_url": IMAGE}),
}

DOCUMENT_LLM_IDS = [
    "llama-3.3-70b-versatile",
    "llama-3.1-8b-instant",
    "meta-llama/llama-4-scout-17b-16e-instruct",
    "qwen/qwen3-32b",
]
DOCUMENT_IMAGE_IDS = [
    "flux-schnell",
    "flux-dev",
    "flux-1.1-pro",
    "sd-3.5-large",
    "sdxl-lightning",
    "playground-v2.5",
]
DOCUMENT_TTS_VOICES = [
    "af_alloy",
    "af_nova",
    "af_sky",
    "am_adam",
    "am_echo",
    "am_onyx",
    "bf_emma",
    "bm_george",
]

HUB_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return Catalog.load()


def model_of(service: Service, model_id: str) -> ModelSpec:
    model = service.model(model_id)
    assert model is not None, model_id
    return model


def violations_of(error: pytest.ExceptionInfo[InvalidInput]) -> list[dict[str, str]]:
    found: list[dict[str, str]] = error.value.details["violations"]
    return found


# --- The packaged catalog ------------------------------------------------------------------------


def test_the_packaged_catalog_loads_with_26_services_each_with_a_default_model(
    catalog: Catalog,
) -> None:
    assert len(catalog.services) == 26
    for service in catalog.services.values():
        assert service.models, service.key
        assert service.default_model in service.models


def test_the_service_keys_are_exactly_the_documents(catalog: Catalog) -> None:
    assert set(catalog.services) == set(DOCUMENT_SERVICES)


def test_each_service_is_in_the_documents_category(catalog: Catalog) -> None:
    for key, (category, _, _) in DOCUMENT_SERVICES.items():
        assert catalog.services[key].category == category, key


def test_the_categories_hold_5_text_10_image_6_audio_and_5_utility_services(
    catalog: Catalog,
) -> None:
    counts: dict[str, int] = {}
    for service in catalog.services.values():
        counts[service.category] = counts.get(service.category, 0) + 1
    assert counts == {"text": 5, "image": 10, "audio": 6, "utility": 5}


def test_every_service_has_exactly_one_default_model(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        assert sum(1 for model in service.models if model.default) == 1, key


def test_each_schemas_model_enum_lists_the_services_models_and_defaults_to_the_default(
    catalog: Catalog,
) -> None:
    for key, service in catalog.services.items():
        model_property = service.input_schema["properties"]["model"]
        assert model_property["enum"] == [model.id for model in service.models], key
        assert model_property["default"] == service.default_model.id, key


def test_every_model_source_is_a_hub_repository_id(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        for model in service.models:
            assert HUB_REPO_ID.match(model.source), (key, model.id, model.source)


def test_the_llm_models_are_the_documents_with_the_70b_as_default(catalog: Catalog) -> None:
    service = catalog.services["llm-4090"]
    assert [model.id for model in service.models] == DOCUMENT_LLM_IDS
    assert service.default_model.id == "llama-3.3-70b-versatile"
    big = service.price_for(model_of(service, "llama-3.3-70b-versatile"))
    small = service.price_for(model_of(service, "llama-3.1-8b-instant"))
    assert big.unit == small.unit == "token"
    assert big.micros > small.micros


def test_the_image_models_are_the_documents_priced_per_output(catalog: Catalog) -> None:
    service = catalog.services["image-4090"]
    assert [model.id for model in service.models] == DOCUMENT_IMAGE_IDS
    assert service.default_model.id == "flux-schnell"
    prices = {model.id: service.price_for(model) for model in service.models}
    assert all(price.unit == "output" for price in prices.values())
    assert prices["flux-schnell"].micros == usd_to_micros("0.003")
    assert prices["flux-dev"].micros == usd_to_micros("0.025")
    assert prices["flux-1.1-pro"].micros == usd_to_micros("0.04")


def test_the_document_pricing_rule_gives_each_service_its_unit(catalog: Catalog) -> None:
    units = {key: service.price.unit for key, service in catalog.services.items()}
    assert units.pop("llm-4090") == "token"
    assert units.pop("whisper-l4") == "audio_second"
    assert units.pop("whisperx") == "audio_second"
    assert units.pop("image-4090") == "output"
    assert set(units.values()) == {"second"}


def test_tts_lists_more_than_30_kokoro_voices_including_the_documents(catalog: Catalog) -> None:
    voices = catalog.services["tts-l4"].input_schema["properties"]["voice"]["enum"]
    assert len(voices) > 30
    assert len(set(voices)) == len(voices)
    assert set(DOCUMENT_TTS_VOICES) <= set(voices)


def test_every_service_has_a_local_backend_of_a_builtin_runtime(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        assert service.backends, key
        for backend in service.backends:
            assert backend.type in BUILTIN_TYPES, (key, backend.type)
    llm = [b.type for b in catalog.services["llm-4090"].backends]
    assert llm[-1] == "transformers-llm"  # the CPU fallback after the GPU runtime


def test_output_schemas_are_valid_json_schemas(catalog: Catalog) -> None:
    schemas = {k: s.output_schema for k, s in catalog.services.items() if s.output_schema}
    assert set(schemas) >= {"llm-4090", "embedding-l4"}
    for schema in schemas.values():
        Draft202012Validator.check_schema(schema)


def test_typical_llm_and_embedding_outputs_match_their_output_schemas(catalog: Catalog) -> None:
    llm = catalog.services["llm-4090"].output_schema
    embedding = catalog.services["embedding-l4"].output_schema
    assert llm is not None and embedding is not None
    usage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8}
    Draft202012Validator(llm).validate({"text": "Hi!", "finish_reason": "stop", "usage": usage})
    Draft202012Validator(embedding).validate({"embedding": [0.1, 0.2], "dimensions": 2})
    Draft202012Validator(embedding).validate({"embeddings": [[0.1], [0.2]], "dimensions": 1})
    assert not Draft202012Validator(embedding).is_valid({"dimensions": 2})


def test_every_input_schema_forbids_unknown_fields(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        assert service.input_schema["additionalProperties"] is False, key


def test_every_schema_default_satisfies_its_own_property(catalog: Catalog) -> None:
    for key, service in catalog.services.items():
        for name, prop in service.input_schema["properties"].items():
            if "default" in prop:
                errors = list(Draft202012Validator(prop).iter_errors(prop["default"]))
                assert not errors, (key, name, [e.message for e in errors])


# --- Input validation ---------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(DOCUMENT_SERVICES))
def test_the_documents_example_input_validates_and_selects_the_default_model(
    catalog: Catalog, key: str
) -> None:
    service = catalog.service(key)
    model = catalog.validate_input(service, DOCUMENT_SERVICES[key][2])
    assert model == service.default_model


def test_the_documents_example_with_its_placeholders_left_in_still_validates(
    catalog: Catalog,
) -> None:
    service = catalog.service("inpaint")
    catalog.validate_input(service, {"image_url": "...", "mask_url": "...", "prompt": "..."})


def test_llm_input_needs_a_prompt_or_messages(catalog: Catalog) -> None:
    service = catalog.service("llm-4090")
    catalog.validate_input(service, {"messages": [{"role": "user", "content": "Hi"}]})
    with pytest.raises(InvalidInput):
        catalog.validate_input(service, {"max_tokens": 10})


def test_embeddings_accept_a_list_of_strings(catalog: Catalog) -> None:
    service = catalog.service("embedding-l4")
    catalog.validate_input(service, {"text": ["one", "two"], "normalize": False})
    with pytest.raises(InvalidInput):
        catalog.validate_input(service, {"text": []})


def test_an_unknown_field_and_a_wrong_type_are_both_reported(catalog: Catalog) -> None:
    service = catalog.service("llm-4090")
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(service, {"prompt": "Hello", "max_tokens": "lots", "colour": "blue"})
    violations = violations_of(error)
    assert len(violations) == 2
    by_path = {v["path"]: v["message"] for v in violations}
    assert "max_tokens" in by_path
    assert "(input)" in by_path and "colour" in by_path["(input)"]
    assert error.value.code == "invalid_input"
    assert "max_tokens" in error.value.message and "colour" in error.value.message


def test_out_of_range_values_are_reported_with_their_paths(catalog: Catalog) -> None:
    service = catalog.service("upscale-l4")
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(service, {"image_url": IMAGE, "scale": 3})
    assert [v["path"] for v in violations_of(error)] == ["scale"]

    service = catalog.service("llm-4090")
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(
            service, {"prompt": "Hi", "max_tokens": 9000, "temperature": 2.5, "top_p": 0}
        )
    assert sorted(v["path"] for v in violations_of(error)) == [
        "max_tokens",
        "temperature",
        "top_p",
    ]


def test_an_unknown_tts_voice_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(catalog.service("tts-l4"), {"text": "Hi", "voice": "robot"})
    assert [v["path"] for v in violations_of(error)] == ["voice"]


def test_an_unknown_model_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(catalog.service("llm-4090"), {"prompt": "Hi", "model": "gpt-5"})
    assert [v["path"] for v in violations_of(error)] == ["model"]


def test_an_unknown_service_offers_the_closest_service_key(catalog: Catalog) -> None:
    with pytest.raises(NotFound) as error:
        catalog.service("llm-409")
    assert error.value.code == "unknown_service"
    assert "did you mean `llm-4090`?" in error.value.message
    assert error.value.details == {"suggestion": "llm-4090"}
    with pytest.raises(NotFound) as unlike:
        catalog.service("no-such-service")
    assert unlike.value.code == "unknown_service" and unlike.value.details == {}
    assert "did you mean" not in unlike.value.message


def test_a_model_missing_from_a_schema_without_a_model_list_offers_the_closest(
    tmp_path: Path,
) -> None:
    service = minimal_service()
    service["input_schema"]["properties"]["model"] = {"type": "string"}
    catalog = Catalog.load(write_catalog(tmp_path, {"caption": service}))
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(
            catalog.service("caption"), {"image_url": IMAGE, "model": "blip-larg"}
        )
    assert error.value.code == "invalid_input"
    assert violations_of(error) == [
        {
            "path": "model",
            "message": "unknown model (did you mean `blip-large`?)",
            "suggestion": "blip-large",
        }
    ]


def test_a_model_known_to_the_service_is_selected(catalog: Catalog) -> None:
    service = catalog.service("image-4090")
    model = catalog.validate_input(service, {"prompt": "A fox", "model": "flux-dev"})
    assert model.id == "flux-dev"
    assert model.source == "black-forest-labs/FLUX.1-dev"


@pytest.mark.parametrize("value", [8000.0, 16.0, True])
def test_an_integer_field_refuses_a_float_or_a_boolean_even_if_integral(
    catalog: Catalog, value: object
) -> None:
    service = catalog.service("llm-4090")
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(service, {"prompt": "Hi", "max_tokens": value})
    assert [v["path"] for v in violations_of(error)] == ["max_tokens"]
    assert catalog.validate_input(service, {"prompt": "Hi", "max_tokens": 16}).default


def test_a_non_object_input_is_rejected(catalog: Catalog) -> None:
    with pytest.raises(InvalidInput) as error:
        catalog.validate_input(catalog.service("caption"), ["not", "an", "object"])
    assert violations_of(error)[0]["path"] == "(input)"


# --- Quotes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(DOCUMENT_SERVICES))
def test_the_default_models_quote_for_the_documents_example_is_its_from_price(
    catalog: Catalog, key: str
) -> None:
    service = catalog.service(key)
    _, from_price, example = DOCUMENT_SERVICES[key]
    model = catalog.validate_input(service, example)
    assert service.price.minimum_usd == from_price
    assert service.price_for(model).minimum_usd == from_price
    assert catalog.quote(service, model, example).estimated_micros == usd_to_micros(from_price)


def test_hello_world_with_512_tokens_on_the_70b_costs_the_minimum(catalog: Catalog) -> None:
    service = catalog.service("llm-4090")
    payload = {"prompt": "Hello world", "max_tokens": 512}
    quote = catalog.quote(service, catalog.validate_input(service, payload), payload)
    assert quote.units == 3 + 512
    assert quote.estimated_micros == 3000


def test_a_long_prompt_with_a_huge_max_tokens_is_priced_exactly_per_token(
    catalog: Catalog,
) -> None:
    service = catalog.service("llm-4090")
    payload = {"prompt": "x" * 40_000, "max_tokens": 8192}
    model = catalog.validate_input(service, payload)
    price = service.price_for(model)
    assert price.output_tokens_micros is not None
    quote = catalog.quote(service, model, payload)
    prompt_tokens, completion_tokens = 10_000, 8192
    expected = ceil_div(
        prompt_tokens * price.micros + completion_tokens * price.output_tokens_micros, price.per
    )
    assert quote.units == prompt_tokens + completion_tokens
    assert quote.estimated_micros == expected == 12_372
    assert isinstance(quote.estimated_micros, int)


def test_the_8b_model_is_cheaper_than_the_70b_for_the_same_job(catalog: Catalog) -> None:
    service = catalog.service("llm-4090")
    payload = {"prompt": "x" * 40_000, "max_tokens": 8192}
    big = catalog.quote(service, model_of(service, "llama-3.3-70b-versatile"), payload)
    small = catalog.quote(service, model_of(service, "llama-3.1-8b-instant"), payload)
    assert small.estimated_micros < big.estimated_micros


def test_image_outputs_are_billed_flat_per_output(catalog: Catalog) -> None:
    service = catalog.service("image-4090")
    payload = {"prompt": "A fox", "model": "flux-dev", "num_outputs": 3}
    quote = catalog.quote(service, catalog.validate_input(service, payload), payload)
    assert quote.units == 3
    assert quote.estimated_micros == 3 * 25_000


def test_per_second_services_quote_the_seconds_asked_for(catalog: Catalog) -> None:
    service = catalog.service("video")
    quote = catalog.quote(service, service.default_model, {}, seconds=200)
    assert quote.units == 200
    assert quote.estimated_micros == 200 * service.price.micros


def test_actual_token_cost_is_the_metered_usage_floored_at_the_minimum(
    catalog: Catalog,
) -> None:
    service = catalog.service("llm-4090")
    payload = {"prompt": "x" * 40_000, "max_tokens": 8192}
    quote = catalog.quote(service, catalog.validate_input(service, payload), payload)
    assert quote.estimated_micros == 12_372

    short = Usage(prompt_tokens=10, completion_tokens=5)
    assert catalog.actual_cost(quote.price, short) == 3000

    between = Usage(prompt_tokens=10_000, completion_tokens=1000)
    assert catalog.actual_cost(quote.price, between) == ceil_div(
        10_000 * 590_000 + 1000 * 790_000, 1_000_000
    )

    # Above the estimate, it is still what was used: the runner caps it at the hold.
    runaway = Usage(prompt_tokens=1_000_000, completion_tokens=100_000)
    assert catalog.actual_cost(quote.price, runaway) == ceil_div(
        1_000_000 * 590_000 + 100_000 * 790_000, 1_000_000
    )


def test_actual_compute_cost_is_the_metered_seconds_floored_at_the_minimum(
    catalog: Catalog,
) -> None:
    service = catalog.service("video")
    quote = catalog.quote(service, service.default_model, {}, seconds=200)
    rate = service.price.micros
    assert catalog.actual_cost(quote.price, Usage(compute_seconds=150.0)) == 150 * rate
    assert catalog.actual_cost(quote.price, Usage(compute_seconds=900.0)) == 900 * rate
    assert catalog.actual_cost(quote.price, Usage(compute_seconds=1.0)) == usd_to_micros("0.30")


def test_actual_audio_cost_is_floored_at_the_minimum(catalog: Catalog) -> None:
    service = catalog.service("whisper-l4")
    quote = catalog.quote(service, service.default_model, {}, seconds=3600)
    assert catalog.actual_cost(quote.price, Usage(audio_seconds=12.5)) == usd_to_micros("0.05")
    hour = catalog.actual_cost(quote.price, Usage(audio_seconds=3600.0))
    assert hour == 3600 * service.price.micros == quote.estimated_micros


def test_actual_output_cost_counts_the_outputs_made(catalog: Catalog) -> None:
    service = catalog.service("image-4090")
    payload = {"prompt": "A fox", "num_outputs": 4}
    quote = catalog.quote(service, service.default_model, payload)
    assert catalog.actual_cost(quote.price, Usage(outputs=2)) == 2 * 3000
    assert catalog.actual_cost(quote.price, Usage(outputs=0)) == 3000


# --- Broken catalogs ----------------------------------------------------------------------------


def minimal_service() -> dict[str, Any]:
    return {
        "name": "Image Captioning",
        "category": "text",
        "description": "Describe an image.",
        "mode": "sync",
        "estimated_seconds": 2,
        "price": {"unit": "second", "micros": 2400, "minimum_usd": "0.01"},
        "models": [
            {
                "id": "blip-large",
                "source": "Salesforce/blip-image-captioning-large",
                "default": True,
            }
        ],
        "input_schema": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image_url"],
            "properties": {"image_url": {"type": "string", "format": "uri", "minLength": 1}},
        },
        "backends": [],
    }


def write_catalog(tmp_path: Path, services: dict[str, Any]) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "services": services}), "utf-8")
    return path


def test_a_minimal_operator_catalog_loads(tmp_path: Path) -> None:
    catalog = Catalog.load(write_catalog(tmp_path, {"caption": minimal_service()}))
    assert list(catalog.services) == ["caption"]
    assert catalog.services["caption"].key == "caption"


def test_the_packaged_catalog_survives_a_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(packaged_catalog_text())), "utf-8")
    assert Catalog.load(path).document == Catalog.load().document


def test_a_wrong_price_unit_refuses_to_load_naming_the_service_and_field(
    tmp_path: Path,
) -> None:
    service = minimal_service()
    service["price"]["unit"] = "minute"
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(write_catalog(tmp_path, {"caption": service}))
    assert "'caption'" in error.value.message
    assert "price.unit" in error.value.message


def test_an_invalid_input_schema_refuses_to_load_naming_the_service_and_field(
    tmp_path: Path,
) -> None:
    service = minimal_service()
    service["input_schema"]["properties"]["image_url"]["type"] = "link"
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(write_catalog(tmp_path, {"caption": service}))
    assert "'caption'" in error.value.message
    assert "input_schema" in error.value.message


def test_an_input_schema_that_is_not_an_object_refuses_to_load(tmp_path: Path) -> None:
    service = minimal_service()
    service["input_schema"] = {"type": "array"}
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(write_catalog(tmp_path, {"caption": service}))
    assert "'caption'" in error.value.message and "input_schema" in error.value.message


def test_a_minimum_with_more_than_six_decimals_refuses_to_load(tmp_path: Path) -> None:
    service = minimal_service()
    service["price"]["minimum_usd"] = "0.0000001"
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(write_catalog(tmp_path, {"caption": service}))
    assert "price.minimum_usd" in error.value.message


def test_two_default_models_refuse_to_load(tmp_path: Path) -> None:
    service = minimal_service()
    service["models"].append({"id": "blip-base", "source": "x/y", "default": True})
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(write_catalog(tmp_path, {"caption": service}))
    assert "'caption'" in error.value.message and "more than one default" in error.value.message


def test_every_problem_in_a_broken_copy_of_the_packaged_catalog_is_listed(
    tmp_path: Path,
) -> None:
    document = yaml.safe_load(packaged_catalog_text())
    broken = copy.deepcopy(document)
    broken["services"]["ocr"]["price"]["unit"] = "page"
    broken["services"]["bark"]["mode"] = "sometimes"
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(broken), "utf-8")
    with pytest.raises(ConfigurationError) as error:
        Catalog.load(path)
    message = error.value.message
    assert "service 'ocr', field price.unit" in message
    assert "service 'bark', field mode" in message


def test_a_catalog_that_is_not_yaml_refuses_to_load(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("version: 1\nservices: {caption: [unclosed\n", "utf-8")
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        Catalog.load(path)


def test_a_missing_catalog_file_refuses_to_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read catalog"):
        Catalog.load(tmp_path / "absent.yaml")


# --- Money --------------------------------------------------------------------------------------


def test_usd_to_micros_is_exact() -> None:
    assert usd_to_micros("0.003") == 3000
    assert usd_to_micros("0.30") == 300_000
    assert usd_to_micros("10") == 10_000_000
    assert usd_to_micros(25) == 25_000_000
    assert usd_to_micros(Decimal("0.000001")) == 1
    assert usd_to_micros("123456.789012") == 123_456_789_012


def test_usd_to_micros_refuses_more_than_six_decimals() -> None:
    with pytest.raises(ValueError, match="more than 6 decimals"):
        usd_to_micros("0.0000001")


def test_usd_to_micros_refuses_floats_and_non_numbers() -> None:
    with pytest.raises(TypeError):
        usd_to_micros(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a USD amount"):
        usd_to_micros("ten dollars")


@pytest.mark.parametrize("value", ["1e999999999", "-1e999999999", "9223372036854.775808"])
def test_usd_to_micros_refuses_amounts_beyond_a_64_bit_count_of_micros(value: str) -> None:
    with pytest.raises(ValueError, match="out of range"):
        usd_to_micros(value)
    assert usd_to_micros("9223372036854.775807") == 2**63 - 1


@pytest.mark.parametrize("value", ["1e-999999999", "1.0000000000000000000000000001"])
def test_usd_to_micros_refuses_tiny_fractions_and_long_decimals_rather_than_rounding(
    value: str,
) -> None:
    with pytest.raises(ValueError, match="more than 6 decimals"):
        usd_to_micros(value)
    assert usd_to_micros("1.000000000000000000000000000000000") == 1_000_000


def test_micros_convert_back_to_usd() -> None:
    assert micros_to_usd(3000) == 0.003
    assert micros_to_decimal(1) == Decimal("0.000001")


def test_ceil_div_rounds_up_and_percent_of_rounds_half_up() -> None:
    assert ceil_div(7, 2) == 4
    assert ceil_div(8, 2) == 4
    assert ceil_div(0, 5) == 0
    assert percent_of(1000, 5) == 50
    assert percent_of(15, 10) == 2
    assert percent_of(14, 10) == 1
