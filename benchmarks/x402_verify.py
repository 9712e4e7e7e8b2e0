"""CPU time of verifying one x402 v2 ``exact`` (EIP-3009) payment: gpubridge's own checks against
the official x402 SDK's ``exact`` EVM scheme, on the same payments; and of one ``upto`` (Permit2)
payment, which only the SDK's scheme verifies.

Off chain (what needs no node): decode the header, check scheme, network, recipient, amount
and time window, and recover the EIP-712 signer.
- ours: ``codec.decode_header`` + gpubridge's former hand-written EIP-712 digest and recovery
  (``former_check`` below, as it was before the SDK became the engine);
- SDK: ``sdk_exact.check``: the same decode and framing, then the SDK's checks,
  ``hash_eip3009_authorization`` and ``verify_eoa_signature`` (its EOA path).

With the chain, on an in-process py-evm chain (so the figures include web3's request path and
py-evm's EVM, not network time):
- ours: the above + ``authorizationState`` and ``balanceOf`` (``DirectSettlement.verify``);
- SDK: ``ExactEvmScheme.verify`` (facilitator), which also reads the payer's code, checks the
  asset contract and simulates ``transferWithAuthorization``.

    .venv/bin/python benchmarks/x402_verify.py [--payments 200]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from web3 import EthereumTesterProvider, Web3
from x402.mechanisms.evm.exact.facilitator import ExactEvmScheme
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer
from x402.schemas import PaymentPayload, PaymentRequirements

from gpubridge.payments.x402 import codec, sdk_exact
from gpubridge.payments.x402.chain import Chain
from gpubridge.payments.x402.codec import ExactPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.requirements import Offer, requirements_v2
from gpubridge.payments.x402.settlement import DirectSettlement
from gpubridge.payments.x402.signatures import keccak, recover
from gpubridge.settings import Settings
from tests.support.local_chain import LocalChain

PRICE = 6474
FACILITATOR_KEY = "0x" + "00" * 31 + "03"


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address_word(address: str) -> bytes:
    return bytes(12) + bytes.fromhex(address.removeprefix("0x"))


_DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)
_TRANSFER_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,uint256 validAfter,"
    b"uint256 validBefore,bytes32 nonce)"
)


def former_check(config: X402Config, payment: ExactPayment, offer: Offer, now: float) -> None:
    """gpubridge's own EIP-3009 check before the SDK's scheme replaced it (same decisions)."""
    network = config.network if payment.version == 2 else config.network_v1
    assert payment.scheme == "exact" and payment.network == network
    if payment.accepted is not None:
        accepted = payment.accepted
        assert str(accepted.get("asset", "")).lower() == config.asset.lower()
        assert str(accepted.get("payTo", "")).lower() == config.pay_to.lower()
        assert accepted.get("amount") == str(offer.amount_micros)
    auth = payment.authorization
    assert auth.to == config.pay_to.lower() and auth.value == offer.amount_micros
    assert auth.valid_before >= now + 6 and auth.valid_after <= now
    domain = keccak(
        _DOMAIN_TYPEHASH
        + keccak(config.asset_name.encode())
        + keccak(config.asset_version.encode())
        + _word(config.chain_id)
        + _address_word(config.asset)
    )
    struct_hash = keccak(
        _TRANSFER_TYPEHASH
        + _address_word(auth.payer)
        + _address_word(auth.to)
        + _word(auth.value)
        + _word(auth.valid_after)
        + _word(auth.valid_before)
        + auth.nonce
    )
    assert recover(keccak(b"\x19\x01" + domain + struct_hash), payment.signature) == auth.payer


def headers(chain: LocalChain, config: X402Config, count: int) -> list[str]:
    offer = Offer(PRICE, "http://gpubridge.test/run", "job")
    accepted = requirements_v2(config, offer)
    payer = chain.new_payer(PRICE * 2)
    encoded = []
    for _ in range(count):
        document = {
            "x402Version": 2,
            "accepted": accepted,
            "resource": {"url": offer.resource},
            "payload": chain.authorization(payer, PRICE),
        }
        encoded.append(base64.b64encode(json.dumps(document).encode()).decode())
    return encoded


def cpu_per_call(values: list[str], verify: Callable[[str], object]) -> float:
    verify(values[0])  # warm caches and imports
    started = time.process_time()
    for value in values:
        verify(value)
    return (time.process_time() - started) / len(values)


async def main(count: int) -> None:
    chain = LocalChain()
    config = X402Config.from_settings(Settings(**chain.settings()))
    offer = Offer(PRICE, "http://gpubridge.test/run", "job")
    requirements = requirements_v2(config, offer)
    values = headers(chain, config, count)

    def ours(value: str) -> None:
        former_check(config, _decode(value), offer, time.time())

    def sdk(value: str) -> None:
        sdk_exact.check(config, _decode(value), offer, time.time())

    ours_off = cpu_per_call(values, ours)
    sdk_off = cpu_per_call(values, sdk)

    settlement = DirectSettlement(config, _provide(chain.gateway_chain()))
    ours(values[0])
    started = time.process_time()
    for value in values:
        payment = _decode(value)
        former_check(config, payment, offer, time.time())
        await settlement.verify(payment, offer)
    ours_on = (time.process_time() - started) / count

    signer = FacilitatorWeb3Signer(FACILITATOR_KEY, rpc_url="http://127.0.0.1:9")
    signer._w3 = Web3(EthereumTesterProvider(chain.tester))  # the local chain, not a URL
    scheme = ExactEvmScheme(signer)
    parsed_requirements = PaymentRequirements.model_validate(requirements)

    def sdk_full(value: str) -> None:
        payload = PaymentPayload.model_validate(json.loads(base64.b64decode(value)))
        result: Any = scheme.verify(payload, parsed_requirements)
        assert result.is_valid, result

    sdk_on = cpu_per_call(values, sdk_full)

    print(f"payments verified: {count} (x402 v2, scheme exact, EOA signatures)")
    print("off chain (decode + requirements + EIP-712 signer):")
    print(f"  ours  (former hand-written EIP-712 + recovery):      {ours_off * 1000:.3f} ms CPU")
    print(f"  SDK   (sdk_exact.check: SDK digest + EOA recovery):  {sdk_off * 1000:.3f} ms CPU")
    print("with the chain (py-evm in process):")
    print(f"  ours  (+ authorizationState + balanceOf):            {ours_on * 1000:.3f} ms CPU")
    print(f"  SDK   (ExactEvmScheme.verify: code, asset, simulate): {sdk_on * 1000:.3f} ms CPU")
    upto_on = await upto_verify_cpu(chain, config, count)
    print("scheme upto (Permit2), with the chain, the SDK's scheme being the only engine:")
    print(
        f"  SDK   (UptoEngine.verify: signature, allowance, balance, simulate): "
        f"{upto_on * 1000:.3f} ms CPU"
    )


async def upto_verify_cpu(chain: LocalChain, config: X402Config, count: int) -> float:
    """CPU per ``upto`` verification through gpubridge's engine (the SDK's facilitator code,
    in a worker thread), on fresh Permit2 authorizations of one approved payer."""
    from x402.mechanisms.evm.signers import EthAccountSigner
    from x402.mechanisms.evm.upto.client import UptoEvmScheme

    from gpubridge.payments.x402.requirements import requirements_upto
    from gpubridge.payments.x402.upto import UptoEngine

    engine = UptoEngine(config)
    engine.use_web3(Web3(EthereumTesterProvider(chain.tester)))
    offer = Offer(PRICE, "http://gpubridge.test/run", "job", upto_facilitator=engine.facilitator)
    accepted = requirements_upto(config, offer)
    payer = chain.new_payer(PRICE * 2, eth=True)
    chain.approve_permit2(payer)
    client = UptoEvmScheme(EthAccountSigner(payer))
    payments = []
    for _ in range(count + 1):
        payload = client.create_payment_payload(PaymentRequirements.model_validate(accepted))
        document = {"x402Version": 2, "accepted": accepted, "payload": payload}
        payments.append(codec.from_object(document))
    await engine.verify(payments[0], offer)  # warm caches and imports
    started = time.process_time()
    for payment in payments[1:]:
        await engine.verify(payment, offer)  # type: ignore[arg-type]
    return (time.process_time() - started) / count


def _decode(value: str) -> ExactPayment:
    payment = codec.decode_header(value)
    assert isinstance(payment, ExactPayment)
    return payment


def _provide(chain: Chain) -> Callable[[], Awaitable[Chain]]:
    async def provide() -> Chain:
        return chain

    return provide


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--payments", type=int, default=200)
    asyncio.run(main(parser.parse_args().payments))
