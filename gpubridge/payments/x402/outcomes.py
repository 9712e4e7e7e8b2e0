"""What accepting an x402 payment comes to: a payment credited to its payer's wallet account
(``Accepted``, with the receipt the answer carries) or a reservation that will never pay
(``Released``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpubridge.payments.accounts import Account
from gpubridge.payments.x402 import codec


@dataclass(frozen=True)
class Accepted:
    """A settled payment, credited to ``account``."""

    account: Account
    payment_id: str
    amount_micros: int
    version: int
    receipt: dict[str, Any]
    """The x402 SettleResponse object (``success``, ``transaction``, ``network``, ``payer``)."""
    metered: bool = False
    """An ``upto`` authorization: settled for what the job used once it ends
    (``X402.finish_metered``); until then ``receipt`` moved nothing."""

    @property
    def payer(self) -> str:
        """The paying wallet (its wallet account holds what the payment did not pay for)."""
        return str(self.receipt["payer"]).lower()

    @property
    def response_header(self) -> str:
        return codec.PAYMENT_RESPONSE if self.version == 2 else codec.X_PAYMENT_RESPONSE


@dataclass(frozen=True)
class Released:
    """A reservation that will never pay: the transfer did not land."""

    reason: str


def settled_receipt(tx_hash: str, network: str, payer: str, amount: int) -> dict[str, Any]:
    """The x402 SettleResponse of a payment that moved ``amount`` in ``tx_hash``."""
    return {
        "success": True,
        "transaction": tx_hash,
        "network": network,
        "payer": payer,
        "amount": str(amount),
    }
