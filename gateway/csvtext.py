"""CSV the platform writes for people: statements, reconciliation files, payroll results.

They are opened in spreadsheet tools, which run a cell starting with `=`, `+`, `-` or `@` as a
formula (CSV injection): a memo or a reference a partner or payer wrote could run one on a
bank clerk's machine. Such a cell is written as text, with a leading apostrophe (OWASP's
advice); a signed number, such as a refund's -12.00, stays a number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


def spreadsheet_safe(value: object) -> str:
    """A cell's text as written (None as empty): one a spreadsheet would run as a formula made
    plain text."""
    text = "" if value is None else str(value)
    if text.startswith(_FORMULA_STARTS) and not _NUMBER.fullmatch(text):
        return "'" + text
    return text


def csv_record(values: Iterable[object]) -> str:
    """One record, quoted only where needed, with CRLF (what spreadsheet tools expect), every
    cell `spreadsheet_safe`."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([spreadsheet_safe(v) for v in values])
    return buffer.getvalue()
