"""Metered (``upto``) payments settled after their job, on the local chain with Permit2: not
before the job ends, by the maintenance loop when no request waits, once however many ask, and
after a crash from what Permit2 says. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import insert, select, update

from gpubridge.db.engine import utcnow
from gpubridge.db.tables import jobs, x402_payments
from gpubridge.payments import ledger
from gpubridge.payments.x402 import X402, codec, metered
from gpubridge.payments.x402.outcomes import Accepted
from tests.support.local_chain import LocalChain

CEILING = 8000
COST = 3100


async def authorized(x402: X402, chain: LocalChain) -> tuple[Accepted, str, object]:
    """A payer's upto authorization of ``CEILING``, reserved for a job id not created yet."""
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme
    from x402.schemas import PaymentRequirements

    from gpubridge.payments.x402.requirements import payment_required

    payer = chain.new_payer(100_000, eth=True)
    chain.approve_permit2(payer)
    offer = x402.offer(CEILING, "http://gpubridge.test/run", "a job", metered=True)
    upto = payment_required(x402.config, offer, "")["accepts"][1]
    payload = UptoEvmScheme(EthAccountSigner(payer)).create_payment_payload(
        PaymentRequirements.model_validate(upto)
    )
    payment = codec.from_object({"x402Version": 2, "accepted": upto, "payload": payload})
    job_id = str(uuid.uuid4())
    accepted = await x402.accept(payment, offer, job_id=job_id)
    assert accepted.metered and accepted.receipt["amount"] == "0"
    return accepted, job_id, payer


async def add_job(x402: X402, accepted: Accepted, job_id: str, status: str) -> None:
    """The job, held on the wallet account (and captured if it ``completed``)."""
    async with x402.db.begin() as conn:
        funding = x402.funding(accepted)
        assert funding is not None
        await funding(conn, CEILING)  # as the gateway's hold does
        await ledger.hold(conn, accepted.account.id, CEILING, job_id=job_id)
        await conn.execute(
            insert(jobs).values(
                id=job_id,
                account_id=accepted.account.id,
                service="llm-4090",
                model="m",
                input={},
                status=status,
                hold_micros=CEILING,
                cost_micros=COST if status == "completed" else None,
                created_at=utcnow(),
                updated_at=utcnow(),
            )
        )
        if status == "completed":
            await _capture(conn, accepted, job_id)


async def _capture(conn, accepted: Accepted, job_id: str) -> None:
    await ledger.capture(
        conn,
        accepted.account.id,
        job_id=job_id,
        held_micros=CEILING,
        cost_micros=COST,
        held_on=utcnow().date(),
    )


async def end_job(x402: X402, accepted: Accepted, job_id: str) -> None:
    async with x402.db.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.id == job_id).values(status="completed", cost_micros=COST)
        )
        await _capture(conn, accepted, job_id)


async def age_claim(x402: X402, accepted: Accepted, **values: object) -> None:
    """Date the payment's claim an hour back (an interrupted one, for the maintenance loop)."""
    async with x402.db.begin() as conn:
        await conn.execute(
            update(x402_payments)
            .where(x402_payments.c.id == accepted.payment_id)
            .values(settled_at=utcnow() - timedelta(hours=1), **values)
        )


async def row(x402: X402, payment_id: str) -> object:
    async with x402.db.connect() as conn:
        return (
            await conn.execute(select(x402_payments).where(x402_payments.c.id == payment_id))
        ).one()


async def test_nothing_settles_while_the_job_runs_then_the_maintenance_loop_settles_its_cost(
    x402, chain
):
    accepted, job_id, payer = await authorized(x402, chain)
    assert (await x402.finish_metered(accepted)).receipt["amount"] == "0"  # no job yet
    assert (await row(x402, accepted.payment_id)).status == "reserved"
    await add_job(x402, accepted, job_id, "running")
    await x402.reconcile()
    assert (await row(x402, accepted.payment_id)).status == "authorized"
    assert chain.balance(payer.address) == 100_000

    await end_job(x402, accepted, job_id)
    await x402.reconcile()
    settled = await row(x402, accepted.payment_id)
    assert (settled.status, settled.amount_micros, settled.authorized_micros) == (
        "settled",
        COST,
        CEILING,
    )
    assert chain.balance(payer.address) == 100_000 - COST
    finished = await x402.finish_metered(accepted)  # asked again: the same outcome
    assert finished.receipt["amount"] == str(COST)
    assert finished.receipt["transaction"] == settled.tx_hash


