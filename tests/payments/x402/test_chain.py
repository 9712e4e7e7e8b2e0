"""Loading the chain client leaves the process as it was."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
before = sys.getrecursionlimit()
import gpubridge.payments.x402.chain
import gpubridge.payments.x402.signatures
import eth_account, py_ecc  # already imported: the limit stays where the guarded import left it
print(before, sys.getrecursionlimit())
"""


def test_importing_the_chain_client_leaves_the_recursion_limit_unchanged() -> None:
    # A fresh interpreter: this test process may have imported the Ethereum libraries already.
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, check=True
    )
    before, after = result.stdout.split()
    assert after == before
