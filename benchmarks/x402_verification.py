"""CPU time of verifying one x402 ``exact`` payment (version 2 ``PAYMENT-SIGNATURE``).

Off chain: decode the base64 header, check the requirements, recover the EIP-712 signer
(the x402 SDK's ``exact`` scheme code, ``sdk_exact``).
With the chain: the same plus the ``authorizationState`` and ``balanceOf`` calls, here to an
in-process py-evm chain (so it includes web3's request path and py-evm's EVM, not network time).

    .venv/bin/python benchmarks/x402_verification.py [--payments 200]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpubridge.payments.x402 import codec
from gpubridge.payments.x402.chain import Chain
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.requirements import Offer, requirements_v2
from gpubridge.payments.x402.sdk_exact import check as check_exact
from gpubridge.payments.x402.settlement import DirectSettlement
from gpubridge.settings import Settings
from tests.support.local_chain import LocalChain

PRICE = 6474


def headers(chain: LocalChain, config: X402Config, count: int) -> list[str]:
    offer = Offer(PRICE, "http://gpubridge.test/run", "job")
    accepted = requirements_v2(config, offer)
    payer = chain.new_payer(PRICE * 2)
    encoded = []
    for _ in range(count):
        document = {
            "x402Version": 2,
            "accepted": accepted,
            "payload": chain.authorization(payer, PRICE),
        }
        encoded.append(base64.b64encode(json.dumps(document).encode()).decode())
    return encoded


async def main(count: int) -> None:
    chain = LocalChain()
    config = X402Config.from_settings(Settings(**chain.settings()))
    offer = Offer(PRICE, "http://gpubridge.test/run", "job")
    values = headers(chain, config, count)
    settlement = DirectSettlement(config, _provide(chain.gateway_chain()))
    check_exact(config, _decode(values[0]), offer, time.time())  # warm caches and imports

    started = time.process_time()
    for value in values:
        check_exact(config, _decode(value), offer, time.time())
    offchain = (time.process_time() - started) / count

    started = time.process_time()
    for value in values:
        payment = _decode(value)
        check_exact(config, payment, offer, time.time())
        await settlement.verify(payment, offer)
    onchain = (time.process_time() - started) / count

    print(f"payments verified: {count} (x402 v2, scheme exact, EOA signatures)")
    print(f"off chain (decode + requirements + EIP-712 recover): {offchain * 1000:.3f} ms CPU each")
    print(f"with authorizationState + balanceOf on py-evm:       {onchain * 1000:.3f} ms CPU each")


def _decode(value: str) -> ExactPayment:
    payment = codec.decode_header(value)
    assert isinstance(payment, ExactPayment)
    return payment


def _provide(chain: Chain) -> Callable[[], Awaitable[Chain]]:
    async def get() -> Chain:
        return chain

    return get


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    asyncio.run(main(parser.parse_args().payments))
