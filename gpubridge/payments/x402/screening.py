"""Sanctions screening of payers, before their payment is verified.

A screen answers whether an address is sanctioned. The deny-list file (one address per line,
``#`` comments) is always consulted and re-read when it changes; an on-chain oracle with
``isSanctioned(address)`` (such as the Chainalysis sanctions oracle) is asked too when its
address is configured. Other screens plug in through the ``Screen`` protocol.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from gpubridge.payments.x402.errors import PaymentNetworkUnavailable, SanctionedPayer

if TYPE_CHECKING:
    from gpubridge.payments.x402.chain import Chain

log = logging.getLogger(__name__)

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


class Screen(Protocol):
    async def is_sanctioned(self, address: str) -> bool: ...


class DenyList:
    """Addresses listed in a file; the file is re-read when its modification time changes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._addresses: frozenset[str] = frozenset()

    def addresses(self) -> frozenset[str]:
        if self.path is None:
            return frozenset()
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            log.warning("the x402 deny-list file does not exist", extra={"path": str(self.path)})
            return frozenset()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            found = set()
            for line in self.path.read_text().splitlines():
                match = _ADDRESS.fullmatch(line.split("#", 1)[0].strip())
                if match:
                    found.add(match.group(0).lower())
            self._addresses = frozenset(found)
            self._stamp = stamp
        return self._addresses

    async def is_sanctioned(self, address: str) -> bool:
        return address.lower() in self.addresses()


class OracleScreen:
    """Asks an on-chain sanctions oracle (a view call per payer)."""

    def __init__(self, chain: Callable[[], Awaitable[Chain]], oracle: str) -> None:
        self._chain = chain
        self.oracle = oracle

    async def is_sanctioned(self, address: str) -> bool:
        from gpubridge.payments.x402.chain import ChainUnavailable

        chain = await self._chain()
        try:
            return await chain.is_sanctioned(self.oracle, address)
        except ChainUnavailable:
            raise PaymentNetworkUnavailable(
                "the sanctions oracle could not be reached; try again shortly"
            ) from None


class Screening:
    """Every screen must clear a payer; the first that lists it refuses the payment."""

    def __init__(self, screens: list[Screen]) -> None:
        self.screens = screens

    async def check(self, address: str) -> None:
        for screen in self.screens:
            if await screen.is_sanctioned(address):
                raise SanctionedPayer(
                    "payments from this address are not accepted (sanctions screening)",
                    payer=address,
                )
