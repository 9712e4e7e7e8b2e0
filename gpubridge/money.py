"""Money as integer micro-USD (1e-6 USD, the same unit as one USDC atomic unit)."""

from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, Inexact, InvalidOperation, localcontext

MICROS_PER_USD = 1_000_000
MAX_MICROS = 2**63 - 1
"""The largest amount stored anywhere (a signed 64-bit column): about 9.2 trillion USD."""


def usd_to_micros(value: str | int | Decimal) -> int:
    """Convert a USD amount given as a decimal string, int or Decimal to micro-USD exactly.

    Floats are refused: they cannot represent most cents exactly. More than six decimals
    is an error rather than a silent rounding, and so is an amount beyond `MAX_MICROS`
    (``"1e999999999"`` is a valid decimal string, but no amount of money).
    """
    if isinstance(value, float):  # pragma: no cover - guarded by typing too
        raise TypeError("money must not be a float; pass a decimal string")
    try:
        amount = Decimal(value)
    except InvalidOperation as exc:
        raise ValueError(f"not a USD amount: {value!r}") from exc
    if not amount.is_finite():
        raise ValueError(f"not a USD amount: {value!r}")
    # Compared before any arithmetic, which rounds or overflows in the decimal context.
    if amount.copy_abs() > Decimal(MAX_MICROS) / MICROS_PER_USD:
        raise ValueError(f"USD amount out of range: {_shown(value)}")
    with localcontext() as context:
        context.traps[Inexact] = True  # any digit dropped is a nonzero one past the 6th decimal
        try:
            micros = amount * MICROS_PER_USD
        except Inexact:
            raise ValueError(f"USD amount has more than 6 decimals: {_shown(value)}") from None
    if micros != micros.to_integral_value():
        raise ValueError(f"USD amount has more than 6 decimals: {_shown(value)}")
    return int(micros)


def usd_limit_to_micros(value: object) -> int:
    """A USD amount that sets a limit or a threshold (not one that moves money), from a JSON
    number or a decimal string, as micro-USD: digits past the sixth decimal are dropped, which
    only ever lowers the limit by less than a micro-USD. ``ValueError`` for anything else."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"not a USD amount: {_shown(value)}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a USD amount: {_shown(value)}") from exc
    if not amount.is_finite() or amount.copy_abs() > Decimal(MAX_MICROS) / MICROS_PER_USD:
        raise ValueError(f"not a USD amount in range: {_shown(value)}")
    return usd_to_micros(amount.quantize(Decimal("0.000001"), rounding=ROUND_DOWN))


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
