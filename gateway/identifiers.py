"""China identifiers, checked by their check characters before anything is stored or paid.

- unified social credit code (统一社会信用代码, GB 32100-2015): `validate_uscc`, `USCC`
- resident ID number (居民身份证号码, GB 11643-1999, ISO 7064 MOD 11-2): `validate_resident_id`,
  `ResidentId`
- bank card number (ISO/IEC 7812, Luhn): `validate_bank_card`, `BankCardNumber`

Each validator returns the normalized value or raises `IdentifierError` (a `ValueError`, so
pydantic reports it as a field error and the gateway turns it into a 422 problem).

Normalization, the same for all three: surrounding whitespace is removed (values are pasted
from spreadsheets and licences) and letters are upper-cased (the standards define upper case
only, and a lower-case letter is unambiguous). Anything inside the value that is not part of
the code, such as spaces or hyphens between groups, is refused rather than guessed away, so
the stored value is always the canonical one and digests of equal values are equal.

The generators build valid values from a `random.Random`, deterministic for its seed; the
sandbox seeds tenants with them.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Annotated

from pydantic import AfterValidator, Field

from gateway.clock import base_clock

__all__ = [
    "BankCardNumber",
    "IdentifierError",
    "ResidentId",
    "USCC",
    "generate_bank_card",
    "generate_resident_id",
    "generate_uscc",
    "luhn_check_digit",
    "resident_id_check_char",
    "uscc_check_char",
    "validate_bank_card",
    "validate_resident_id",
    "validate_uscc",
]


class IdentifierError(ValueError):
    """An identifier that is malformed or fails its check character."""


def _clean(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise IdentifierError(f"{what} must be a string")
    value = value.strip()
    # Only ASCII is upper-cased: str.upper() turns some letters into two ("ß" -> "SS"), and a
    # non-ASCII character is refused below anyway, as the caller typed it.
    return value.upper() if value.isascii() else value


def _describe(char: str) -> str:
    return repr(char) if char.isprintable() else f"U+{ord(char):04X}"


# Mainland province-level codes (GB/T 2260): the first two digits of every region code.
_MAINLAND_PROVINCES = frozenset(
    [
        "11",
        "12",
        "13",
        "14",
        "15",
        "21",
        "22",
        "23",
        "31",
        "32",
        "33",
        "34",
        "35",
        "36",
        "37",
        "41",
        "42",
        "43",
        "44",
        "45",
        "46",
        "50",
        "51",
        "52",
        "53",
        "54",
        "61",
        "62",
        "63",
        "64",
        "65",
    ]
)
# Resident IDs (and residence permits for people from Taiwan 71/83, Hong Kong 81, Macao 82).
_RESIDENT_PROVINCES = _MAINLAND_PROVINCES | {"71", "81", "82", "83"}


# --- unified social credit code (GB 32100-2015) -----------------------------------------

_USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 characters: no I, O, Z, S, V
_USCC_VALUE = {c: i for i, c in enumerate(_USCC_ALPHABET)}
_USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1, 3, 9, 27, 19, 26, 16, ...

# Position 1 (registration authority) -> allowed position 2 (organization type) characters.
# GB 32100-2015 itself names 1 机构编制, 5 民政, 9 工商 and Y 其他, and leaves further
# authorities to be assigned by the national code centre; the assignments made since are
# included, because real law firms (31…), trade unions (81…) and village collectives (N2…)
# carry such codes and a bank must not turn them away. An unlisted pair is refused.
_USCC_TYPES: dict[str, str] = {
    "1": "1239",  # 机构编制: 机关, 事业单位, 编办直管群众团体, 其他
    "2": "19",  # 外交: 外国常驻新闻机构, 其他
    "3": "1234569",  # 司法行政: 律所, 公证处, 基层法律服务所, 司法鉴定, 仲裁委, 商事调解, 其他
    "4": "19",  # 文化: 外国在华文化中心, 其他
    "5": "123459",  # 民政: 社会团体, 民办非企业单位, 基金会, 村委会, 居委会, 其他
    "6": "129",  # 旅游: 外国/港澳台旅游部门常驻代表机构, 其他
    "7": "129",  # 宗教: 宗教活动场所, 宗教院校, 其他
    "8": "129",  # 工会: 基层工会, 非法人工会组织, 其他
    "9": "1239",  # 工商/市场监管: 企业, 个体工商户, 农民专业合作社, 其他
    "A": "19",  # 中央军委改革和编制办公室: 军队单位, 其他
    "G": "19",  # 公安: 境外非政府组织代表机构, 其他
    "J": "19",  # 住房城乡建设: 业主大会, 其他
    "N": "1239",  # 农业农村: 组级/村级/乡镇级集体经济组织, 其他
    "Q": "1239",  # 侨联: 区县级/乡镇级/村级侨联组织, 其他
    "Y": "1",  # 其他
}
# Positions 3-8: the registering authority's region (GB/T 2260); national bodies use 100000.
_NATIONAL_REGION = "100000"

# Positions 9-17 are the organization code of GB 11714-1997: eight characters and a MOD 11
# check character of their own (values 0-35 for 0-9A-Z, check 10 -> X, 11 -> 0).
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def _org_code_check_char(body: str) -> str:
    value = 11 - sum(int(c, 36) * w for c, w in zip(body, _ORG_WEIGHTS, strict=True)) % 11
    return {10: "X", 11: "0"}.get(value, str(value))


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character (position 18) for the first 17 characters."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return _USCC_ALPHABET[(31 - total % 31) % 31]


def validate_uscc(code: object) -> str:
    """Check a unified social credit code (GB 32100-2015); return it upper-cased.

    Checks, in order: 18 characters from the code's alphabet; a known registration authority
    (position 1) with one of its organization types (position 2); a plausible region code
    (positions 3-8: digits, a mainland province or the national 100000); the embedded GB 11714
    organization code's own check character (position 17); the check character (position 18).
    """
    value = _clean(code, "a unified social credit code")
    if len(value) != 18:
        raise IdentifierError(f"a unified social credit code has 18 characters, not {len(value)}")
    for pos, char in enumerate(value, start=1):
        if char not in _USCC_VALUE:
            raise IdentifierError(
                f"character {_describe(char)} at position {pos} is not allowed in a unified "
                "social credit code (digits and upper-case letters except I, O, Z, S, V)"
            )
    types = _USCC_TYPES.get(value[0])
    if types is None:
        raise IdentifierError(
            f"{value[0]!r} (position 1) is not a registration authority code of GB 32100-2015"
        )
    if value[1] not in types:
        raise IdentifierError(
            f"{value[1]!r} (position 2) is not an organization type of registration authority {value[0]!r}"
        )
    region = value[2:8]
    if not region.isdigit() or (region[:2] not in _MAINLAND_PROVINCES and region != _NATIONAL_REGION):
        raise IdentifierError(f"{region!r} (positions 3-8) is not a region code of a registration authority")
    if _org_code_check_char(value[8:16]) != value[16]:
        raise IdentifierError("the organization code in positions 9-17 fails its check character (GB 11714)")
    if uscc_check_char(value[:17]) != value[17]:
        raise IdentifierError(
            "the check character (position 18) of the unified social credit "
            "code is wrong; the code was probably mistyped"
        )
    return value


# --- resident ID number (GB 11643-1999) -------------------------------------------------

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)  # 2^(17-i) mod 11
_ID_CHECK = "10X98765432"
_EARLIEST_BIRTH = date(1900, 1, 1)


def resident_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character (0-9 or X) for the first 17 digits."""
    return _ID_CHECK[sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True)) % 11]


