"""The SDK's upto scheme as this server's engine, on the local chain with Permit2: it names the
settlement key as facilitator, checks the requirements a client states, verifies, and settles
at most the authorized maximum, once."""

from __future__ import annotations

from typing import Any

import pytest
from eth_account import Account

from gpubridge.payments.x402 import X402Config, codec
from gpubridge.payments.x402.errors import PaymentRejected
from gpubridge.payments.x402.requirements import Offer, requirements_upto
from gpubridge.payments.x402.upto import UptoEngine
from gpubridge.settings import Settings
from tests.support.local_chain import OPERATOR_KEY, LocalChain

MAXIMUM = 5000


def engine_on(chain: LocalChain) -> UptoEngine:
    engine = UptoEngine(X402Config.from_settings(Settings(**chain.settings())))
    engine.use_web3(chain.gateway_chain().sync_web3())
    return engine


def signed(chain: LocalChain, engine: UptoEngine, payer: Any, **changes: Any) -> Any:
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme
    from x402.schemas import PaymentRequirements

    offer = Offer(MAXIMUM, "", "", upto_facilitator=engine.facilitator)
    upto = {**requirements_upto(engine.config, offer), **changes}
    payload = UptoEvmScheme(EthAccountSigner(payer)).create_payment_payload(
        PaymentRequirements.model_validate(upto)
    )
    return codec.from_object({"x402Version": 2, "accepted": upto, "payload": payload}), offer


async def test_it_verifies_and_settles_at_most_the_maximum_once(chain: LocalChain):
    engine = engine_on(chain)
    assert engine.facilitator == Account.from_key(OPERATOR_KEY).address
    payer = chain.new_payer(100_000, eth=True)
    chain.approve_permit2(payer)
    payment, offer = signed(chain, engine, payer)
    await engine.verify(payment, offer)
    assert not await engine.nonce_used(payer.address, payment.authorization.nonce)

    with pytest.raises(PaymentRejected):
        await engine.settle(payment.document, offer, MAXIMUM + 1)
    tx_hash = await engine.settle(payment.document, offer, 1234)
    assert tx_hash.startswith("0x")
    assert chain.balance(payer.address) == 100_000 - 1234
    assert await engine.nonce_used(payer.address, payment.authorization.nonce)
    with pytest.raises(PaymentRejected):
        await engine.settle(payment.document, offer, 1)
    assert chain.balance(payer.address) == 100_000 - 1234


async def test_the_requirements_a_client_states_must_be_this_requests(chain: LocalChain):
    engine = engine_on(chain)
    payer = chain.new_payer(100_000, eth=True)
    chain.approve_permit2(payer)
    for changes in ({"payTo": chain.deployer.address}, {"amount": "1"}):
        payment, offer = signed(chain, engine, payer)
        stated = codec.from_object(
            {**payment.document, "accepted": {**payment.accepted, **changes}}
        )
        with pytest.raises(PaymentRejected):
            await engine.verify(stated, offer)
