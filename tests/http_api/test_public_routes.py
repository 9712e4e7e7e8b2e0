"""The routes that need no API key: health, catalog, estimates, OpenAPI, and error shapes."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import pytest

from tests.support.gateway_app import packaged_catalog

CATALOG = packaged_catalog()["services"]
MICROS = Decimal(1_000_000)


def usd(value: float) -> Decimal:
    """A JSON USD number as the exact decimal it was written as."""
    return Decimal(str(value))


def per_second_cost(service: str, seconds: float) -> tuple[int, Decimal, Decimal]:
    """(billed seconds, seconds x price per second, minimum) from the packaged catalog."""
    price = CATALOG[service]["price"]
    assert price["unit"] == "second"
    billed = max(1, math.ceil(seconds))
    per_second = Decimal(price["micros"]) / price.get("per", 1) / MICROS
    return billed, billed * per_second, Decimal(price["minimum_usd"])


def token_cost(price: dict[str, Any], prompt_tokens: int, output_tokens: int) -> Decimal:
    micros = prompt_tokens * price["micros"] + output_tokens * price["output_tokens_micros"]
    return Decimal(math.ceil(Decimal(micros) / price["per"])) / MICROS


def model_price(service: str, model_id: str) -> dict[str, Any]:
    for model in CATALOG[service]["models"]:
        if model["id"] == model_id:
            price: dict[str, Any] = model.get("price") or CATALOG[service]["price"]
            return price
    raise AssertionError(f"no model {model_id} in {service}")


def default_model(service: str) -> str:
    models = CATALOG[service]["models"]
    model_id: str = next((m["id"] for m in models if m.get("default")), models[0]["id"])
    return model_id


# -- health and catalog ---------------------------------------------------------------------


async def test_healthz_answers_ok(gateway):
    _, client = gateway
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_catalog_lists_every_service_with_its_schema_models_and_pricing(gateway):
    _, client = gateway
    response = await client.get("/catalog")
    assert response.status_code == 200
    services = response.json()["services"]
    assert len(services) == 26
    assert [s["key"] for s in services] == list(CATALOG)
    for entry in services:
        expected = CATALOG[entry["key"]]
        assert entry["input_schema"] == expected["input_schema"], entry["key"]
        assert entry["category"] == expected["category"]
        assert entry["mode"] == expected["mode"]
        assert [m["id"] for m in entry["models"]] == [m["id"] for m in expected["models"]]
        assert [m["id"] for m in entry["models"] if m["default"]] == [default_model(entry["key"])]
        price = expected["price"]
        assert entry["pricing"] == {
            "unit": price["unit"],
            "from_usd": float(price["minimum_usd"]),
            "micros": price["micros"],
            "per": price.get("per", 1),
        }


# -- estimates ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "seconds"),
    [
        ("caption", "30"),  # above the minimum
        ("caption", "2.5"),  # part seconds are billed as whole ones, and the minimum applies
        ("video", "200"),
        ("video", "30"),  # below the minimum
        ("embedding-l4", "0.2"),
        ("musicgen-l4", "86400"),
    ],
)
async def test_a_per_second_estimate_is_seconds_times_the_rate_but_never_below_the_minimum(
    gateway, service: str, seconds: str
):
    _, client = gateway
    response = await client.get(
        "/catalog/estimate", params={"service": service, "seconds": seconds}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    billed, raw_cost, minimum = per_second_cost(service, float(seconds))
    assert body["service"] == service
    assert body["model"] == default_model(service)
    assert body["pricing_unit"] == "second"
    assert body["estimated_seconds"] == billed
    assert body["estimated_units"] == billed
    assert usd(body["price_per_second"]) == raw_cost / billed
    assert usd(body["minimum_cost_usd"]) == minimum
    assert usd(body["estimated_cost_usd"]) == max(raw_cost, minimum)
    assert usd(body["estimated_cost_usd"]) >= minimum
    assert round(body["estimated_cost_usd"], 6) == body["estimated_cost_usd"]


async def test_an_llm_estimate_is_priced_per_token_and_never_below_the_minimum(gateway):
    _, client = gateway
    response = await client.get(
        "/catalog/estimate", params={"service": "llm-4090", "seconds": "30"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    model = default_model("llm-4090")
    price = model_price("llm-4090", model)
    max_tokens = CATALOG["llm-4090"]["input_schema"]["properties"]["max_tokens"]["default"]
    minimum = Decimal(price["minimum_usd"])
    assert body["model"] == model
    assert body["pricing_unit"] == "token"
    assert body["estimated_units"] == max_tokens
    assert usd(body["price_per_1000000_tokens"]) == Decimal(price["micros"]) / MICROS
    assert usd(body["minimum_cost_usd"]) == minimum
    assert usd(body["estimated_cost_usd"]) == max(token_cost(price, 0, max_tokens), minimum)


@pytest.mark.parametrize(
    ("payload", "prompt_tokens"),
    [
        ({"prompt": "x" * 40_000, "max_tokens": 8_000}, 10_000),
        (
            {
                "system": "s" * 4_000,
                "messages": [
                    {"role": "user", "content": "u" * 20_000},
                    {"role": "assistant", "content": "a" * 16_000},
                ],
                "max_tokens": 6_000,
            },
            10_000,
        ),
        ({"prompt": "x" * 40_000, "max_tokens": 8_000, "model": "llama-3.1-8b-instant"}, 10_000),
    ],
    ids=["prompt", "messages", "cheaper-model"],
)
async def test_an_llm_estimate_with_input_prices_its_prompt_and_max_tokens(
    gateway, payload: dict[str, Any], prompt_tokens: int
):
    _, client = gateway
    response = await client.get(
        "/catalog/estimate", params={"service": "llm-4090", "input": json.dumps(payload)}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    model = payload.get("model", default_model("llm-4090"))
    price = model_price("llm-4090", model)
    output_tokens = payload["max_tokens"]
    expected = max(token_cost(price, prompt_tokens, output_tokens), Decimal(price["minimum_usd"]))
    assert body["model"] == model
    assert body["estimated_units"] == prompt_tokens + output_tokens
    assert usd(body["estimated_cost_usd"]) == expected


async def test_an_llm_estimate_for_a_large_job_exceeds_the_minimum(gateway):
    _, client = gateway
    payload = {"prompt": "x" * 40_000, "max_tokens": 8_000}
    response = await client.get(
        "/catalog/estimate", params={"service": "llm-4090", "input": json.dumps(payload)}
    )
    # 10,000 prompt tokens at $0.59/M and 8,000 output tokens at $0.79/M.
    assert usd(response.json()["estimated_cost_usd"]) == Decimal("0.01222")


async def test_an_estimate_for_an_unknown_service_is_a_404(gateway):
    _, client = gateway
    response = await client.get("/catalog/estimate", params={"service": "no-such-service"})
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_service"
    assert "no-such-service" in error["message"]


@pytest.mark.parametrize("params", [{}, {"service": ""}, {"seconds": "30"}])
async def test_an_estimate_without_a_service_is_a_422(gateway, params: dict[str, str]):
    _, client = gateway
    response = await client.get("/catalog/estimate", params=params)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["violations"] == [{"path": "service", "message": "required"}]


@pytest.mark.parametrize("seconds", ["abc", "", "0", "-1", "86401", "nan", "inf"])
async def test_an_estimate_with_seconds_out_of_range_is_a_422(gateway, seconds: str):
    _, client = gateway
    response = await client.get(
        "/catalog/estimate", params={"service": "caption", "seconds": seconds}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert [v["path"] for v in error["violations"]] == ["seconds"]


@pytest.mark.parametrize("raw", ["{not json", "", "{'prompt': 'single quotes'}"])
async def test_an_estimate_whose_input_is_not_json_is_a_400(gateway, raw: str):
    _, client = gateway
    response = await client.get("/catalog/estimate", params={"service": "llm-4090", "input": raw})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


async def test_an_estimate_whose_input_breaks_the_schema_is_a_422_listing_violations(gateway):
    _, client = gateway
    payload = {"prompt": "hi", "max_tokens": "many", "colour": "red"}
    response = await client.get(
        "/catalog/estimate", params={"service": "llm-4090", "input": json.dumps(payload)}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "max_tokens" in {v["path"] for v in error["violations"]}
    assert any("colour" in v["message"] for v in error["violations"])


# -- OpenAPI --------------------------------------------------------------------------------


async def test_openapi_documents_every_route_and_one_run_variant_per_service(gateway):
    _, client = gateway
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"] == "3.1.0"
    assert {"/run", "/status/{job_id}", "/catalog", "/catalog/estimate", "/healthz"} <= set(
        document["paths"]
    )
    assert "post" in document["paths"]["/run"]
    assert "get" in document["paths"]["/status/{job_id}"]
    variants = document["components"]["schemas"]["RunRequest"]["oneOf"]
    assert len(variants) == 26
    assert [v["properties"]["service"]["const"] for v in variants] == list(CATALOG)
    for variant in variants:
        key = variant["properties"]["service"]["const"]
        assert variant["properties"]["input"] == CATALOG[key]["input_schema"], key
        assert set(variant["required"]) == {"service", "input"}


# -- errors ---------------------------------------------------------------------------------


async def test_an_unknown_route_is_a_404_json_error(gateway):
    _, client = gateway
    response = await client.get("/no/such/route")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == "not_found"
    assert error["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [("POST", "/healthz", "GET"), ("GET", "/run", "POST"), ("DELETE", "/catalog", "GET")],
)
async def test_a_wrong_method_is_a_405_json_error(gateway, method: str, path: str, allowed: str):
    _, client = gateway
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["content-type"].startswith("application/json")
    assert allowed in response.headers["allow"]
    assert response.json()["error"]["code"] == "method_not_allowed"
