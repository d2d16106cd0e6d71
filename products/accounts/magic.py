"""Sandbox magic values: inputs that force an outcome, so developers can test every path.

They apply in sandbox tenants only (a production tenant never sees them). Any product that
pays money (transfers, payroll items, collection payouts) should honour the same table, so a
developer learns it once. Import the helpers rather than copying the values.

| input | where | outcome | failure code |
| --- | --- | --- | --- |
| amount `4040.01` | any payment | fails, nothing moves | `insufficient_funds` |
| amount `4040.02` | any payment | fails, nothing moves | `account_closed` |
| amount `4040.03` | any payment | fails, nothing moves | `account_frozen` |
| amount `4040.04` | any payment | fails, nothing moves | `name_mismatch` |
| amount `4040.05` | any payment | `pending` (amount held), fails after 60 s | `processing_failed` |
| account number ending `0002` | account created, payer's card, payroll card | the account is closed: payments from it and into it fail | `account_closed` |
| account number ending `0003` | account created, payer's card, payroll card | the account is frozen (只收不付): payments from it fail, payments into it succeed; a payroll item to such a card is refused by the receiving bank | `account_frozen` |
| owner name `户名不符`, or containing `MISMATCH` | payee paid by name | name check fails | `name_mismatch` |

A frozen account here is frozen as banks commonly freeze one (冻结, 只收不付): it refuses debits
and holds and still accepts credits (`products.accounts.service`); only a closed account
refuses both. So a transfer into the sandbox's frozen account (the seed's `frozen`, number
ending 0003) completes, and one out of it fails with `account_frozen`. A payroll item's card
that is not an account of the tenant is another bank's, and its suffix decides what that
receiving bank answers (`products.payroll.receiving`): 0003 makes it refuse the item.

The amounts are chosen to be unlikely by accident (a "404" and the cents name the outcome; the
cents of .02/.03 match the account-number suffixes). The time until a pending payment fails
runs on the tenant's clock, so advancing the sandbox test clock resolves it at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Final, Literal

from products.accounts.errors import PROCESSING_FAILED

Outcome = Literal["failed", "pending_then_failed"]


@dataclass(frozen=True)
class MagicAmount:
    amount: str
    fen: int
    outcome: Outcome
    failure_code: str
    description: str


MAGIC_AMOUNTS: Final[dict[int, MagicAmount]] = {
    m.fen: m
    for m in (
        MagicAmount("4040.01", 404001, "failed", "insufficient_funds",
                    "The payer's account has insufficient funds."),
        MagicAmount("4040.02", 404002, "failed", "account_closed", "An account is closed."),
        MagicAmount("4040.03", 404003, "failed", "account_frozen", "An account is frozen."),
        MagicAmount("4040.04", 404004, "failed", "name_mismatch",
                    "The payee's name does not match the account."),
        MagicAmount("4040.05", 404005, "pending_then_failed", PROCESSING_FAILED,
                    "The payment stays pending, then fails at the bank."),
    )
}

PENDING_FAILS_AFTER: Final = timedelta(seconds=60)

# Suffix of an account number -> the status such an account has in the sandbox.
MAGIC_ACCOUNT_SUFFIXES: Final[dict[str, Literal["closed", "frozen"]]] = {
    "0002": "closed",
    "0003": "frozen",
}

# What each magic status does to money, as the table (sign-up, /docs) says it: the ledger's
# rules (`service._check_debitable`, `service._check_creditable`) and payroll's receiving bank.
STATUS_OUTCOMES: Final[dict[str, str]] = {
    "closed": "account closed: debits and credits fail",
    "frozen": "account frozen: debits fail, credits succeed",
}
STATUS_DESCRIPTIONS: Final[dict[str, str]] = {
    "closed": "The account is closed (销户): it neither pays nor receives. A payment from it or "
              "into it fails with account_closed and nothing moves. A payroll item to a card "
              "ending 0002 is refused by the receiving bank (account_closed).",
    "frozen": "The account is frozen (冻结, 只收不付): it refuses debits and accepts credits. A "
              "payment from it (or a hold on it) fails with account_frozen and nothing moves; "
              "a payment into it succeeds. A payroll item to a card ending 0003 is refused by "
              "the receiving bank (account_frozen).",
}

MISMATCH_NAMES: Final = frozenset({"户名不符"})
MISMATCH_MARKER: Final = "MISMATCH"


def magic_amount(fen: int) -> MagicAmount | None:
    """The forced outcome of a sandbox payment of this amount, if any."""
    return MAGIC_AMOUNTS.get(fen)


def account_number_status(number: str) -> Literal["closed", "frozen"] | None:
    """The status a sandbox account (or payee) with this number has, if its suffix is magic."""
    return MAGIC_ACCOUNT_SUFFIXES.get(number[-4:])


def forces_name_mismatch(owner_name: str) -> bool:
    """Whether paying this sandbox owner by name always fails the name check."""
    return owner_name in MISMATCH_NAMES or MISMATCH_MARKER in owner_name.upper()


def table() -> list[dict[str, str]]:
    """The magic values as rows, for the sandbox's documentation endpoint."""
    rows = [{"input": f"amount {m.amount}", "outcome": m.outcome, "failure_code": m.failure_code,
             "description": m.description} for m in MAGIC_AMOUNTS.values()]
    rows += [{"input": f"account number ending {suffix}", "outcome": STATUS_OUTCOMES[status],
              "failure_code": f"account_{status}", "description": STATUS_DESCRIPTIONS[status]}
             for suffix, status in MAGIC_ACCOUNT_SUFFIXES.items()]
    rows.append({"input": f"owner name 户名不符 or containing {MISMATCH_MARKER}",
                 "outcome": "failed", "failure_code": "name_mismatch",
                 "description": "Paying this owner by name fails the name check."})
    return rows


def markdown(rows: list[dict[str, str]]) -> str:
    """Rows of a magic-value table (`table()`, payroll's) as a Markdown table, for the API's
    own documentation: the same rows the sandbox's sign-up returns, written once."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(c.replace("_", " ") for c in columns) + " |",
             "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |"
              for row in rows]
    return "\n".join(lines)
