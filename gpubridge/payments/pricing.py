"""Volume discounts on lifetime spend."""

from __future__ import annotations

from dataclasses import dataclass

from gpubridge.money import usd_to_micros


@dataclass(frozen=True)
class DiscountTier:
    name: str
    from_micros: int
    percent: int


TIERS: tuple[DiscountTier, ...] = (
    DiscountTier("Standard", 0, 0),
    DiscountTier("Bronze", usd_to_micros(100), 5),
    DiscountTier("Silver", usd_to_micros(500), 10),
    DiscountTier("Gold", usd_to_micros(1000), 15),
)


def tier_for(lifetime_spend_micros: int) -> DiscountTier:
    """The discount tier earned by an account's lifetime spend."""
    current = TIERS[0]
    for tier in TIERS:
        if lifetime_spend_micros >= tier.from_micros:
            current = tier
    return current


def discounted(micros: int, percent: int) -> int:
    """``micros`` less ``percent`` per cent, rounded up to the micro-USD in the house's favour
    by at most one micro-USD, so that a discount never makes a non-zero price free."""
    if percent <= 0:
        return micros
    return -(-micros * (100 - percent) // 100)
