"""An accepted payment's payer and receipt header, by x402 version."""

from __future__ import annotations

from gpubridge.payments.accounts import Account
from gpubridge.payments.x402.outcomes import Accepted, settled_receipt

ACCOUNT = Account(id="a", email=None, daily_limit_micros=1, webhook_secret="s")


def test_the_receipt_names_the_payer_in_lowercase_under_the_versions_header():
    receipt = settled_receipt("0xabc", "eip155:8453", "0xAbCd", 3000)
    assert receipt == {
        "success": True,
        "transaction": "0xabc",
        "network": "eip155:8453",
        "payer": "0xAbCd",
        "amount": "3000",
    }
    v2 = Accepted(ACCOUNT, "p", 3000, 2, receipt)
    v1 = Accepted(ACCOUNT, "p", 3000, 1, receipt)
    assert v2.payer == "0xabcd" and not v2.metered
    assert (v2.response_header, v1.response_header) == ("PAYMENT-RESPONSE", "X-PAYMENT-RESPONSE")