async def test_many_finishing_at_once_settle_once(x402, chain):
    accepted, job_id, payer = await authorized(x402, chain)
    await add_job(x402, accepted, job_id, "completed")
    transfers = chain.transfer_count(chain.recipient)
    await asyncio.gather(*(x402.finish_metered(accepted) for _ in range(8)))
    assert chain.transfer_count(chain.recipient) == transfers + 1
    assert chain.balance(payer.address) == 100_000 - COST
    async with x402.db.connect() as conn:
        available = await ledger.available_balance(conn, accepted.account.id)
    assert available == 0  # the ceiling credited, the cost captured, the rest taken back


@pytest.mark.parametrize("landed", [True, False])
async def test_a_settlement_a_crash_interrupted_is_resolved_from_permit2(x402, chain, landed):
    accepted, job_id, payer = await authorized(x402, chain)
    await add_job(x402, accepted, job_id, "completed")
    assert x402.metering is not None
    assert await metered.claim(x402.db, accepted.payment_id)  # claimed, then the process died
    payment = await metered.get(x402.db, accepted.payment_id)
    assert payment is not None
    if landed:  # ... after its transaction was sent
        await x402.metering.engine.settle(payment.document, _offer(), COST)
    await age_claim(x402, accepted)

    await x402.reconcile()

    resolved = await row(x402, accepted.payment_id)
    assert (resolved.status, resolved.amount_micros) == ("settled", COST)
    assert chain.balance(payer.address) == 100_000 - COST  # moved once either way
    assert chain.permit2_nonce_used(payer.address, payment.nonce)


def _offer():
    from gpubridge.payments.x402.requirements import Offer

    return Offer(COST, "", "")


async def test_an_unreachable_node_refuses_an_authorization_with_a_503_and_defers_a_settlement(
    x402, chain
):
    from web3 import HTTPProvider, Web3

    from gpubridge.payments.x402.errors import PaymentNetworkUnavailable

    assert x402.metering is not None
    engine = x402.metering.engine
    accepted, job_id, payer = await authorized(x402, chain)
    await add_job(x402, accepted, job_id, "completed")
    engine.use_web3(Web3(HTTPProvider("http://127.0.0.1:9")))  # nothing listens there

    with pytest.raises(PaymentNetworkUnavailable):
        await authorized(x402, chain)
    unchanged = await x402.finish_metered(accepted)
    assert unchanged.receipt["amount"] == "0"
    assert (await row(x402, accepted.payment_id)).status == "settling"

    x402.use_chain(chain.gateway_chain())  # the node is back
    await age_claim(x402, accepted)
    await x402.reconcile()
    assert (await row(x402, accepted.payment_id)).status == "settled"
    assert chain.balance(payer.address) == 100_000 - COST


async def test_a_refused_settlement_is_retried_while_it_lasts_then_the_cost_is_owed(x402, chain):
    accepted, job_id, payer = await authorized(x402, chain)
    await add_job(x402, accepted, job_id, "completed")
    chain.approve_permit2(payer, 0)  # the payer takes the approval back after the job

    unchanged = await x402.finish_metered(accepted)
    assert unchanged.receipt["amount"] == "0"
    assert (await row(x402, accepted.payment_id)).status == "settling"  # tried again later

    await age_claim(x402, accepted, valid_before=1)  # the authorization expired meanwhile
    await x402.reconcile()

    unpaid = await row(x402, accepted.payment_id)
    assert (unpaid.status, unpaid.amount_micros) == ("unpaid", 0)
    assert chain.balance(payer.address) == 100_000
    async with x402.db.connect() as conn:
        owed = await ledger.available_balance(conn, accepted.account.id)
    assert owed == -COST  # the job ran: the wallet account owes its cost


async def test_a_reservation_whose_job_never_came_is_released_having_credited_nothing(x402, chain):
    accepted, _, payer = await authorized(x402, chain)
    released = await x402.finish_metered(accepted, abandoned=True)
    assert released.receipt["amount"] == "0"
    assert (await row(x402, accepted.payment_id)).status == "released"
    async with x402.db.connect() as conn:
        assert await ledger.available_balance(conn, accepted.account.id) == 0
    assert chain.balance(payer.address) == 100_000


async def test_the_credit_exists_only_inside_the_jobs_own_hold(x402, chain):
    """Nothing else can spend a metered payment's credit: without its job's hold in the same
    transaction there is no credit at all."""
    accepted, job_id, _ = await authorized(x402, chain)
    async with x402.db.connect() as conn:
        assert await ledger.available_balance(conn, accepted.account.id) == 0
    await add_job(x402, accepted, job_id, "running")
    async with x402.db.connect() as conn:
        assert await ledger.available_balance(conn, accepted.account.id) == 0  # all held
    funding = x402.funding(accepted)
    assert funding is not None
    with pytest.raises(Exception):  # funded once: a second funding is refused
        async with x402.db.begin() as conn:
            await funding(conn, CEILING)
