"""The local chain and an x402 service on it, for the tests of x402's money steps."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gpubridge.payments.x402 import X402, X402Config
from gpubridge.settings import Settings
from tests.support.local_chain import LocalChain


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    """A local chain with the token, Permit2 and the oracle, shared by a module's tests."""
    yield LocalChain()


@pytest.fixture
def x402(database, chain) -> X402:
    """x402 on ``chain``, settling with the operator's key."""
    service = X402(X402Config.from_settings(Settings(**chain.settings())), database)
    service.use_chain(chain.gateway_chain())
    return service