def validate_resident_id(number: object, *, today: date | None = None) -> str:
    """Check an 18-character resident ID number; return it with a lower-case x upper-cased.

    Checks: 17 digits and a check character (digit or X); a province code in positions 1-2; a
    real calendar birth date in positions 7-14, not before 1900-01-01 and not after `today`
    (default: the platform's business date from `gateway.clock`; a sandbox tenant passes its
    own test-clock date); the MOD 11-2 check character. The 15-digit numbers issued before
    1999 are refused: every such card has been replaced. A refusal says which positions are
    wrong and never quotes them: they are personal data (a birth date, a place).
    """
    value = _clean(number, "a resident ID number")
    if len(value) != 18:
        hint = " (15-digit numbers were replaced by 18-digit ones)" if len(value) == 15 else ""
        raise IdentifierError(f"a resident ID number has 18 characters, not {len(value)}{hint}")
    for pos, char in enumerate(value[:17], start=1):
        if char not in "0123456789":
            raise IdentifierError(
                f"character {_describe(char)} at position {pos} of a resident ID number must be a digit"
            )
    if value[17] not in _ID_CHECK:
        raise IdentifierError(
            f"the last character of a resident ID number must be a digit or X, not {_describe(value[17])}"
        )
    if value[:2] not in _RESIDENT_PROVINCES:
        raise IdentifierError("positions 1-2 are not a province code")
    try:
        born = date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        raise IdentifierError("the birth date (positions 7-14) is not a calendar date") from None
    if born < _EARLIEST_BIRTH:
        raise IdentifierError("the birth date (positions 7-14) is before 1900")
    limit = today if today is not None else base_clock().today()
    if born > limit:
        raise IdentifierError("the birth date (positions 7-14) is in the future")
    if resident_id_check_char(value[:17]) != value[17]:
        raise IdentifierError(
            "the check character (position 18) of the resident ID number is "
            "wrong; the number was probably mistyped"
        )
    return value


# --- bank card number (Luhn) ------------------------------------------------------------


def luhn_check_digit(payload: str) -> str:
    """The Luhn check digit to append to `payload` (digits)."""
    total = 0
    # Doubling starts from the payload's last digit, which sits next to the check digit.
    for i, char in enumerate(reversed(payload)):
        digit = int(char)
        if i % 2 == 0:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return str((10 - total % 10) % 10)


