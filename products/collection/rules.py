"""The arithmetic of collection in one place: fee rules, proportional allocation, late fees.

Rates are `Decimal`s parsed from strings; every rounding to fen happens in `to_fen` (half up),
and every split of an amount into parts uses the largest-remainder method, so the parts
always sum exactly to the whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

MAX_RATE_DIGITS = 8


def parse_rate(value: object, *, maximum: Decimal, what: str = "rate") -> Decimal:
    """A decimal string such as "0.006" to a Decimal within [0, maximum]; ValueError if not."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise ValueError(f"{what} must be a decimal string such as \"0.006\"")
    text = value.strip()
    if not text or len(text) > 20 or not all(c in "0123456789." for c in text):
        raise ValueError(f"{what} must be a decimal string such as \"0.006\"")
    try:
        rate = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{what} must be a decimal string such as \"0.006\"") from None
    exponent = rate.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > MAX_RATE_DIGITS:
        raise ValueError(f"{what} has at most {MAX_RATE_DIGITS} decimal places")
    if rate < 0 or rate > maximum:
        raise ValueError(f"{what} must be between 0 and {maximum}")
    return rate


def format_rate(rate: Decimal) -> str:
    text = format(rate.normalize(), "f")
    return text if text != "-0" else "0"


def to_fen(value: Decimal) -> int:
    """The one rounding rule: half up to a whole fen."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class FeeRule:
    """The platform's commission on a sub-merchant's share.

    `percentage`: rate x share, rounded half up, then held within [min, max];
    `fixed`: a fixed amount per order share; `none`: no commission. Never more than the share.
    """

    type: str = "none"
    rate: Decimal = Decimal(0)
    fixed_fen: int = 0
    min_fen: int = 0
    max_fen: int | None = None

    def fee_for(self, share_fen: int) -> int:
        if share_fen <= 0 or self.type == "none":
            return 0
        if self.type == "fixed":
            fee = self.fixed_fen
        else:
            fee = to_fen(Decimal(share_fen) * self.rate)
            fee = max(fee, self.min_fen)
            if self.max_fen is not None:
                fee = min(fee, self.max_fen)
        return max(0, min(fee, share_fen))

    def as_stored(self) -> dict[str, Any]:
        """The rule as kept with an order's split (JSON: the rate as its decimal string)."""
        return {"type": self.type, "rate": format_rate(self.rate), "fixed_fen": self.fixed_fen,
                "min_fen": self.min_fen, "max_fen": self.max_fen}

    @classmethod
    def from_stored(cls, data: dict[str, Any]) -> FeeRule:
        return cls(type=data["type"], rate=Decimal(data["rate"]), fixed_fen=data["fixed_fen"],
                   min_fen=data["min_fen"], max_fen=data["max_fen"])


def allocate(total: int, weights: list[int]) -> list[int]:
    """Split `total` in proportion to non-negative `weights` (largest remainder, ties to the
    first). The parts sum to `total`; a zero weight gets nothing unless all weights are zero."""
    if total < 0:
        raise ValueError("total must not be negative")
    if not weights:
        if total:
            raise ValueError("nothing to allocate to")
        return []
    whole = sum(weights)
    if whole <= 0:
        parts = [0] * len(weights)
        parts[0] = total
        return parts
    parts = [total * w // whole for w in weights]
    remainders = sorted(range(len(weights)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(parts)]:
        parts[i] += 1
    return parts


def fee_refund(fee_fen: int, share_fen: int, refunded_before: int, refunded_now: int,
               fee_refunded_before: int) -> int:
    """The commission given back with a refund of part of a share.

    Cumulative: after refunds totalling R of share S, the fee given back is round(fee x R / S),
    so a share refunded in full gives back exactly its whole fee however it was cut up.
    """
    if share_fen <= 0 or fee_fen <= 0:
        return 0
    cumulative = to_fen(Decimal(fee_fen) * Decimal(refunded_before + refunded_now)
                        / Decimal(share_fen))
    return max(0, min(fee_fen, cumulative) - fee_refunded_before)


def late_fee_for_day(outstanding_principal_fen: int, daily_rate: Decimal) -> int:
    return to_fen(Decimal(max(0, outstanding_principal_fen)) * daily_rate)


def late_fee_cap(amount_fen: int, cap_rate: Decimal) -> int:
    return to_fen(Decimal(amount_fen) * cap_rate)
