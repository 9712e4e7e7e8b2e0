"""Auto top-up: off-session charges of the saved card when captures cross the threshold."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import func, select, update

from gpubridge.db.tables import accounts, ledger_entries
from tests.payments.conftest import CardGateway
from tests.payments.test_stripe_topups import balance_micros, deliver, registered, topup
from tests.support.gateway_app import auth
from tests.support.stripe_server import event, session_completed

PROMPT = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 16}}


async def with_saved_card(gw: CardGateway, email: str = "saved@example.com") -> str:
    """An account with $10 bought by card, its customer saved."""
    key, account_id = await registered(gw, email)
    session = await topup(gw, key, "credits_10")
    paid = session_completed(session["session_id"], account_id, 1000, customer="cus_test_auto")
    assert (await deliver(gw, paid)).json()["outcome"] == "credited"
    return key


async def configure(gw: CardGateway, key: str, **body: Any) -> Any:
    return await gw.client.post("/account/auto-topup", json=body, headers=auth(key))


async def settled_attempts(gw: CardGateway, key: str) -> dict[str, Any]:
    """GET /account/auto-topup once an attempt exists and none is pending (bounded)."""
    async with asyncio.timeout(15):
        while True:
            view: dict[str, Any] = (
                await gw.client.get("/account/auto-topup", headers=auth(key))
            ).json()
            attempts = view["attempts"]
            if attempts and all(a["status"] != "pending" for a in attempts):
                return view
            await asyncio.sleep(0.02)


async def run_job(gw: CardGateway, key: str) -> None:
    response = await gw.client.post("/run", json=PROMPT, headers=auth(key))
    assert response.status_code == 200, response.text


async def test_enabling_needs_a_saved_card_a_known_package_and_a_sane_threshold(card_gateway):
    gw = card_gateway
    key, _ = await registered(gw)
    settings = {"enabled": True, "threshold": 1.00, "package": "credits_10"}
    response = await configure(gw, key, **settings)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "no_saved_card"

    key = await with_saved_card(gw)
    bad_threshold = await configure(gw, key, **{**settings, "threshold": 0.5})
    assert bad_threshold.status_code == 422
    bad_package = await configure(gw, key, **{**settings, "package": "credits_3"})
    assert bad_package.status_code == 422
    assert bad_package.json()["error"]["code"] == "unknown_package"

    response = await configure(gw, key, **settings)
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["enabled"] is True and view["threshold"] == 1.0
    assert view["package"] == "credits_10" and view["card_saved"] is True
    assert view["attempts"] == []
    off = await configure(gw, key, enabled=False)
    assert off.status_code == 200 and off.json()["enabled"] is False


async def test_concurrent_jobs_crossing_the_threshold_charge_the_card_once(card_gateway):
    gw = card_gateway
    key = await with_saved_card(gw)
    # The balance is exactly $10: the first capture takes it below the threshold.
    response = await configure(gw, key, enabled=True, threshold="10", package="credits_25")
    assert response.status_code == 200, response.text

    async with asyncio.timeout(60):
        await asyncio.gather(*(run_job(gw, key) for _ in range(8)))
        view = await settled_attempts(gw, key)

    [attempt] = view["attempts"]
    assert attempt["status"] == "succeeded", attempt
    assert attempt["payment_intent_id"].startswith("pi_")
    [charge] = gw.stripe.calls("POST", "/v1/payment_intents")
    form = charge["form"]
    assert form["amount"] == "2500" and form["currency"] == "usd"
    assert form["customer"] == "cus_test_auto"
    assert form["payment_method"] == "pm_card_visa"
    assert form["off_session"] == "true" and form["confirm"] == "true"
    assert form["metadata[auto_topup_id]"] == attempt["id"]
    assert charge["idempotency_key"] == f"auto-topup-{attempt['id']}"
    assert view["armed"] is True  # back above the threshold after the credit
    assert await balance_micros(gw, key) == 10_000_000 + 26_250_000 - 8 * 3_000

    # Stripe's payment_intent.succeeded for the same intent credits nothing more.
    intent = {
        "id": attempt["payment_intent_id"],
        "object": "payment_intent",
        "amount": 2500,
        "amount_received": 2500,
        "status": "succeeded",
        "metadata": {"auto_topup_id": attempt["id"]},
    }
    late = await deliver(gw, event("payment_intent.succeeded", intent))
    assert late.json()["outcome"] == "already_credited"
    assert await balance_micros(gw, key) == 10_000_000 + 26_250_000 - 8 * 3_000
    async with gw.app.state.gateway.db.connect() as conn:
        credits = await conn.scalar(
            select(func.count()).where(ledger_entries.c.reference == f"stripe:{intent['id']}")
        )
    assert credits == 1


async def test_a_declined_card_records_a_failed_attempt_and_credits_nothing(card_gateway):
    gw = card_gateway
    key = await with_saved_card(gw)
    gw.stripe.decline_payment_intents = True
    response = await configure(gw, key, enabled=True, threshold=10, package="credits_10")
    assert response.status_code == 200, response.text

    async with asyncio.timeout(60):
        await run_job(gw, key)
        view = await settled_attempts(gw, key)
        await run_job(gw, key)  # still below: no retry of the declined card

    [attempt] = view["attempts"]
    assert attempt["status"] == "failed"
    assert "declined" in attempt["error"]
    assert attempt["payment_intent_id"].startswith("pi_")
    assert view["armed"] is False
    assert len(gw.stripe.calls("POST", "/v1/payment_intents")) == 1
    assert await balance_micros(gw, key) == 10_000_000 - 2 * 3_000


async def test_a_charge_still_processing_is_finished_by_the_payment_intent_webhook(card_gateway):
    gw = card_gateway
    key = await with_saved_card(gw)
    gw.stripe.intent_status = "processing"
    await configure(gw, key, enabled=True, threshold=10, package="credits_10")
    await run_job(gw, key)
    async with asyncio.timeout(15):
        while not gw.stripe.calls("POST", "/v1/payment_intents"):
            await asyncio.sleep(0.02)
        while True:
            view = (await gw.client.get("/account/auto-topup", headers=auth(key))).json()
            if view["attempts"] and view["attempts"][0]["payment_intent_id"]:
                break
            await asyncio.sleep(0.02)
    attempt = view["attempts"][0]
    assert attempt["status"] == "pending"
    intent = {
        "id": attempt["payment_intent_id"],
        "object": "payment_intent",
        "amount": 1000,
        "amount_received": 1000,
        "status": "succeeded",
        "metadata": {"auto_topup_id": attempt["id"]},
    }
    done = await deliver(gw, event("payment_intent.succeeded", intent))
    assert done.json()["outcome"] == "credited"
    view = (await gw.client.get("/account/auto-topup", headers=auth(key))).json()
    assert view["attempts"][0]["status"] == "succeeded" and view["armed"] is True
    assert await balance_micros(gw, key) == 20_000_000 - 3_000


async def test_the_guard_lets_one_of_many_concurrent_crossings_charge(database):
    from gpubridge.payments import ledger
    from gpubridge.payments.accounts import Accounts
    from gpubridge.payments.auto_topup import credit_once, disarm_below_threshold

    created = await Accounts(database, default_daily_limit_micros=10**9, cache_s=0).register(
        "guard@example.com"
    )
    account_id = created.account.id
    async with database.begin() as conn:
        await ledger.credit(conn, account_id, 500_000, house="grants")
        await conn.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(
                auto_topup_enabled=1,
                auto_topup_threshold_micros=1_000_000,
                auto_topup_package="credits_10",
            )
        )

    async def crossing() -> bool:
        async with database.begin() as conn:
            await ledger.lock_account(conn, account_id)
            return await disarm_below_threshold(conn, account_id)

    async with asyncio.timeout(30):
        claims = await asyncio.gather(*(crossing() for _ in range(20)))
        assert claims.count(True) == 1
        assert await crossing() is False  # disarmed until a credit brings it back
        async with database.begin() as conn:
            await credit_once(
                conn, account_id, 600_000, house="grants", reference="stripe:pi_x", memo="t"
            )
        assert await crossing() is False  # $1.10 is above the threshold: armed, not crossing
        async with database.begin() as conn:
            armed = await conn.scalar(
                select(accounts.c.auto_topup_armed).where(accounts.c.id == account_id)
            )
        assert armed == 1
