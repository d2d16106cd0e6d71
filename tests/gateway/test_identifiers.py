"""China identifiers: every valid example passes, every single-character substitution of it is
refused, and every rule has an input that breaks only that rule.

The check characters are computed here independently of gateway.identifiers, so that a wrong
weight or alphabet in the module cannot agree with itself.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi import FastAPI
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError
from starlette.testclient import TestClient

from gateway.clock import ManualClock, base_clock, set_base_clock
from gateway.errors import install_error_handlers
from gateway.identifiers import (
    USCC,
    BankCardNumber,
    IdentifierError,
    ResidentId,
    generate_bank_card,
    generate_resident_id,
    generate_uscc,
    validate_bank_card,
    validate_resident_id,
    validate_uscc,
)

TODAY = date(2026, 11, 2)

# --- independent reference implementations ----------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = [1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28]


def org_check(body8: str) -> str:
    """GB 11714-1997 check character of an 8-character organization code body."""
    values = [int(c) if c.isdigit() else ord(c) - ord("A") + 10 for c in body8]
    r = 11 - sum(v * w for v, w in zip(values, [3, 7, 9, 10, 5, 8, 4, 2], strict=True)) % 11
    return "X" if r == 10 else "0" if r == 11 else str(r)


def uscc_from(first16: str) -> str:
    """Complete positions 1-16 with the organization-code check and the USCC check."""
    first17 = first16 + org_check(first16[8:16])
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return first17 + USCC_ALPHABET[(31 - total % 31) % 31]


def rid_from(first17: str) -> str:
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    return first17 + "10X98765432"[sum(int(c) * w for c, w in zip(first17, weights, strict=True)) % 11]


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def card_from(payload: str) -> str:
    return next(payload + d for d in "0123456789" if luhn_ok(payload + d))


def substitutions(value: str, alphabet_at: list[str]) -> Iterator[tuple[int, str]]:
    for pos, original in enumerate(value):
        for char in alphabet_at[pos]:
            if char != original:
                yield pos, value[:pos] + char + value[pos + 1 :]


# --- unified social credit code ---------------------------------------------------------

VALID_USCC = [
    "91110000600037341L",  # the example of python-stdnum; an enterprise registered in Beijing
    "914403001922038216",
    "91330100716105852F",
    "12440600MB2C07549J",  # a public institution (事业单位)
    "91350100M000100Y43",
    uscc_from("31110000" + "E0000123"),  # a law firm (司法行政 / 律师执业机构)
    uscc_from("81310115" + "MA1K4L2X"),  # a grassroots trade union
    uscc_from("N2420106" + "MA4B7C1D"),  # a village collective economic organization
    uscc_from("11100000" + "00001312"),  # a central state organ, national region 100000
    uscc_from("Y1440300" + "MA5F0Q3R"),
    uscc_from("93510107" + "MA6CXY12"),  # a farmers' cooperative
]


@pytest.mark.parametrize("code", VALID_USCC)
def test_valid_uscc_passes(code: str) -> None:
    assert validate_uscc(code) == code


def test_uscc_is_normalized_to_upper_case_and_stripped() -> None:
    assert validate_uscc(" 91110000600037341l\t") == "91110000600037341L"


@pytest.mark.parametrize("code", VALID_USCC)
def test_every_single_substitution_of_a_uscc_is_refused(code: str) -> None:
    count = 0
    for pos, mutated in substitutions(code, [USCC_ALPHABET] * 18):
        with pytest.raises(IdentifierError):
            validate_uscc(mutated)
            pytest.fail(f"substitution at position {pos + 1} accepted: {mutated}")
        count += 1
    assert count == 18 * 30


@pytest.mark.parametrize("char", list("IOZSV"))
def test_uscc_letters_outside_the_alphabet_are_refused(char: str) -> None:
    code = "91110000600037341L"
    with pytest.raises(IdentifierError, match="position 12 is not allowed"):
        validate_uscc(code[:11] + char + code[12:])


@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("", "18 characters, not 0"),
        ("91110000600037341", "18 characters, not 17"),
        ("91110000600037341LL", "18 characters, not 19"),
        ("9111 0000600037341L", "18 characters, not 19"),
        ("911100006000-7341L", "position 13 is not allowed"),
        ("91110000600037341Ｌ", "position 18 is not allowed"),
        (uscc_from("B1110000" + "60003734"), "registration authority"),
        ("Z" + VALID_USCC[0][1:], "position 1 is not allowed"),
        (uscc_from("94110000" + "60003734"), "organization type"),
        (uscc_from("Y2110000" + "60003734"), "organization type"),
        (uscc_from("91990000" + "60003734"), "region code"),
        (uscc_from("91000000" + "60003734"), "region code"),
        (uscc_from("9111A000" + "60003734"), "region code"),
    ],
)
def test_uscc_rules(code: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        validate_uscc(code)


def test_uscc_with_a_wrong_organization_code_check_is_refused() -> None:
    first16 = "9111000060003734"
    wrong = next(c for c in "0123456789" if c != org_check(first16[8:]))
    first17 = first16 + wrong
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    code = first17 + USCC_ALPHABET[(31 - total % 31) % 31]  # position 18 itself is right
    with pytest.raises(IdentifierError, match="organization code"):
        validate_uscc(code)


@pytest.mark.parametrize("value", [None, 911100006000373410, b"91110000600037341L"])
def test_uscc_must_be_a_string(value: object) -> None:
    with pytest.raises(IdentifierError, match="must be a string"):
        validate_uscc(value)


# --- resident ID number -----------------------------------------------------------------

VALID_IDS = [
    "11010519491231002X",  # the example of GB 11643-1999
    rid_from("44030519880229123"),  # a leap day
    rid_from("31010420000101004"),
    rid_from("65010219000101001"),  # the earliest date accepted
    rid_from("81000019951010123"),  # Hong Kong residence permit
    rid_from("83000019800505321"),  # Taiwan residence permit
    rid_from("110101" + TODAY.strftime("%Y%m%d") + "777"),  # born today
]
# Make sure the list holds both kinds of check character.
assert any(v.endswith("X") for v in VALID_IDS) and any(v[-1].isdigit() for v in VALID_IDS)


@pytest.mark.parametrize("number", VALID_IDS)
def test_valid_resident_id_passes(number: str) -> None:
    assert validate_resident_id(number, today=TODAY) == number


def test_resident_id_lower_case_x_is_upper_cased() -> None:
    assert validate_resident_id("11010519491231002x", today=TODAY) == "11010519491231002X"


@pytest.mark.parametrize("number", VALID_IDS)
def test_every_single_substitution_of_a_resident_id_is_refused(number: str) -> None:
    alphabets = ["0123456789"] * 17 + ["0123456789X"]
    count = 0
    for pos, mutated in substitutions(number, alphabets):
        with pytest.raises(IdentifierError):
            validate_resident_id(mutated, today=TODAY)
            pytest.fail(f"substitution at position {pos + 1} accepted: {mutated}")
        count += 1
    assert count == 17 * 9 + 10


@pytest.mark.parametrize(
    ("first17", "message"),
    [
        ("11010519900230123", "not a calendar date"),  # 30 February
        ("11010519000229123", "not a calendar date"),  # 1900 was not a leap year
        ("11010519901301123", "not a calendar date"),
        ("11010519900100123", "not a calendar date"),
        ("11010518991231123", "before 1900"),
        ("110105" + (TODAY + timedelta(days=1)).strftime("%Y%m%d") + "123", "in the future"),
        ("00010519900101123", "province code"),
        ("10010519900101123", "province code"),
        ("72010519900101123", "province code"),
        ("99010519900101123", "province code"),
    ],
)
def test_resident_id_rules(first17: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        validate_resident_id(rid_from(first17), today=TODAY)


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("", "18 characters, not 0"),
        ("11010519491231002", "18 characters, not 17"),
        ("11010519491231002X1", "18 characters, not 19"),
        ("110105491231002", "15-digit numbers"),
        ("1101051949123100X2", "position 17"),
        ("11010519491231002Y", "digit or X"),
        ("110105 1949123100X", "position 7"),
        ("11010519491231002Ｘ", "digit or X"),
        ("１1010519491231002X", "position 1"),
        ("1101051949123١002X", "position 14"),
    ],
)
def test_resident_id_format(number: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        validate_resident_id(number, today=TODAY)


@pytest.fixture
def clock() -> Iterator[ManualClock]:
    previous = base_clock()
    manual = ManualClock(datetime(2026, 11, 2, 2, 0, tzinfo=UTC))
    set_base_clock(manual)
    try:
        yield manual
    finally:
        set_base_clock(previous)


def test_resident_id_future_is_judged_by_the_platform_clock(clock: ManualClock) -> None:
    # 2026-11-02 17:00 UTC is already 2026-11-03 in Shanghai: a baby born that day is valid.
    born_tomorrow_utc = rid_from("11010520261103123")
    with pytest.raises(IdentifierError, match="in the future"):
        validate_resident_id(born_tomorrow_utc)
    clock.set(datetime(2026, 11, 2, 17, 0, tzinfo=UTC))
    assert validate_resident_id(born_tomorrow_utc) == born_tomorrow_utc


# --- bank card number -------------------------------------------------------------------

VALID_CARDS = [
    "4111111111111111",
    "378282246310005",
    "6011111111111117",
    "6222021234567890128",
    card_from("12345678901"),  # 12 digits, the shortest
    card_from("621700000000000000"),  # 19 digits
    card_from("62258800112233"),
]


@pytest.mark.parametrize("number", VALID_CARDS)
def test_valid_bank_card_passes(number: str) -> None:
    assert luhn_ok(number)
    assert validate_bank_card(number) == number


def test_bank_card_surrounding_whitespace_is_removed() -> None:
    assert validate_bank_card(" 4111111111111111\n") == "4111111111111111"


@pytest.mark.parametrize("number", VALID_CARDS)
def test_every_single_substitution_of_a_card_is_refused(number: str) -> None:
    count = 0
    for pos, mutated in substitutions(number, ["0123456789"] * len(number)):
        with pytest.raises(IdentifierError, match="Luhn"):
            validate_bank_card(mutated)
            pytest.fail(f"substitution at position {pos + 1} accepted: {mutated}")
        count += 1
    assert count == len(number) * 9


@pytest.mark.parametrize(
    ("number", "message"),
    [
        ("", "12 to 19 digits, not 0"),
        (card_from("1234567890"), "12 to 19 digits, not 11"),
        (card_from("6217000000000000000"), "12 to 19 digits, not 20"),
        ("4111 1111 1111 1111", "position 5"),
        ("4111-1111-1111-1111", "position 5"),
        ("411111111111111A", "position 16"),
        ("４111111111111111", "position 1"),
        ("41111111111111١1", "position 15"),
    ],
)
def test_bank_card_format(number: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        validate_bank_card(number)


def test_bank_card_must_be_a_string() -> None:
    with pytest.raises(IdentifierError, match="must be a string"):
        validate_bank_card(4111111111111111)


# --- pydantic types and the problem response -------------------------------------------


class Payee(BaseModel):
    uscc: USCC
    id_number: ResidentId
    card_number: BankCardNumber


def test_pydantic_types_normalize() -> None:
    payee = Payee(uscc="91110000600037341l", id_number="11010519491231002x", card_number=" 4111111111111111 ")
    assert (payee.uscc, payee.id_number, payee.card_number) == (
        "91110000600037341L",
        "11010519491231002X",
        "4111111111111111",
    )


def test_pydantic_types_report_each_bad_field() -> None:
    with pytest.raises(ValidationError) as info:
        Payee(uscc="91110000600037341M", id_number=11010519491231002, card_number="4111111111111112")
    errors = {e["loc"][0]: e for e in info.value.errors()}
    assert set(errors) == {"uscc", "id_number", "card_number"}
    assert "check character (position 18)" in errors["uscc"]["msg"]
    assert errors["id_number"]["type"] == "string_type"  # never coerced from a number
    assert "Luhn" in errors["card_number"]["msg"]


def test_bad_identifiers_become_a_422_problem_with_field_errors() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.post("/payees")
    def create(payee: Payee) -> dict[str, str]:
        return payee.model_dump()

    with TestClient(app) as client:
        ok = client.post(
            "/payees",
            json={
                "uscc": "91110000600037341L",
                "id_number": "11010519491231002X",
                "card_number": "4111111111111111",
            },
        )
        bad = client.post(
            "/payees",
            json={
                "uscc": "91110000600037341L",
                "id_number": "11010519900230123X",
                "card_number": "4111111111111111",
            },
        )
    assert ok.status_code == 200
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    body = bad.json()
    assert body["code"] == "validation_failed"
    assert [e["field"] for e in body["errors"]] == ["body.id_number"]
    message = body["errors"][0]["message"]
    # says where, never quotes the digits: a birth date is personal data
    assert "the birth date (positions 7-14) is not a calendar date" in message
    assert "19900230" not in bad.text


# --- generators -------------------------------------------------------------------------


def test_generators_are_deterministic_for_a_seed() -> None:
    def run(seed: int) -> list[str]:
        rng = random.Random(seed)
        return [f(rng) for _ in range(20) for f in (generate_uscc, generate_resident_id, generate_bank_card)]

    assert run(42) == run(42)
    assert run(42) != run(43)


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**64))
def test_generated_values_are_valid(seed: int) -> None:
    rng = random.Random(seed)
    uscc = generate_uscc(rng)
    assert validate_uscc(uscc) == uscc and uscc.startswith("91")
    rid = generate_resident_id(rng)
    assert validate_resident_id(rid, today=TODAY) == rid
    assert date(1960, 1, 1) <= date(int(rid[6:10]), int(rid[10:12]), int(rid[12:14])) <= date(2002, 12, 31)
    card = generate_bank_card(rng)
    assert validate_bank_card(card) == card and card.startswith("622202") and len(card) == 19


def test_generator_options() -> None:
    rng = random.Random(7)
    union = generate_uscc(rng, prefix="81", region="310115")
    assert union.startswith("81310115") and validate_uscc(union) == union
    rid = generate_resident_id(rng, birth_date=date(1988, 2, 29))
    assert rid[6:14] == "19880229" and validate_resident_id(rid, today=TODAY) == rid
    card = generate_bank_card(rng, "622588", 16)
    assert card.startswith("622588") and len(card) == 16 and validate_bank_card(card) == card


@pytest.mark.parametrize(
    "call",
    [
        lambda rng: generate_uscc(rng, prefix="94"),
        lambda rng: generate_uscc(rng, region="990000"),
        lambda rng: generate_resident_id(rng, birth_date=date(1899, 12, 31)),
        lambda rng: generate_bank_card(rng, "62A202"),
        lambda rng: generate_bank_card(rng, "622202", 20),
        lambda rng: generate_bank_card(rng, "622202", 6),
    ],
)
def test_generators_refuse_impossible_requests(call: Callable[[random.Random], str]) -> None:
    with pytest.raises(ValueError):
        call(random.Random(1))
