"""POST /run and the job lifecycle through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs
from tests.support.gateway_app import auth, register

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}


async def funded(app, client, usd_micros: int = 10_000_000, email: str = "you@example.com") -> str:
    key = await register(client, email)
    await app.state.gateway.grant(email, usd_micros)
    return key


async def balance_micros(client, key: str) -> int:
    response = await client.get("/account/balance", headers=auth(key))
    assert response.status_code == 200
    return round(response.json()["balance"] * 1_000_000)


async def test_a_sync_llm_job_completes_inline_and_charges_its_cost(gateway):
    app, client = gateway
    key = await funded(app, client)
    response = await client.post("/run", json=PROMPT, headers=auth(key))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed"
    assert isinstance(job["output"]["text"], str) and job["output"]["text"]
    assert job["backend"] == "upstream"
    assert job["usage"]["completion_tokens"] > 0
    assert job["cost_usd"] == 0.003  # the minimum charge covers a short prompt
    assert await balance_micros(client, key) == 10_000_000 - 3_000

    status = await client.get(f"/status/{job['id']}")
    assert status.status_code == 200
    assert status.json()["output"] == job["output"]
    history = (await client.get("/account/jobs", headers=auth(key))).json()
    assert history["total"] == 1 and history["jobs"][0]["id"] == job["id"]


async def test_invalid_input_is_a_422_listing_every_violation_and_charges_nothing(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "llm-4090", "input": {"prompt": 5, "max_tokens": "many", "colour": "red"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    paths = {v["path"] for v in error["violations"]}
    assert {"prompt", "max_tokens"} <= paths
    assert any("colour" in v["message"] for v in error["violations"])
    assert await balance_micros(client, key) == 10_000_000
    assert (await client.get("/account/jobs", headers=auth(key))).json()["total"] == 0


async def test_a_mistyped_field_is_a_422_naming_the_field_meant_and_the_choices(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "llm-4090", "input": {"promt": "Hello"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "did you mean `prompt`?" in error["message"]
    assert "send `prompt` or `messages`" in error["message"]
    assert "not valid under any of the given schemas" not in error["message"]
    assert {"path": "(input)", "message": "send `prompt` or `messages`"} in error["violations"]
    unknown = [v for v in error["violations"] if v.get("field") == "promt"]
    assert unknown and unknown[0]["suggestion"] == "prompt"
    assert await balance_micros(client, key) == 10_000_000


async def test_a_mistyped_service_is_a_404_offering_the_service_meant(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "llm-409", "input": {"prompt": "Hello"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "unknown_service"
    assert error["suggestion"] == "llm-4090"
    assert "did you mean `llm-4090`?" in error["message"]
    assert await balance_micros(client, key) == 10_000_000


async def test_requests_without_a_valid_key_are_refused(gateway):
    _, client = gateway
    # No key at all asks for an x402 payment (tests/http_api/test_x402.py); a bad key is 401.
    assert (await client.post("/run", json=PROMPT)).status_code == 402
    response = await client.post("/run", json=PROMPT, headers=auth("gpub_not-a-key"))
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_malformed_bodies_and_headers_are_4xx(gateway):
    app, client = gateway
    key = await funded(app, client)
    headers = {**auth(key), "Content-Type": "application/json"}
    assert (await client.post("/run", content=b"{not json", headers=headers)).status_code == 400
    assert (await client.post("/run", json=[1], headers=headers)).status_code == 400
    assert (
        await client.post("/run", json={"service": "llm-4090"}, headers=headers)
    ).status_code == 422
    unknown = await client.post("/run", json={"service": "nope", "input": {}}, headers=headers)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_service"
    priority = await client.post("/run", json=PROMPT, headers={**headers, "X-Priority": "slow"})
    assert priority.status_code == 400
    assert await balance_micros(client, key) == 10_000_000


async def test_a_service_without_a_backend_is_unavailable_and_free(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "caption", "input": {"image_url": "https://example.com/cat.png"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "service_unavailable"
    assert await balance_micros(client, key) == 10_000_000


async def test_insufficient_credits_is_a_402_and_creates_no_job(gateway):
    app, client = gateway
    key = await funded(app, client, usd_micros=2_999)
    response = await client.post("/run", json=PROMPT, headers=auth(key))
    assert response.status_code == 402
    assert response.json()["error"]["code"] == "insufficient_credits"
    assert (await client.get("/account/jobs", headers=auth(key))).json()["total"] == 0


async def test_the_same_idempotency_key_returns_the_first_job_and_charges_once(gateway):
    app, client = gateway
    key = await funded(app, client)
    headers = {**auth(key), "Idempotency-Key": "order-42"}
    responses = await asyncio.gather(
        *(client.post("/run", json=PROMPT, headers=headers) for _ in range(8))
    )
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    first = responses[0]
    assert {r.json()["id"] for r in responses} == {first.json()["id"]}
    third = await client.post("/run", json=PROMPT, headers=headers)
    assert third.json()["id"] == first.json()["id"]
    assert await balance_micros(client, key) == 10_000_000 - 3_000
    other = {"service": "llm-4090", "input": {"prompt": "Something else"}}
    conflict = await client.post("/run", json=other, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["code"] == "idempotency_key_reused"


async def test_only_a_job_with_an_idempotency_key_keeps_its_request_hash(gateway):
    app, client = gateway
    key = await funded(app, client)
    plain = (await client.post("/run", json=PROMPT, headers=auth(key))).json()
    keyed_headers = {**auth(key), "Idempotency-Key": "order-7"}
    keyed = (await client.post("/run", json=PROMPT, headers=keyed_headers)).json()
    async with app.state.gateway.db.connect() as conn:
        hashes = dict((await conn.execute(select(jobs.c.id, jobs.c.request_hash))).all())
    assert hashes[plain["id"]] is None
    assert isinstance(hashes[keyed["id"]], str) and len(hashes[keyed["id"]]) == 64
    replay = await client.post("/run", json=PROMPT, headers=keyed_headers)
    assert replay.json()["id"] == keyed["id"]


async def test_status_of_an_unknown_job_is_404_and_of_an_old_one_expired(gateway):
    app, client = gateway
    key = await funded(app, client)
    assert (await client.get("/status/not-a-uuid")).status_code == 404
    missing = await client.get("/status/00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "job_not_found"
    job = (await client.post("/run", json=PROMPT, headers=auth(key))).json()
    gateway_ = app.state.gateway
    async with gateway_.db.begin() as conn:
        await conn.execute(
            update(jobs)
            .where(jobs.c.id == job["id"])
            .values(completed_at=utcnow() - timedelta(hours=25))
        )
    expired = await client.get(f"/status/{job['id']}")
    assert expired.status_code == 404
    assert expired.json()["error"]["code"] == "expired"


async def test_embeddings_return_a_vector(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = {"service": "embedding-l4", "input": {"text": "a sentence to embed"}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert len(output["embedding"]) == output["dimensions"] > 0


async def test_balance_reports_limit_and_discount_tier_and_the_limit_can_change(gateway):
    app, client = gateway
    key = await funded(app, client)
    body = (await client.get("/account/balance", headers=auth(key))).json()
    assert body == {
        "balance": 10.0,
        "email": "you@example.com",
        "daily_spend": 0.0,
        "daily_limit": 50.0,
        "lifetime_spend": 0.0,
        "volume_discount": {"tier": "Standard", "discount_percent": 0},
    }
    changed = await client.post(
        "/account/spending-limit", json={"daily_limit": 100}, headers=auth(key)
    )
    assert changed.status_code == 200
    too_low = await client.post(
        "/account/spending-limit", json={"daily_limit": 0.5}, headers=auth(key)
    )
    assert too_low.status_code == 400
    assert (await client.get("/account/balance", headers=auth(key))).json()["daily_limit"] == 100.0


async def test_registering_the_same_email_twice_is_a_conflict(gateway):
    _, client = gateway
    await register(client, "dup@example.com")
    again = await client.post("/account/register", json={"email": "DUP@example.com"})
    assert again.status_code == 409
    bad = await client.post("/account/register", json={"email": "not-an-email"})
    assert bad.status_code == 400


async def test_a_spending_limit_that_is_not_a_finite_amount_is_a_422(gateway):
    app, client = gateway
    key = await funded(app, client)
    headers = {**auth(key), "Content-Type": "application/json"}
    for value in ('"Infinity"', '"NaN"', "1e400", "NaN", '"ten"', "true", "null"):
        body = '{"daily_limit": ' + value + "}"
        response = await client.post("/account/spending-limit", content=body, headers=headers)
        assert response.status_code == 422, (value, response.text)
