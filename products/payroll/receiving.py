"""The receiving side of a payroll credit: does the employee's account accept it, and does a
paid credit come back later (退票)?

Two cases:

- The card is an account of this bank (found in the tenant's ledger by its digest): the credit
  goes straight to it. A closed account refuses it (`account_closed`), and so does a name that
  is not the holder's (`name_mismatch`, 户名不符).
- Any other card belongs to another bank: the credit leaves through the bank's clearing
  account. In the sandbox the platform's magic values (`products.accounts.magic`, one table for
  every product) decide what that bank answers:

| input | outcome | reason code |
| --- | --- | --- |
| card number ending `0002` | fails | `account_closed` (账户已销户) |
| card number ending `0003` | fails | `account_frozen` (账户冻结) |
| employee name `户名不符`, or containing `MISMATCH` | fails | `name_mismatch` (户名不符) |
| amount `4040.01` / `.02` / `.03` / `.04` | fails | `insufficient_funds` / `account_closed` / `account_frozen` / `name_mismatch` |
| amount `4040.05` | stays `pending` (amount held), fails 60 s after the batch starts paying | `processing_failed` |
| employee name containing `RETURN` (or `退票`) | paid, then returned 24 hours later on the test clock | `account_closed` (退票) |

Validation runs the same check as a pre-check and reports what it predicts as warnings, before
any money moves; payment enforces it, and the failed item's money goes back to the payer.
Production tenants never match a magic value.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from products.accounts import magic

REASONS = {
    "name_mismatch": "户名不符: the name does not match the account holder's",
    "account_closed": "账户已销户: the receiving account is closed",
    "account_frozen": "账户冻结: the receiving account is frozen",
    "account_not_found": "账户不存在: the receiving bank has no such account",
    "processing_failed": "处理失败: the receiving bank could not process the credit",
    "insufficient_funds": "余额不足: the payer account could not fund the item",
    "other": "退票: returned by the receiving bank",
    "batch_cancelled": "批次已撤销: the batch was cancelled",
    # The wage-account rules (products.payroll.wage), checked again when each item is paid.
    "worker_not_registered": "非实名登记工人: the person is not a registered worker of the "
                             "wage project",
    "worker_not_active": "工人已离场: the registered worker has left the project",
    "contract_ended": "劳动合同已到期: the worker's contract ended before the value date",
    "worker_name_mismatch": "姓名与登记不符: the name differs from the worker's registration",
    "card_not_registered": "非登记工资卡: wages go only to the worker's registered card",
    "exceeds_wage_owed": "超出欠付工资: more than the rest of the agreed monthly wage owed to "
                         "a worker no longer on the project",
    "wage_account_restricted": "工资专户受限: the wage account pays only its project's "
                               "registered workers",
}
RETURN_AFTER = timedelta(hours=24)
RETURN_MARKERS = ("RETURN", "退票")
RETURN_CODE = "account_closed"


@dataclass(frozen=True)
class Payee:
    """An account of this bank that a card number belongs to."""

    account_id: str
    status: str
    owner_name: str


@dataclass(frozen=True)
class Verdict:
    code: str | None  # None: the credit is accepted
    return_code: str | None = None  # accepted, then returned after RETURN_AFTER


def _normal(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).split())


def check(*, card_last4: str, name: str | Callable[[], str], amount_fen: int, sandbox: bool,
          payee: Payee | None) -> Verdict:
    """What the receiving bank says to a credit of `amount_fen` to this card and name.

    Only the card's last four digits matter (the sandbox's magic suffixes; a card of this bank
    is found by its digest beforehand). `name` may be a function that gives it: the worker
    decrypts an employee's name only when the answer depends on it.
    """
    if callable(name):
        name_of = name
    else:
        def name_of() -> str:
            return name
    if sandbox:
        forced = magic.magic_amount(amount_fen)
        if forced is not None:
            return Verdict(forced.failure_code)
    if payee is not None:
        if payee.status == "closed":
            return Verdict("account_closed")
        if _normal(name_of()) != _normal(payee.owner_name):
            return Verdict("name_mismatch")
        return Verdict(None)
    if not sandbox:
        return Verdict(None)
    status = magic.account_number_status(card_last4)
    if status is not None:
        return Verdict(f"account_{status}")
    name = name_of()
    if magic.forces_name_mismatch(name):
        return Verdict("name_mismatch")
    if any(marker in name.upper() for marker in RETURN_MARKERS):
        return Verdict(None, RETURN_CODE)
    return Verdict(None)


def reason_text(code: str) -> str:
    return REASONS.get(code, code)


# The delay is `processing._held_pending`'s.
_AMOUNT_OUTCOMES = {
    "failed": "item fails",
    "pending_then_failed": f"item stays pending (amount held), fails "
                           f"{int(magic.PENDING_FAILS_AFTER.total_seconds())} s after the batch starts paying "
                           "(test clock)",
}


def table() -> list[dict[str, str]]:
    """Payroll's sandbox magic values as rows (the shared ones, and the return marker)."""
    rows = [{"input": "card number ending 0002", "outcome": "item fails",
             "reason_code": "account_closed"},
            {"input": "card number ending 0003", "outcome": "item fails",
             "reason_code": "account_frozen"},
            {"input": "employee name 户名不符, or containing MISMATCH", "outcome": "item fails",
             "reason_code": "name_mismatch"}]
    rows += [{"input": f"amount {m.amount}", "outcome": _AMOUNT_OUTCOMES[m.outcome],
              "reason_code": m.failure_code} for m in magic.MAGIC_AMOUNTS.values()]
    rows.append({"input": "employee name containing RETURN or 退票",
                 "outcome": "paid, then returned (退票) 24 hours later on the test clock",
                 "reason_code": RETURN_CODE})
    return rows
