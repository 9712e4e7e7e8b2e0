"""The ceiling a quote holds: the most a job can use, so its metered cost is never cut short."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from gpubridge.catalog.catalog import Catalog
from gpubridge.catalog.loader import load_catalog_file
from gpubridge.catalog.tokens import MESSAGE_ALLOWANCE, TokenCounter
from gpubridge.money import ceil_div

CJK_4000 = ("我们今天在北京的公园里散步。天气很好。" * 211)[:4000]


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    """The packaged catalog, with an empty model cache (so prompts are bounded by bytes)."""
    return Catalog(load_catalog_file(None), tokens=TokenCounter(cache_dir=tmp_path))


def test_a_cjk_prompt_holds_every_byte_and_max_tokens_at_their_rates(catalog: Catalog) -> None:
    service = catalog.service("llm-4090")
    payload = {"prompt": CJK_4000, "max_tokens": 1000}
    model = catalog.validate_input(service, payload)
    price = service.price_for(model)
    assert price.output_tokens_micros is not None
    quote = catalog.quote(service, model, payload)
    prompt = 12_000 + 2 * MESSAGE_ALLOWANCE
    assert quote.ceiling_units == prompt + 1000
    assert quote.ceiling_micros == ceil_div(
        prompt * price.micros + 1000 * price.output_tokens_micros, price.per
    )
    # characters / 4 (the typical estimate) counts 1,000 prompt tokens.
    assert quote.units == 1000 + 1000
    assert quote.ceiling_micros > quote.estimated_micros


def test_without_max_tokens_the_ceiling_allows_the_schemas_default_answer(
    catalog: Catalog,
) -> None:
    service = catalog.service("llm-4090")
    payload = {"messages": [{"role": "user", "content": "x" * 30_000}]}
    quote = catalog.quote(service, catalog.validate_input(service, payload), payload)
    assert quote.ceiling_units == 30_000 + 2 * MESSAGE_ALLOWANCE + 512


def test_a_per_second_service_holds_its_whole_time_limit(tmp_path: Path) -> None:
    catalog = Catalog(
        load_catalog_file(None), time_limit_s=900, tokens=TokenCounter(cache_dir=tmp_path)
    )
    service = catalog.service("video")
    quote = catalog.quote(service, service.default_model, {"prompt": "Waves"})
    assert quote.units == 125  # the typical estimate
    assert quote.ceiling_units == 900
    assert quote.ceiling_micros == 900 * service.price.micros
    # The caller's guess of the seconds changes the estimate, not the ceiling.
    assert catalog.quote(service, service.default_model, {}, seconds=30).ceiling_units == 900


def test_a_declared_max_seconds_shorter_than_the_timeout_bounds_the_ceiling() -> None:
    document = copy.deepcopy(load_catalog_file(None))
    document.services["video"].max_seconds = 240.5
    catalog = Catalog(document, time_limit_s=600)
    service = catalog.service("video")
    assert catalog.time_limit_for(service) == 240.5
    assert catalog.quote(service, service.default_model, {}).ceiling_units == 241
    assert catalog.time_limit_for(catalog.service("bark")) == 600  # declares no maximum


def test_an_audio_service_holds_the_length_of_its_input(catalog: Catalog) -> None:
    service = catalog.service("whisper-l4")
    quote = catalog.quote(service, service.default_model, {}, seconds=3599.2)
    assert quote.ceiling_units == 3600
    assert quote.ceiling_micros == 3600 * service.price.micros


def test_an_output_priced_service_holds_every_output_asked_for(catalog: Catalog) -> None:
    service = catalog.service("image-4090")
    payload = {"prompt": "A fox", "num_outputs": 4}
    quote = catalog.quote(service, service.default_model, payload)
    assert quote.ceiling_units == 4
    assert quote.ceiling_micros == quote.estimated_micros == 4 * 3000


@pytest.mark.parametrize(
    "key", ["llm-4090", "embedding-l4", "caption", "video", "whisper-l4", "tts-l4", "image-4090"]
)
def test_the_ceiling_is_never_below_the_typical_estimate(catalog: Catalog, key: str) -> None:
    service = catalog.service(key)
    for payload in ({}, {"prompt": "x" * 5000, "text": "y" * 5000, "max_tokens": 64}):
        quote = catalog.quote(service, service.default_model, payload)
        assert quote.ceiling_micros >= quote.estimated_micros
        assert quote.ceiling_micros >= quote.price.minimum_micros


def test_the_packaged_sync_services_priced_per_second_declare_a_maximum(catalog: Catalog) -> None:
    """Their hold is that many seconds, not the whole job timeout."""
    for service in catalog.services.values():
        if service.mode == "sync" and service.price.unit == "second":
            assert service.max_seconds is not None and service.max_seconds <= 180, service.key
