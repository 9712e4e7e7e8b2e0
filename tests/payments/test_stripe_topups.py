"""Card top-ups through Stripe Checkout and the Stripe webhook, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select

from gpubridge.db.tables import accounts, checkout_sessions, ledger_entries, stripe_events
from tests.payments.conftest import CardGateway
from tests.support.gateway_app import auth, running_app, settings_for, write_catalog
from tests.support.stripe_server import WEBHOOK_SECRET, session_completed, signed


async def registered(gw: CardGateway, email: str = "card@example.com") -> tuple[str, str]:
    response = await gw.client.post("/account/register", json={"email": email})
    assert response.status_code == 201, response.text
    body = response.json()
    return body["api_key"], body["account_id"]


async def balance_micros(gw: CardGateway, key: str) -> int:
    response = await gw.client.get("/account/balance", headers=auth(key))
    assert response.status_code == 200, response.text
    return round(response.json()["balance"] * 1_000_000)


async def topup(gw: CardGateway, key: str, package: str, **headers: str) -> dict[str, Any]:
    response = await gw.client.post(
        "/account/topup", json={"package": package}, headers={**auth(key), **headers}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def deliver(gw: CardGateway, payload: dict[str, Any], **kwargs: Any) -> Any:
    body, headers = signed(payload, **kwargs)
    return await gw.client.post("/webhooks/stripe", content=body, headers=headers)


async def scalar(gw: CardGateway, statement: Any) -> Any:
    async with gw.app.state.gateway.db.connect() as conn:
        return await conn.scalar(statement)


async def test_a_topup_creates_a_checkout_session_in_cents_and_returns_its_url(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw)
    body = await topup(gw, key, "credits_25")
    assert body["checkout_url"] == f"https://checkout.stripe.com/c/pay/{body['session_id']}"
    assert body["session_id"].startswith("cs_test_")
    assert (body["package"], body["amount_usd"], body["credits_usd"]) == ("credits_25", 25, 26.25)

    [customer_call] = gw.stripe.calls("POST", "/v1/customers")
    assert customer_call["form"]["metadata[account_id]"] == account_id
    [call] = gw.stripe.calls("POST", "/v1/checkout/sessions")
    form = call["form"]
    assert form["mode"] == "payment"
    assert form["line_items[0][price_data][unit_amount]"] == "2500"
    assert form["line_items[0][price_data][currency]"] == "usd"
    assert form["line_items[0][quantity]"] == "1"
    assert form["client_reference_id"] == account_id
    assert form["metadata[package]"] == "credits_25"
    assert form["customer"].startswith("cus_")
    assert form["payment_intent_data[setup_future_usage]"] == "off_session"
    assert form["success_url"].startswith("https://gpubridge.test/topup/done")
    assert call["idempotency_key"]
    assert call["authorization"] == "Bearer sk_test_gpubridge"
    async with gw.app.state.gateway.db.connect() as conn:
        row = (await conn.execute(select(checkout_sessions))).one()
    assert (row.id, row.account_id, row.amount_cents, row.credits_micros, row.status) == (
        body["session_id"],
        account_id,
        2500,
        26_250_000,
        "open",
    )
    assert await balance_micros(gw, key) == 0  # nothing is credited before the webhook


async def test_the_same_idempotency_key_returns_the_same_session(card_gateway):
    gw = card_gateway
    key, _ = await registered(gw)
    first = await topup(gw, key, "credits_10", **{"Idempotency-Key": "order-7"})
    again = await topup(gw, key, "credits_10", **{"Idempotency-Key": "order-7"})
    assert again["session_id"] == first["session_id"]
    keys = {c["idempotency_key"] for c in gw.stripe.calls("POST", "/v1/checkout/sessions")}
    assert len(keys) == 1 and "order-7" in keys.pop()
    assert await scalar(gw, select(func.count()).select_from(checkout_sessions)) == 1


async def test_an_unknown_package_is_a_422_listing_the_valid_ones(card_gateway):
    gw = card_gateway
    key, _ = await registered(gw)
    response = await gw.client.post(
        "/account/topup", json={"package": "credits_7"}, headers=auth(key)
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "unknown_package"
    assert error["valid_packages"] == ["credits_10", "credits_25", "credits_50", "credits_100"]
    assert gw.stripe.requests == []


async def test_a_stripe_api_error_is_a_502_and_stores_nothing(card_gateway):
    gw = card_gateway
    key, _ = await registered(gw)
    gw.stripe.checkout_error_status = 500
    response = await gw.client.post(
        "/account/topup", json={"package": "credits_10"}, headers=auth(key)
    )
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "stripe_error"
    assert await scalar(gw, select(func.count()).select_from(checkout_sessions)) == 0


async def test_without_stripe_configured_topups_and_the_webhook_are_503(
    database, database_url, tmp_path
):
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(database_url, tmp_path, catalog, rate_limit_per_ip_per_second=0)
    async with running_app(settings) as (_, client):
        response = await client.post("/account/register", json={"email": "no@example.com"})
        key = response.json()["api_key"]
        response = await client.post(
            "/account/topup", json={"package": "credits_10"}, headers=auth(key)
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "stripe_not_configured"
        body, headers = signed(session_completed("cs_test_x", "acct", 1000))
        response = await client.post("/webhooks/stripe", content=body, headers=headers)
        assert response.status_code == 503


async def test_a_paid_session_credits_the_package_once_and_saves_the_customer(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw)
    session = await topup(gw, key, "credits_50")
    event = session_completed(session["session_id"], account_id, 5000, customer="cus_test_1")

    first = await deliver(gw, event)
    assert first.status_code == 200 and first.json()["outcome"] == "credited"
    again = await deliver(gw, event)
    assert again.status_code == 200 and again.json()["outcome"] == "duplicate"
    # Another event about the same session (a new id) credits nothing either.
    other = session_completed(session["session_id"], account_id, 5000, customer="cus_test_1")
    response = await deliver(gw, other)
    assert response.status_code == 200 and response.json()["outcome"] == "already_credited"

    assert await balance_micros(gw, key) == 55_000_000
    reference = f"stripe:{session['session_id']}"
    entries = select(func.count()).where(ledger_entries.c.reference == reference)
    assert await scalar(gw, entries) == 1
    status = select(checkout_sessions.c.status)
    assert await scalar(gw, status) == "completed"
    customer = select(accounts.c.stripe_customer_id).where(accounts.c.id == account_id)
    assert await scalar(gw, customer) == "cus_test_1"


async def test_ten_concurrent_deliveries_of_one_event_credit_once(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw)
    session = await topup(gw, key, "credits_10")
    event = session_completed(session["session_id"], account_id, 1000)
    async with asyncio.timeout(30):
        responses = await asyncio.gather(*(deliver(gw, event) for _ in range(10)))
    assert [r.status_code for r in responses] == [200] * 10
    outcomes = sorted(r.json()["outcome"] for r in responses)
    assert outcomes == ["credited"] + ["duplicate"] * 9
    assert await balance_micros(gw, key) == 10_000_000
    assert await scalar(gw, select(func.count()).select_from(stripe_events)) == 1


async def test_a_bad_or_stale_signature_is_a_400_and_credits_nothing(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw)
    session = await topup(gw, key, "credits_10")
    event = session_completed(session["session_id"], account_id, 1000)

    wrong = await deliver(gw, event, secret="whsec_" + "b" * 32)
    stale = await deliver(gw, event, timestamp=int(time.time()) - 301)
    body, _ = signed(event)
    missing = await gw.client.post("/webhooks/stripe", content=body)
    _, headers = signed(event)
    tampered = await gw.client.post(
        "/webhooks/stripe", content=body.replace(b"1000", b"9000"), headers=headers
    )
    for response in (wrong, stale, missing, tampered):
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_signature"
    assert await balance_micros(gw, key) == 0
    assert await scalar(gw, select(func.count()).select_from(stripe_events)) == 0
    assert WEBHOOK_SECRET.startswith("whsec_")


async def test_unpaid_unknown_or_mismatched_sessions_credit_nothing_and_stay_unrecorded(
    card_gateway,
):
    gw = card_gateway
    key, account_id = await registered(gw)
    session = await topup(gw, key, "credits_25")
    cases = {
        "unpaid": session_completed(
            session["session_id"], account_id, 2500, payment_status="unpaid"
        ),
        "unknown_session": session_completed("cs_test_not_ours", account_id, 2500),
        "mismatch": session_completed(session["session_id"], account_id, 100),
    }
    unpaid = await deliver(gw, cases.pop("unpaid"))
    assert unpaid.status_code == 200 and unpaid.json()["outcome"] == "unpaid"
    for outcome, event in cases.items():
        # Not applied: answered 409 so that Stripe delivers the event again later.
        response = await deliver(gw, event)
        assert response.status_code == 409, response.text
        error = response.json()["error"]
        assert (error["code"], error["outcome"]) == ("stripe_event_not_applied", outcome)
    ignored = await deliver(gw, {**cases["mismatch"], "id": "evt_other", "type": "invoice.paid"})
    assert ignored.json()["outcome"] == "ignored"
    assert await balance_micros(gw, key) == 0
    # Only the event that was handled is recorded; the others may still apply on a retry.
    assert await scalar(gw, select(func.count()).select_from(stripe_events)) == 1


async def test_an_event_that_arrives_before_its_session_applies_when_redelivered(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw)
    early = session_completed("cs_test_later", account_id, 1000, event_id="evt_early")
    assert (await deliver(gw, early)).status_code == 409
    async with gw.app.state.gateway.db.begin() as conn:
        await conn.execute(
            checkout_sessions.insert().values(
                id="cs_test_later",
                account_id=account_id,
                package="credits_10",
                amount_cents=1000,
                credits_micros=10_000_000,
                status="open",
                created_at=datetime.now(UTC),
            )
        )
    again = await deliver(gw, early)
    assert again.status_code == 200 and again.json()["outcome"] == "credited"
    assert await balance_micros(gw, key) == 10_000_000
