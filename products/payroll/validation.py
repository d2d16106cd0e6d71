"""Checking one payroll item before anything is stored or paid.

Every field is checked and every problem reported (not just the first), each as a finding
with the field and a stable code, so the HR system can fix the whole file in one go.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date

from gateway.identifiers import IdentifierError, validate_bank_card, validate_resident_id
from gateway.money import MoneyError, parse_fen

MAX_ITEMS = 100_000
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/\-]{0,63}")
# The names of the purposes in the layout Chinese HR systems export (工资/奖金/报销).
PURPOSE_ALIASES = {"工资": "wages", "奖金": "bonus", "报销": "reimbursement", "费用报销": "reimbursement"}

# Codes an item can be refused with (documented in the README).
ITEM_CODES = {
    "missing_name": "the employee name is empty",
    "invalid_name": "the employee name is too long or holds control or invisible format "
                    "characters (such as a zero-width space)",
    "invalid_id_number": "the resident ID number fails its checks",
    "invalid_account_number": "the card number is malformed or fails its Luhn check digit",
    "invalid_amount": "the amount is not a positive decimal with at most two decimals",
    "invalid_memo": "the memo is longer than 60 characters",
    "missing_item_reference": "the item reference is empty",
    "invalid_item_reference": "the item reference is not 1-64 letters, digits or ._:/-",
    "duplicate_item_reference": "another item of the batch has the same reference",
    "worker_not_registered": "the person is not a registered worker of the wage project",
    "worker_not_active": "the registered worker has left the project and is owed no unpaid "
                         "wages for the batch's wage_month",
    "contract_ended": "the registered worker's contract ended before the batch's value date "
                      "and they are owed no unpaid wages for the batch's wage_month",
    "exceeds_wage_owed": "the items would pay a worker no longer on the project more than the "
                         "rest of the agreed monthly wage owed for the batch's wage_month",
    "worker_name_mismatch": "the name differs from the worker's registration",
    "card_not_registered": "the card is not the worker's registered card",
    "purpose_not_allowed": "a wage account pays wages only",
    "count_mismatch": "the declared count differs from the number of items",
    "total_mismatch": "the declared total differs from the sum of the items",
}


@dataclass
class CheckedItem:
    line: int
    item_reference: str
    employee_name: str
    id_number: str
    account_number: str
    amount_fen: int
    memo: str
    errors: list[tuple[str, str, str]] = field(default_factory=list)


def name_problem(name: str) -> tuple[str, str] | None:
    """The one name rule, for batch items and for registering a wage project's workers (a
    name registered that items could not repeat would leave the worker unpayable): (code,
    message) of what is wrong with a trimmed `name`, None when it is acceptable."""
    if not name:
        return "missing_name", "The name is empty."
    if len(name) > 60:
        return "invalid_name", "The name is longer than 60 characters."
    # Category C: control characters, and invisible format ones such as a zero-width space
    # pasted from a spreadsheet, which no one can see to type again.
    if any(unicodedata.category(c).startswith("C") for c in name):
        return "invalid_name", ("The name holds control or invisible format characters (such "
                                "as a zero-width space).")
    return None


def check_item(*, line: int, employee_name: str, id_number: str, account_number: str,
               amount: str, memo: str, item_reference: str, today: date) -> CheckedItem:
    """Check the fields of one item; the result carries normalized values and any errors."""
    errors: list[tuple[str, str, str]] = []
    name = employee_name.strip()
    problem = name_problem(name)
    if problem:
        errors.append(("employee_name", *problem))
    try:
        id_norm = validate_resident_id(id_number, today=today)
    except IdentifierError as exc:
        id_norm = id_number.strip()
        errors.append(("id_number", "invalid_id_number",
                       f"The ID number is not valid: {str(exc)}."))
    try:
        card = validate_bank_card(account_number)
    except IdentifierError as exc:
        card = account_number.strip()
        errors.append(("account_number", "invalid_account_number",
                       f"The card number is not valid: {str(exc)}."))
    try:
        fen = parse_fen(amount.strip(), allow_zero=False)
    except MoneyError as exc:
        fen = 0
        errors.append(("amount", "invalid_amount", f"The amount is not valid: {exc}."))
    memo = memo.strip()
    if len(memo) > 60 or any(unicodedata.category(c) == "Cc" for c in memo):
        errors.append(("memo", "invalid_memo", "The memo is longer than 60 characters or holds "
                                               "control characters."))
    ref = item_reference.strip()
    if not ref:
        errors.append(("item_reference", "missing_item_reference", "The item reference is empty."))
    elif not _REFERENCE.fullmatch(ref):
        errors.append(("item_reference", "invalid_item_reference",
                       "The item reference must be 1-64 letters, digits or . _ : / -."))
    return CheckedItem(line=line, item_reference=ref[:64], employee_name=name[:60],
                       id_number=id_norm[:32], account_number=card[:32], amount_fen=fen,
                       memo=memo[:60], errors=errors)


def normalize_purpose(value: str) -> str:
    return PURPOSE_ALIASES.get(value.strip(), value.strip().lower())


def normalize_count(value: str) -> int | str:
    """A file's count is text: its digits (0-9 only) as a number; pydantic refuses the rest, as
    it refuses a JSON body's count given as text."""
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) <= 9 else value


def normalize_date(value: str) -> str:
    """Accept 2026-11-10 and the 20261110 form bank files use; pydantic checks the rest."""
    value = value.strip()
    if len(value) == 8 and value.isdigit():
        return f"{value[:4]}-{value[4:6]}-{value[6:]}"
    return value
