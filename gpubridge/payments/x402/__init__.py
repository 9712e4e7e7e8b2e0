"""x402: pay per request in USDC, with no account.

An unpaid request gets 402 with the payment requirements (v2 in the ``PAYMENT-REQUIRED``
header, v1 in the body). The payment comes back in ``PAYMENT-SIGNATURE`` (v2) or ``X-PAYMENT``
(v1): an EIP-3009 authorization (scheme ``exact``), or the API document's proof of a USDC
transfer already on chain (``{"txHash", "from"}``).

When money moves: a payment is screened, verified, and reserved in the database (unique per
authorization or transaction hash) before any work, then settled on chain *before* the job is
created. The amount paid is credited to the payer's wallet account, and the job is held and
captured from it like any other. So no job runs unpaid, and nothing is lost: the excess over
the job's actual cost, or the whole payment when the job fails, stays in the wallet account,
which the wallet can claim (``wallets.claim``) to get an API key and spend it.
"""

from gpubridge.payments.x402.codec import ExactPayment, Payment, TxHashPayment
from gpubridge.payments.x402.config import X402Config
from gpubridge.payments.x402.errors import (
    MalformedPayment,
    PaymentNetworkUnavailable,
    SanctionedPayer,
    SettlementPending,
    X402Required,
)
from gpubridge.payments.x402.outcomes import Accepted
from gpubridge.payments.x402.requirements import Offer
from gpubridge.payments.x402.service import X402
from gpubridge.payments.x402.txproof import RequestBinding

__all__ = [
    "X402",
    "Accepted",
    "ExactPayment",
    "MalformedPayment",
    "Offer",
    "Payment",
    "PaymentNetworkUnavailable",
    "RequestBinding",
    "SanctionedPayer",
    "SettlementPending",
    "TxHashPayment",
    "X402Config",
    "X402Required",
]
