"""Credit packages sold for cards (and crypto): price and credits, both integer micro-USD."""

from __future__ import annotations

from dataclasses import dataclass

from gpubridge.errors import InvalidInput
from gpubridge.money import usd_to_micros

MICROS_PER_CENT = 10_000


@dataclass(frozen=True)
class Package:
    name: str
    price_micros: int
    credits_micros: int

    @property
    def price_cents(self) -> int:
        """The price at the Stripe boundary (packages are whole cents)."""
        return self.price_micros // MICROS_PER_CENT


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("credits_10", usd_to_micros(10), usd_to_micros("10.00")),
        Package("credits_25", usd_to_micros(25), usd_to_micros("26.25")),
        Package("credits_50", usd_to_micros(50), usd_to_micros("55.00")),
        Package("credits_100", usd_to_micros(100), usd_to_micros("115.00")),
    )
}


def package_named(name: object) -> Package:
    """The package called ``name``, or a 422 listing the valid ones."""
    found = PACKAGES.get(name) if isinstance(name, str) else None
    if found is None:
        valid = sorted(PACKAGES, key=lambda key: PACKAGES[key].price_micros)
        raise InvalidInput(
            f"unknown package {name!r}; valid packages: {', '.join(valid)}",
            code="unknown_package",
            violations=[{"path": "package", "message": "unknown package"}],
            valid_packages=valid,
        )
    return found
