"""Interest and discount rules, in one place: Decimal arithmetic, ACT/360, half-up to the fen.

    discount = face x annual rate x days / 360     (贴现利息; days = maturity - value date)
    interest = principal x annual rate x days / 360 (factoring / order financing)

Amounts are integer fen and the result is rounded half-up to a whole fen, so the net proceeds
(face - discount) are exact and the ledger balances to the fen.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

DAY_COUNT_BASIS = 360
# A rate is a decimal fraction per year ("0.0385" = 3.85 %); at most 6 decimals, 0 < rate < 1.
MAX_RATE_DECIMALS = 6
MAX_RATE = Decimal("1")


def parse_rate(value: object) -> Decimal:
    """An annual rate from the API ("0.0385"): a string, 0 < rate < 1, at most 6 decimals."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError('a rate is a decimal string such as "0.0385", never a number')
    try:
        rate = Decimal(value.strip())
    except InvalidOperation:
        raise ValueError('a rate is a decimal string such as "0.0385"') from None
    if not rate.is_finite():
        raise ValueError("a rate must be a finite number")
    if rate <= 0 or rate >= MAX_RATE:
        raise ValueError("a rate is a yearly fraction greater than 0 and less than 1 (0.0385 = 3.85%)")
    exponent = rate.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_RATE_DECIMALS:
        raise ValueError(f"a rate has at most {MAX_RATE_DECIMALS} decimals")
    return rate


def format_rate(rate: Decimal) -> str:
    return format(rate.normalize(), "f")


def round_fen(value: Decimal) -> int:
    """Round a fen amount half-up to a whole fen (the one rounding rule of the product)."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


def interest_fen(principal_fen: int, annual_rate: Decimal, days: int) -> int:
    """Simple interest, ACT/360, rounded half-up to the fen."""
    if principal_fen < 0 or days < 0:
        raise ValueError("principal and days are not negative")
    return round_fen(Decimal(principal_fen) * annual_rate * Decimal(days) / DAY_COUNT_BASIS)


def days_between(start: date, end: date) -> int:
    return (end - start).days


def discount_quote(face_fen: int, annual_rate: Decimal, value_date: date,
                   maturity_date: date) -> tuple[int, int, int]:
    """(days, discount, net proceeds) for financing a certificate on `value_date`."""
    days = days_between(value_date, maturity_date)
    discount = interest_fen(face_fen, annual_rate, days)
    return days, discount, face_fen - discount
