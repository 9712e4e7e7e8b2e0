"""Money as integer micro-USD (1e-6 USD, the same unit as one USDC atomic unit)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_USD = 1_000_000


def usd_to_micros(value: str | int | Decimal) -> int:
    """Convert a USD amount given as a decimal string, int or Decimal to micro-USD exactly.

    Floats are refused: they cannot represent most cents exactly. More than six decimals
    is an error rather than a silent rounding.
    """
    if isinstance(value, float):  # pragma: no cover - guarded by typing too
        raise TypeError("money must not be a float; pass a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a USD amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a USD amount: {value!r}")
    micros = amount * MICROS_PER_USD
    if micros != micros.to_integral_value():
        raise ValueError(f"USD amount has more than 6 decimals: {value!r}")
    return int(micros)


def micros_to_usd(micros: int) -> float:
    """USD as a JSON number rounded to 6 decimals (for display only, never for arithmetic)."""
    return float(Decimal(micros) / MICROS_PER_USD)


def micros_to_decimal(micros: int) -> Decimal:
    """USD as an exact Decimal."""
    return Decimal(micros) / MICROS_PER_USD


def ceil_div(numerator: int, denominator: int) -> int:
    """Integer ceiling division for non-negative numbers."""
    return -(-numerator // denominator)


def percent_of(micros: int, percent: int) -> int:
    """``percent`` per cent of an amount, rounded half up to the micro-USD."""
    return int((Decimal(micros) * percent / 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
