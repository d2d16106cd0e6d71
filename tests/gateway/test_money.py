"""Money: decimal strings with at most two decimals in, integer fen inside, never a float."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from gateway.money import (
    MAX_FEN,
    Money,
    MoneyError,
    MoneyIn,
    MoneyInNonNegative,
    format_fen,
    parse_fen,
)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0", 0),
        ("0.00", 0),
        ("0.5", 50),
        ("0.05", 5),
        ("1", 100),
        ("1.5", 150),
        ("1234.50", 123450),
        ("9999999999999.99", MAX_FEN),
    ],
)
def test_parse(text: str, fen: int) -> None:
    assert parse_fen(text) == fen


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (0, "0.00"),
        (5, "0.05"),
        (150, "1.50"),
        (-1, "-0.01"),
        (-123450, "-1234.50"),
        (MAX_FEN, "9999999999999.99"),
    ],
)
def test_format(fen: int, text: str) -> None:
    assert format_fen(fen) == text


def test_negative_amounts_only_where_allowed() -> None:
    assert parse_fen("-12.30", allow_negative=True) == -1230
    with pytest.raises(MoneyError, match="must not be negative"):
        parse_fen("-12.30")


@pytest.mark.parametrize("text", ["-0", "-0.0", "-0.00"])
def test_negative_zero_is_refused_even_where_negatives_are_allowed(text: str) -> None:
    with pytest.raises(MoneyError, match="negative zero"):
        parse_fen(text, allow_negative=True)


def test_zero_only_where_allowed() -> None:
    with pytest.raises(MoneyError, match="greater than zero"):
        parse_fen("0.00", allow_zero=False)


@pytest.mark.parametrize("value", [1.5, 1, 0, True, False, None, Decimal("1.50"), b"1.50", ["1.50"]])
def test_numbers_and_other_types_are_refused(value: object) -> None:
    with pytest.raises(MoneyError, match="never a number"):
        parse_fen(value)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1.234",
        "0.001",
        "1e3",
        "1E3",
        "1.5e2",
        "+1",
        "+1.00",
        " 1.00",
        "1.00 ",
        "1.00\n",
        "\n1.00",
        "1 000.00",
        "1,000.00",
        "1.",
        ".5",
        "01",
        "00.10",
        "-",
        "--1",
        "1.0.0",
        "NaN",
        "inf",
        "0x10",
        "1_000",
        "１.００",
        "1٣.00",
        "1.٣",
        "¥1.00",
        "1.00CNY",
    ],
)
def test_malformed_strings_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="decimal string"):
        parse_fen(text)


@pytest.mark.parametrize("text", ["10000000000000", "10000000000000.00", "-10000000000000.00", "9" * 5000])
def test_amounts_over_the_maximum_are_refused(text: str) -> None:
    with pytest.raises(MoneyError, match="too large"):
        parse_fen(text, allow_negative=True)


@pytest.mark.parametrize("value", [1.5, "1.5", True])
def test_format_needs_integer_fen(value: object) -> None:
    with pytest.raises(MoneyError, match="must be an integer"):
        format_fen(value)  # type: ignore[arg-type]


@given(st.integers(min_value=-MAX_FEN, max_value=MAX_FEN))
def test_format_then_parse_round_trips(fen: int) -> None:
    text = format_fen(fen)
    assert parse_fen(text, allow_negative=True) == fen
    # The API form always has exactly two decimals.
    assert text.split(".")[1].isdigit() and len(text.split(".")[1]) == 2


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_parse_then_format_round_trips_canonical_strings(fen: int) -> None:
    whole, frac = divmod(fen, 100)
    text = f"{whole}.{frac:02d}"
    assert format_fen(parse_fen(text)) == text
    # One decimal, or none, means the same amount.
    if frac % 10 == 0:
        assert parse_fen(f"{whole}.{frac // 10}") == fen
    if frac == 0:
        assert parse_fen(str(whole)) == fen


def test_money_models() -> None:
    assert Money.of(123450).model_dump() == {"amount": "1234.50", "currency": "CNY"}
    assert MoneyIn(amount="12.30", currency="CNY").fen == 1230
    assert MoneyInNonNegative(amount="0.00", currency="CNY").fen == 0


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"amount": 1.5, "currency": "CNY"}, "never a number"),
        ({"amount": 100, "currency": "CNY"}, "never a number"),
        ({"amount": "0.00", "currency": "CNY"}, "greater than zero"),
        ({"amount": "-1.00", "currency": "CNY"}, "must not be negative"),
        ({"amount": "1.001", "currency": "CNY"}, "decimal string"),
        ({"amount": "1.00", "currency": "USD"}, "CNY"),
        ({"amount": "1.00", "currency": "CNY", "note": "x"}, "Extra inputs"),
    ],
)
def test_money_in_refuses(payload: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        MoneyIn.model_validate(payload)


def test_money_in_non_negative_refuses_negative() -> None:
    with pytest.raises(ValidationError, match="must not be negative"):
        MoneyInNonNegative.model_validate({"amount": "-0.01", "currency": "CNY"})
