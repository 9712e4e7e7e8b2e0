"""The x402 SDK's ``upto`` scheme end to end on the local chain: its client signs a Permit2
witness transfer, its facilitator verifies it (simulating the proxy's ``settle``) and settles
any amount up to the signed maximum, once, through Permit2 and the upto proxy."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_tester.exceptions import TransactionFailed
from eth_utils import keccak
from web3 import EthereumTesterProvider, Web3
from x402.mechanisms.evm.signers import FacilitatorWeb3Signer
from x402.mechanisms.evm.upto.client import UptoEvmScheme as UptoClient
from x402.mechanisms.evm.upto.facilitator import UptoEvmScheme as UptoFacilitator
from x402.schemas import PaymentPayload, PaymentRequirements

from tests.support.local_chain import LocalChain
from tests.support.x402_facilitator import FACILITATOR_KEY, facilitator_app

OTHER_FACILITATOR_KEY = "0x" + "00" * 31 + "04"
MAX = 50_000
ACTUAL = 12_345


def facilitator(chain: LocalChain, key: str = FACILITATOR_KEY) -> UptoFacilitator:
    signer = FacilitatorWeb3Signer(key, rpc_url="http://127.0.0.1:9")
    signer._w3 = Web3(EthereumTesterProvider(chain.tester))  # the local chain, not a URL
    return UptoFacilitator(signer)


def requirements(chain: LocalChain, amount: int = MAX) -> PaymentRequirements:
    return PaymentRequirements(
        scheme="upto",
        network=f"eip155:{chain.chain_id}",
        asset=chain.usdc.address,
        amount=str(amount),
        pay_to=chain.recipient,
        max_timeout_seconds=300,
        extra={
            "name": "USD Coin",
            "version": "2",
            "facilitatorAddress": Account.from_key(FACILITATOR_KEY).address,
            "assetTransferMethod": "permit2",
        },
    )


def paid(chain: LocalChain, usdc: int = 10 * MAX, *, approve: bool = True) -> LocalAccount:
    payer = chain.new_payer(usdc, eth=True)
    if approve:
        chain.approve_permit2(payer)
    return payer


def payment(chain: LocalChain, payer: LocalAccount) -> PaymentPayload:
    accepted = requirements(chain)
    signed = UptoClient(payer).create_payment_payload(accepted)
    return PaymentPayload(payload=signed, accepted=accepted)


def nonce(sent: PaymentPayload) -> int:
    return int(sent.payload["permit2Authorization"]["nonce"])


def settle_args(sent: PaymentPayload, amount: int, **witness: Any) -> tuple[Any, ...]:
    auth = sent.payload["permit2Authorization"]
    values = {
        "to": auth["witness"]["to"],
        "facilitator": auth["witness"]["facilitator"],
        "validAfter": int(auth["witness"]["validAfter"]),
    }
    values.update(witness)
    permit = (
        (auth["permitted"]["token"], int(auth["permitted"]["amount"])),
        int(auth["nonce"]),
        int(auth["deadline"]),
    )
    witness_tuple = (values["to"], values["facilitator"], values["validAfter"])
    signature = bytes.fromhex(sent.payload["signature"][2:])
    return permit, amount, auth["from"], witness_tuple, signature


def reverted(error: str) -> str:
    """What eth-tester says of a revert with the custom error ``error`` (its signature)."""
    return re.escape(f"execution reverted: {keccak(text=error)[:4]!r}")


def test_verify_then_settle_moves_the_actual_amount_once(chain):
    payer = paid(chain)
    sent = payment(chain, payer)
    scheme = facilitator(chain)
    before = (chain.balance(payer.address), chain.balance(chain.recipient))

    verified = scheme.verify(sent, requirements(chain))
    assert (verified.is_valid, verified.payer) == (True, payer.address)
    assert not chain.permit2_nonce_used(payer.address, nonce(sent))

    settled = scheme.settle(sent, requirements(chain, ACTUAL))
    assert settled.success, settled
    assert settled.amount == str(ACTUAL)
    after = (chain.balance(payer.address), chain.balance(chain.recipient))
    assert after == (before[0] - ACTUAL, before[1] + ACTUAL)
    assert chain.permit2_nonce_used(payer.address, nonce(sent))

    again = scheme.settle(sent, requirements(chain, ACTUAL))
    assert (again.success, again.error_reason) == (False, "invalid_upto_evm_transaction_failed")
    assert (chain.balance(payer.address), chain.balance(chain.recipient)) == after
    with pytest.raises(TransactionFailed, match=reverted("InvalidNonce()")):
        chain.upto_proxy.functions.settle(*settle_args(sent, ACTUAL)).call(
            {"from": Account.from_key(FACILITATOR_KEY).address}
        )
    # Verification simulates the proxy's settle, which Permit2 now refuses.
    reverified = scheme.verify(sent, requirements(chain))
    assert reverified.invalid_reason == "invalid_upto_evm_transaction_failed"


def test_settling_above_the_signed_maximum_is_refused(chain):
    payer = paid(chain)
    sent = payment(chain, payer)
    settled = facilitator(chain).settle(sent, requirements(chain, MAX + 1))
    assert (settled.success, settled.error_reason) == (
        False,
        "invalid_upto_evm_payload_settlement_exceeds_amount",
    )
    assert chain.balance(payer.address) == 10 * MAX
    # The proxy refuses it on its own too.
    with pytest.raises(TransactionFailed, match=reverted("AmountExceedsPermitted()")):
        chain.upto_proxy.functions.settle(*settle_args(sent, MAX + 1)).call(
            {"from": Account.from_key(FACILITATOR_KEY).address}
        )


def test_only_the_facilitator_named_in_the_witness_can_settle(chain):
    payer = paid(chain)
    sent = payment(chain, payer)
    other = facilitator(chain, OTHER_FACILITATOR_KEY)
    assert other.verify(sent, requirements(chain)).invalid_reason == "upto_facilitator_mismatch"
    assert other.settle(sent, requirements(chain, ACTUAL)).error_reason == (
        "upto_facilitator_mismatch"
    )

    sender = Account.from_key(OTHER_FACILITATOR_KEY).address
    call = chain.upto_proxy.functions.settle(*settle_args(sent, ACTUAL))
    with pytest.raises(TransactionFailed, match=reverted("UnauthorizedFacilitator()")):
        call.call({"from": sender})
    sent_anyway = call.transact({"from": sender, "gas": 300_000})
    assert chain.w3.eth.wait_for_transaction_receipt(sent_anyway)["status"] == 0
    assert chain.balance(payer.address) == 10 * MAX
    assert not chain.permit2_nonce_used(payer.address, nonce(sent))


@pytest.mark.parametrize(
    ("witness", "error"),
    [
        ({"to": Account.create().address}, "InvalidSigner()"),  # not what the payer signed
        ({"to": "0x" + "00" * 20}, "InvalidDestination()"),
        ({"validAfter": 2**40}, "PaymentTooEarly()"),
    ],
)
def test_the_proxy_settles_only_the_signed_witness(chain, witness, error):
    payer = paid(chain)
    sent = payment(chain, payer)
    call = chain.upto_proxy.functions.settle(*settle_args(sent, ACTUAL, **witness))
    with pytest.raises(TransactionFailed, match=reverted(error)):
        call.call({"from": Account.from_key(FACILITATOR_KEY).address})


def test_verify_needs_a_permit2_allowance_and_the_balance(chain):
    scheme = facilitator(chain)
    unapproved = paid(chain, approve=False)
    verdict = scheme.verify(payment(chain, unapproved), requirements(chain))
    assert verdict.invalid_reason == "permit2_allowance_required"

    poor = paid(chain, MAX - 1)
    verdict = scheme.verify(payment(chain, poor), requirements(chain))
    assert verdict.invalid_reason == "permit2_insufficient_balance"


def test_verify_simulates_the_settlement(chain):
    payer = paid(chain)
    sent = payment(chain, payer)
    chain.blacklist(payer.address)
    verdict = facilitator(chain).verify(sent, requirements(chain))
    assert verdict.invalid_reason == "invalid_upto_evm_transaction_failed"


async def test_the_facilitator_app_verifies_and_settles_upto(chain):
    payer = paid(chain)
    sent = payment(chain, payer)
    app = facilitator_app(chain)
    before = chain.balance(chain.recipient)

    def body(amount: int) -> dict[str, Any]:
        return {
            "x402Version": 2,
            "paymentPayload": sent.model_dump(by_alias=True, exclude_none=True),
            "paymentRequirements": requirements(chain, amount).model_dump(
                by_alias=True, exclude_none=True
            ),
        }

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://facilitator.test") as http:
        verified = (await http.post("/verify", json=body(MAX))).json()
        settled = (await http.post("/settle", json=body(ACTUAL))).json()
    assert verified["isValid"] is True, verified
    assert (settled["success"], settled["amount"]) == (True, str(ACTUAL)), settled
    assert chain.balance(chain.recipient) == before + ACTUAL
    assert app.state.calls == ["verify", "settle"]
