"""Money: a decimal string with two decimals in the API, integer fen everywhere else.

Never a float. Amounts are CNY; the largest amount is 9,999,999,999,999.99 so that fen
always fit a signed 64-bit column with room for sums.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

MAX_FEN = 999_999_999_999_999
# [0-9], not \d (which takes any Unicode digit, and int() reads them), and fullmatch, not
# "$" (which also matches before a trailing newline).
_AMOUNT = re.compile(r"(-?)(0|[1-9][0-9]*)(?:\.([0-9]{1,2}))?")


class MoneyError(ValueError):
    """An amount that is not a valid money string."""


def parse_fen(value: object, *, allow_negative: bool = False, allow_zero: bool = True) -> int:
    """Turn an API amount string ("1234.50") into integer fen. Floats are refused."""
    if isinstance(value, bool) or not isinstance(value, str):
        raise MoneyError("amount must be a string such as \"12.34\", never a number")
    match = _AMOUNT.fullmatch(value)
    if not match:
        raise MoneyError("amount must be a decimal string with at most two decimals")
    sign, whole, frac = match.groups()
    if len(whole) > 13:  # before int(): a huge digit string is slow to convert
        raise MoneyError("amount is too large")
    fen = int(whole) * 100 + int((frac or "").ljust(2, "0"))
    if fen > MAX_FEN:
        raise MoneyError("amount is too large")
    if sign:
        if fen == 0:
            raise MoneyError("amount must not be negative zero")
        if not allow_negative:
            raise MoneyError("amount must not be negative")
        fen = -fen
    if fen == 0 and not allow_zero:
        raise MoneyError("amount must be greater than zero")
    return fen


def format_fen(fen: int) -> str:
    """Integer fen to the API string with exactly two decimals."""
    if isinstance(fen, bool) or not isinstance(fen, int):
        raise MoneyError("fen must be an integer")
    sign = "-" if fen < 0 else ""
    whole, frac = divmod(abs(fen), 100)
    return f"{sign}{whole}.{frac:02d}"


def _positive(value: object) -> object:
    parse_fen(value, allow_zero=False)
    return value


def _non_negative(value: object) -> object:
    parse_fen(value)
    return value


PositiveAmount = Annotated[str, BeforeValidator(_positive), Field(examples=["1234.50"])]
NonNegativeAmount = Annotated[str, BeforeValidator(_non_negative), Field(examples=["0.00"])]


class Money(BaseModel):
    """`{"amount": "1234.50", "currency": "CNY"}` in responses."""

    model_config = ConfigDict(extra="forbid")
    amount: str = Field(examples=["1234.50"])
    currency: Literal["CNY"] = "CNY"

    @classmethod
    def of(cls, fen: int) -> Money:
        return cls(amount=format_fen(fen))


class MoneyIn(BaseModel):
    """A positive amount in a request."""

    model_config = ConfigDict(extra="forbid")
    amount: PositiveAmount
    currency: Literal["CNY"]

    @property
    def fen(self) -> int:
        return parse_fen(self.amount)


class MoneyInNonNegative(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: NonNegativeAmount
    currency: Literal["CNY"]

    @property
    def fen(self) -> int:
        return parse_fen(self.amount)
