"""Text formats of request fields, each with the words a validation problem uses for it.

A field declared with a regular expression is documented with it (OpenAPI `pattern`), but a
partner's developer reading a 422 should not have to read a regular expression: the problem
says what the value should look like instead ("Expected a month as YYYY-MM, such as 2026-11.").
Every pattern a route or schema uses is defined here, so each has its words
(tests/gateway/test_patterns.py checks the published document against this list).
"""

from __future__ import annotations

import re

_WORDS: dict[str, str] = {}


def pattern(regex: str, words: str) -> str:
    """`regex`, remembered with what a value of it looks like, in words."""
    _WORDS[regex] = words
    return regex


MONTH = pattern(r"^[0-9]{4}-(0[1-9]|1[0-2])$", "a month as YYYY-MM, such as 2026-11")
REGION = pattern(r"^[0-9]{6}$", "a six-digit administrative division code, such as 310115")
DIGITS = pattern(r"^[0-9]+$", "digits only")
# Digits are written [0-9], not \d, which would take any script's digits (such as "２０２６").
# A partner's own references: letters, digits and a little punctuation, so that they survive
# file names, URLs and spreadsheets unquoted.
REFERENCE = pattern(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]{0,63}$",
                    "1 to 64 letters, digits, '.', '_', ':', '/' or '-', starting with a letter "
                    "or digit")
# An escrow sub-account's reference may be a court case number (案号, "(2026)沪0115执1234号"):
# Chinese characters (the unified ideographs and extension A) and brackets, half or full width.
_CASE_CHARS = "0-9A-Za-z\u3400-\u4dbf\u4e00-\u9fff()\uff08\uff09\u3014\u3015"
CASE_REFERENCE = pattern(f"^[{_CASE_CHARS}][{_CASE_CHARS}._:/\\-]{{0,63}}$",
                         "1 to 64 letters, Chinese characters, digits, brackets, '.', '_', ':', "
                         "'/' or '-', such as (2026)沪0115执1234号 or S2026001")
REFERENCE_ANY_LENGTH = pattern(r"^[A-Za-z0-9][A-Za-z0-9._:/\-]*$",
                               "letters, digits, '.', '_', ':', '/' or '-', starting with a "
                               "letter or digit")
REFERENCE_NO_COLON = pattern(r"^[A-Za-z0-9][A-Za-z0-9._/\-]*$",
                             "letters, digits, '.', '_', '/' or '-', starting with a letter or "
                             "digit")
CODE = pattern(r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
               "letters, digits, '.', '_' or '-', starting with a letter or digit")
ITEM_CODE = pattern(r"^[A-Za-z0-9][A-Za-z0-9.\-]{0,31}$",
                    "1 to 32 letters, digits, '.' or '-', starting with a letter or digit, "
                    "such as 103040101")
MILESTONE_CODE = pattern(r"^[A-Za-z0-9_\-]{1,32}$",
                         "1 to 32 letters, digits, '_' or '-', such as structure_topped")
EMAIL = pattern(r"^[^@\s]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
                "an email address, such as zhang.wei@acme.example")
SIMPLE_EMAIL = pattern(r"^[^@\s]+@[^@\s]+\.[^@\s]+$", "an email address, such as dev@acme.example")
PHONE = pattern(r"^(\+86[- ]?)?(1[3-9][0-9]{9}|0[0-9]{2,3}-?[0-9]{7,8})$",
                "a mainland China mobile number (such as 13812345678) or landline with its "
                "area code (such as 021-68881234)")
MOBILE = pattern(r"^1[3-9][0-9]{9}$", "an 11-digit mainland China mobile number, such as "
                 "13812345678")
WEB_ADDRESS = pattern(r"^https?://\S+$", "an http:// or https:// address without spaces")

# A query filter written as `^(a|b|c)$`: its words are the choices themselves.
_CHOICES = re.compile(r"^\^\(([a-z_]+(?:\|[a-z_]+)*)\)\$$")


def choices(*values: str) -> str:
    return "^(" + "|".join(values) + ")$"


def mismatch_message(regex: str) -> str:
    """The validation message for a value that does not match `regex`."""
    words = _WORDS.get(regex)
    if words is not None:
        return f"Expected {words}."
    chosen = _CHOICES.match(regex)
    if chosen:
        return "Expected one of: " + ", ".join(chosen.group(1).split("|")) + "."
    return "This value is not in the expected format."


def described(regex: str) -> bool:
    """Whether a mismatch of `regex` is explained in words (not the fallback)."""
    return regex in _WORDS or _CHOICES.match(regex) is not None