def validate_bank_card(number: object) -> str:
    """Check a bank card number: 12 to 19 ASCII digits with a correct Luhn check digit."""
    value = _clean(number, "a bank card number")
    for pos, char in enumerate(value, start=1):
        # str.isdigit() would let full-width and other Unicode digits through.
        if char not in "0123456789":
            raise IdentifierError(
                f"character {_describe(char)} at position {pos} of a bank card number must be a digit"
            )
    if not 12 <= len(value) <= 19:
        raise IdentifierError(f"a bank card number has 12 to 19 digits, not {len(value)}")
    if luhn_check_digit(value[:-1]) != value[-1]:
        raise IdentifierError("the bank card number fails its check digit (Luhn); it was probably mistyped")
    return value


# --- pydantic types ---------------------------------------------------------------------

USCC = Annotated[
    str,
    AfterValidator(validate_uscc),
    Field(
        description="Unified social credit code (统一社会信用代码, GB 32100-2015), 18 characters",
        examples=["91110000600037341L"],
    ),
]
ResidentId = Annotated[
    str,
    AfterValidator(validate_resident_id),
    Field(description="Resident ID number (居民身份证号码), 18 characters", examples=["11010519491231002X"]),
]
BankCardNumber = Annotated[
    str,
    AfterValidator(validate_bank_card),
    Field(description="Bank card number, 12 to 19 digits (Luhn-checked)", examples=["6222021234567890128"]),
]


# --- generators (sandbox data) ----------------------------------------------------------

# Real region codes, so that generated values look right to a developer who knows them.
_USCC_REGIONS = (
    "110105",
    "110108",
    "310115",
    "310104",
    "440300",
    "440106",
    "330106",
    "320506",
    "510107",
    "420106",
    "370102",
    "350203",
    "500112",
    "610113",
)
_ID_REGIONS = (
    "110101",
    "110105",
    "310104",
    "310115",
    "320102",
    "330106",
    "340104",
    "350203",
    "370102",
    "410105",
    "420106",
    "430104",
    "440305",
    "440106",
    "500103",
    "510107",
    "610113",
    "210102",
    "230102",
    "450103",
)
_DIGITS = "0123456789"
# Letters an organization code may hold inside a USCC (the USCC alphabet's letters).
_ORG_CHARS = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def generate_uscc(rng: random.Random, *, prefix: str = "91", region: str | None = None) -> str:
    """A valid unified social credit code.

    `prefix` is positions 1-2 (default 91: an enterprise registered by market regulation);
    `region` the registering authority's region code (default: one of a few real ones).
    """
    if len(prefix) != 2 or prefix[1] not in _USCC_TYPES.get(prefix[0], ""):
        raise ValueError(f"{prefix!r} is not a registration authority and organization type")
    if region is None:
        region = rng.choice(_USCC_REGIONS)
    elif not (
        len(region) == 6
        and all(c in _DIGITS for c in region)
        and (region[:2] in _MAINLAND_PROVINCES or region == _NATIONAL_REGION)
    ):
        raise ValueError(f"{region!r} is not a region code")
    # Codes issued since 2015 mostly carry an "MA…" organization code; older ones are digits.
    if rng.random() < 0.6:
        body = "MA" + "".join(rng.choice(_ORG_CHARS) for _ in range(6))
    else:
        body = "".join(rng.choice(_DIGITS) for _ in range(8))
    first17 = prefix + region + body + _org_code_check_char(body)
    return first17 + uscc_check_char(first17)


def generate_resident_id(rng: random.Random, birth_date: date | None = None) -> str:
    """A valid resident ID number; a birth date between 1960 and 2002 unless given.

    The default range does not depend on the clock, so a seed always yields the same numbers.
    """
    if birth_date is None:
        birth_date = date.fromordinal(
            rng.randint(date(1960, 1, 1).toordinal(), date(2002, 12, 31).toordinal())
        )
    elif birth_date < _EARLIEST_BIRTH:
        raise ValueError("a resident ID's birth date is not before 1900")
    first17 = rng.choice(_ID_REGIONS) + birth_date.strftime("%Y%m%d") + f"{rng.randint(1, 999):03d}"
    return first17 + resident_id_check_char(first17)


def generate_bank_card(rng: random.Random, bin: str = "622202", length: int = 19) -> str:
    """A valid bank card number starting with `bin` (default 622202, a UnionPay debit BIN)."""
    if not bin or any(c not in _DIGITS for c in bin):
        raise ValueError("a BIN is digits")
    if not 12 <= length <= 19 or len(bin) >= length:
        raise ValueError("a card number has 12 to 19 digits, more than its BIN")
    payload = bin + "".join(rng.choice(_DIGITS) for _ in range(length - len(bin) - 1))
    return payload + luhn_check_digit(payload)
