"""The state machines of accounts, holds and transfers: the one table of allowed transitions each."""

from __future__ import annotations

from typing import Final

ACCOUNT_KINDS: Final = ("settlement", "escrow", "wage", "virtual", "internal")
OWNER_TYPES: Final = ("enterprise", "person", "bank")

ACCOUNT_STATUSES: Final = ("active", "frozen", "closed")
# A frozen account (司法冻结, risk freeze) must be unfrozen before it can be closed.
ACCOUNT_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "active": frozenset({"frozen", "closed"}),
    "frozen": frozenset({"active"}),
    "closed": frozenset(),
}

HOLD_STATUSES: Final = ("active", "captured", "released")
# A partly captured hold stays active until its remainder is captured or released; when nothing
# remains it ends `captured` if anything was captured from it, else `released`.
HOLD_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "active": frozenset({"active", "captured", "released"}),
    "captured": frozenset(),
    "released": frozenset(),
}

TRANSFER_STATUSES: Final = ("pending", "completed", "failed")
TRANSFER_TRANSITIONS: Final[dict[str, frozenset[str]]] = {
    "pending": frozenset({"completed", "failed"}),
    "completed": frozenset(),
    "failed": frozenset(),
}

# Kinds whose accounts are restricted by default (a guard of that name must accept each debit).
DEFAULT_RESTRICTIONS: Final[dict[str, str]] = {"escrow": "escrow", "wage": "wage_account"}


def can_transition(table: dict[str, frozenset[str]], current: str, new: str) -> bool:
    return new in table.get(current, frozenset())
