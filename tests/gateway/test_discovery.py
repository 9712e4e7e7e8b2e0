"""Example inputs made from the catalog's schemas, and the Bazaar description of POST /run."""

from __future__ import annotations

from typing import Any

import pytest
from x402.extensions.bazaar import BodyDiscoveryExtension, validate_discovery_extension
from x402.extensions.bazaar.types import parse_discovery_extension

from gpubridge.catalog import Catalog, Service
from gpubridge.gateway.discovery import example_input, run_extension

BASE = "https://gpu.example.com"


def service_with(schema: dict[str, Any]) -> Service:
    return Service.model_validate(
        {
            "key": "probe",
            "name": "Probe",
            "category": "utility",
            "description": "A probe.",
            "mode": "sync",
            "estimated_seconds": 1,
            "price": {"unit": "output", "micros": 1000, "minimum_usd": "0.001"},
            "models": [{"id": "probe", "source": "probe"}],
            "input_schema": {"type": "object", **schema},
        }
    )


@pytest.mark.parametrize("starter", [False, True])
def test_the_example_input_of_every_packaged_service_passes_its_own_validation(starter):
    catalog = Catalog.load(starter=starter)

    for service in catalog.services.values():
        example = example_input(service)
        catalog.validate_input(service, example)  # raises InvalidInput if not
        assert example, service.key


def test_an_example_fills_the_required_fields_of_the_first_alternative_only():
    llm = Catalog.load().services["llm-4090"]
    inpaint = Catalog.load().services["inpaint"]

    assert example_input(llm) == {"prompt": "Hello, world"}
    assert example_input(inpaint) == {
        "image_url": "https://example.com/image.png",
        "mask_url": "https://example.com/mask.png",
        "prompt": "Hello, world",
    }


def test_an_example_takes_what_the_schema_offers_before_a_placeholder():
    service = service_with(
        {
            "required": ["a", "b", "c", "d", "e", "f", "g"],
            "properties": {
                "a": {"type": "string", "examples": ["from examples"]},
                "b": {"type": "integer", "default": 4, "minimum": 1},
                "c": {"enum": ["first", "second"]},
                "d": {"type": "number", "exclusiveMinimum": 0, "maximum": 0.5},
                "e": {"type": "array", "minItems": 2, "items": {"type": "boolean"}},
                "f": {"type": "string", "minLength": 20},
                "g": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string"}]},
            },
        }
    )

    example = example_input(service)

    assert example == {
        "a": "from examples",
        "b": 4,
        "c": "first",
        "d": 0.5,
        "e": [False, False],
        "f": example["f"],
        "g": 3,
    }
    assert len(example["f"]) >= 20


@pytest.mark.parametrize("key", list(Catalog.load().services))
def test_the_run_description_of_every_service_is_one_the_sdk_validates(key):
    service = Catalog.load().services[key]

    extension = parse_discovery_extension(run_extension(service, BASE))

    assert isinstance(extension, BodyDiscoveryExtension)
    assert validate_discovery_extension(extension).valid
    assert extension.info.input.method == "POST"
    assert extension.info.input.body == {"service": key, "input": example_input(service)}
    assert extension.info.output is not None
    assert extension.info.output.example["status_url"].startswith(f"{BASE}/status/")
