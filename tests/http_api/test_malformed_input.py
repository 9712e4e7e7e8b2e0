"""Hostile or malformed input is a 4xx in the usual error shape, before any charge."""

from __future__ import annotations

import json

import pytest

from tests.support.gateway_app import auth, register

JSON = {"Content-Type": "application/json"}
DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 4301


async def funded(app, client, email: str = "you@example.com") -> str:
    key = await register(client, email)
    await app.state.gateway.grant(email, 10_000_000)
    return key


async def balance_micros(client, key: str) -> int:
    response = await client.get("/account/balance", headers=auth(key))
    assert response.status_code == 200
    return round(response.json()["balance"] * 1_000_000)


def error_code(response) -> str:
    code: str = response.json()["error"]["code"]
    return code


@pytest.mark.parametrize(
    ("path", "field"),
    [("/account/register", "email"), ("/run", "input"), ("/v1/chat/completions", "messages")],
)
@pytest.mark.parametrize("value", [DEEP, HUGE_INT], ids=["nested-100000-deep", "4301-digits"])
async def test_a_body_nested_too_deep_or_with_a_huge_integer_is_a_400(gateway, path, field, value):
    app, client = gateway
    key = await funded(app, client)
    body = '{"service": "llm-4090", "' + field + '": ' + value + "}"
    response = await client.post(path, content=body, headers={**JSON, **auth(key)})
    assert response.status_code == 400, response.text[:300]
    assert error_code(response) == "invalid_json"
    assert await balance_micros(client, key) == 10_000_000


async def test_a_body_nested_up_to_the_limit_is_still_parsed(gateway):
    _, client = gateway
    body = '{"email": ' + "[" * 63 + "]" * 63 + "}"
    response = await client.post("/account/register", content=body, headers=JSON)
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_input"


@pytest.mark.parametrize("raw", ["[" * 5000 + "]" * 5000, f'{{"max_tokens": {HUGE_INT}}}'])
async def test_an_estimate_whose_input_nests_too_deep_or_has_a_huge_integer_is_a_400(gateway, raw):
    _, client = gateway
    response = await client.get("/catalog/estimate", params={"service": "llm-4090", "input": raw})
    assert response.status_code == 400, response.text[:300]
    assert error_code(response) == "invalid_json"


async def test_a_daily_limit_too_large_for_a_decimal_is_a_422(gateway):
    app, client = gateway
    key = await funded(app, client)
    for value in ("1e999999999", "-1e999999999"):
        response = await client.post(
            "/account/spending-limit", json={"daily_limit": value}, headers=auth(key)
        )
        assert response.status_code == 422, (value, response.text)
        assert error_code(response) == "invalid_input"


async def test_an_auto_top_up_threshold_too_large_for_a_decimal_is_a_422(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"enabled": True, "threshold": "1e999999999"}
    response = await client.post("/account/auto-topup", json=body, headers=auth(key))
    assert response.status_code == 422, response.text
    assert error_code(response) == "invalid_input"


EMAIL_ROUTES = ["/account/register", "/account/recover", "/account/recover-reset"]


@pytest.mark.parametrize("path", EMAIL_ROUTES)
@pytest.mark.parametrize(
    ("email", "status", "code"),
    [
        ("a\x00b@example.com", 422, "invalid_email"),
        ("a\u200bb@example.com", 422, "invalid_email"),
        ("a\u202eb@example.com", 422, "invalid_email"),
        ("a\ud800b@example.com", 400, "invalid_json"),
    ],
    ids=["nul", "zero-width-space", "bidi-override", "lone-surrogate"],
)
async def test_an_email_with_an_invisible_or_unencodable_character_is_refused(
    gateway, path, email, status, code
):
    _, client = gateway
    # json.dumps writes the lone surrogate as the escape a client would send: "\ud800".
    response = await client.post(path, content=json.dumps({"email": email}), headers=JSON)
    assert response.status_code == status, response.text
    assert error_code(response) == code


async def test_look_alike_spellings_of_an_email_are_one_account(gateway):
    _, client = gateway
    await register(client, "alice@example.com")
    for look_alike in ("\uff41lice@example.com", "ALICE@EXAMPLE.COM", "alice@\uff45xample.com"):
        again = await client.post("/account/register", json={"email": look_alike})
        assert again.status_code == 409, (look_alike, again.text)


async def test_an_integral_float_for_an_integer_field_is_a_422_that_holds_nothing(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "llm-4090", "input": {"prompt": "Hello", "max_tokens": 8000.0}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert [v["path"] for v in error["violations"]] == ["max_tokens"]
    chat = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8000.0}
    response = await client.post("/v1/chat/completions", json=chat, headers=auth(key))
    assert response.status_code == 422, response.text
    assert await balance_micros(client, key) == 10_000_000


async def test_a_limit_with_more_than_six_decimals_is_rounded_down_to_a_micro_usd(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"daily_limit": 9585.397569478371}
    response = await client.post("/account/spending-limit", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    assert response.json()["daily_limit"] == 9585.397569
