"""Card payments refunded or disputed after their credits were granted, on SQLite and
PostgreSQL: the credits are taken back once, in proportion, even below a zero balance."""

from __future__ import annotations

from sqlalchemy import select

from gpubridge.db.tables import ledger_entries, stripe_events
from tests.payments.conftest import CardGateway
from tests.payments.test_stripe_auto_topup import PROMPT, run_job
from tests.payments.test_stripe_topups import balance_micros, deliver, registered, scalar, topup
from tests.support.gateway_app import auth
from tests.support.stripe_server import charge_refunded, dispute_created, session_completed


async def bought(
    gw: CardGateway, package: str, cents: int, intent: str, email: str = "refund@example.com"
) -> str:
    """An account that bought ``package`` by card, paid through ``intent``."""
    key, account_id = await registered(gw, email)
    session = await topup(gw, key, package)
    paid = session_completed(session["session_id"], account_id, cents, payment_intent=intent)
    assert (await deliver(gw, paid)).json()["outcome"] == "credited"
    return key


async def test_a_full_refund_takes_back_the_credits_once_even_below_zero(card_gateway):
    gw = card_gateway
    key = await bought(gw, "credits_10", 1000, "pi_full")
    await run_job(gw, key)  # spends some of the credits before the refund arrives
    spent = 10_000_000 - await balance_micros(gw, key)
    assert spent > 0

    refund = charge_refunded("pi_full", 1000, 1000)
    first = await deliver(gw, refund)
    assert first.status_code == 200 and first.json()["outcome"] == "debited"
    assert (await deliver(gw, refund)).json()["outcome"] == "duplicate"
    # Another delivery of the same refund total under a new event id debits nothing more.
    assert (await deliver(gw, charge_refunded("pi_full", 1000, 1000))).json()["outcome"] == (
        "already_debited"
    )
    assert await balance_micros(gw, key) == -spent

    refused = await gw.client.post("/run", json=PROMPT, headers=auth(key))
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["code"] == "negative_balance"


async def test_partial_refunds_take_back_their_share_and_never_more_than_was_bought(card_gateway):
    gw = card_gateway
    key = await bought(gw, "credits_25", 2500, "pi_partial")  # $25 buys $26.25 of credits
    assert await balance_micros(gw, key) == 26_250_000

    assert (await deliver(gw, charge_refunded("pi_partial", 2500, 1000))).json()["outcome"] == (
        "debited"
    )
    assert await balance_micros(gw, key) == 26_250_000 - 10_500_000
    # Stripe sends the running total: the second refund takes back only the rest.
    assert (await deliver(gw, charge_refunded("pi_partial", 2500, 2500))).json()["outcome"] == (
        "debited"
    )
    assert await balance_micros(gw, key) == 0
    # A dispute of a payment already refunded in full takes nothing more.
    late = await deliver(gw, dispute_created("pi_partial", 2500))
    assert late.json()["outcome"] == "already_debited"
    assert await balance_micros(gw, key) == 0


async def test_a_dispute_takes_back_the_disputed_credits(card_gateway):
    gw = card_gateway
    key = await bought(gw, "credits_10", 1000, "pi_dispute")
    response = await deliver(gw, dispute_created("pi_dispute", 1000))
    assert response.status_code == 200 and response.json()["outcome"] == "debited"
    assert await balance_micros(gw, key) == 0
    memo = select(ledger_entries.c.memo).where(ledger_entries.c.kind == "reversal")
    assert await scalar(gw, memo) == "card top-up credits_10 disputed"


async def test_a_refund_of_a_payment_not_known_here_is_not_recorded_and_asks_for_a_retry(
    card_gateway,
):
    gw = card_gateway
    response = await deliver(gw, charge_refunded("pi_unknown", 1000, 1000))
    assert response.status_code == 409
    assert response.json()["error"]["outcome"] == "unknown_payment"
    assert await scalar(gw, select(stripe_events.c.id)) is None


async def test_a_payment_that_settles_later_credits_on_async_payment_succeeded(card_gateway):
    gw = card_gateway
    key, account_id = await registered(gw, "later@example.com")
    session = await topup(gw, key, "credits_10")
    pending = session_completed(
        session["session_id"], account_id, 1000, payment_status="unpaid", payment_intent="pi_ach"
    )
    assert (await deliver(gw, pending)).json()["outcome"] == "unpaid"
    settled = session_completed(
        session["session_id"],
        account_id,
        1000,
        payment_intent="pi_ach",
        event_type="checkout.session.async_payment_succeeded",
    )
    response = await deliver(gw, settled)
    assert response.status_code == 200 and response.json()["outcome"] == "credited"
    assert await balance_micros(gw, key) == 10_000_000
    # The intent was remembered: its refund finds the credit.
    assert (await deliver(gw, charge_refunded("pi_ach", 1000, 1000))).json()["outcome"] == (
        "debited"
    )
    assert await balance_micros(gw, key) == 0
