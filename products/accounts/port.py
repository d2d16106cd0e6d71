"""The core-banking port: what products may ask of the bank's ledger.

Products (payroll, collection, chain credit, e-government escrow) move money only through a
`CoreBanking`, obtained from `products.accounts.service.get_core_banking()`. The default is
`LedgerCoreBanking`, this package's double-entry ledger; a bank can plug in an adapter to its
real core system with `set_core_banking`, and no product changes.

The contract every implementation keeps:

- Every call takes the caller's Session and the tenant id, and works inside the caller's
  transaction (it flushes, never commits). Accounts of another tenant do not exist.
- Money is integer fen (CNY); amounts are positive. Timestamps come from `at`, or the tenant's
  clock (`gateway.tenancy.clock_for`), never the wall clock.
- A movement is one journal entry whose legs sum to zero, and carries a `journal_ref` unique in
  the tenant: calling again with a `journal_ref` already posted returns the original entry
  (`replayed=True`) and moves nothing, which makes retries and crash-restarts pay exactly once.
  Reusing it for a different movement is a `JournalRefConflict`. Holds do the same with
  `hold_ref`.
- Refusals (`products.accounts.errors.PaymentRefused`: insufficient funds, frozen or closed
  account, a restricted account whose guard does not accept the authorization) are raised
  before anything is written.
- `available = ledger - held` never falls below `-overdraft_limit`, whatever the concurrency.

An adapter may also offer `BulkCapture` (many captures of one hold in one step, each still its
own entry with its own `journal_ref`); payroll pays its chunks with it when it is there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from sqlalchemy.orm import Session

DebitOperation = Literal["transfer", "hold", "capture"]


@dataclass(frozen=True)
class DebitContext:
    """What a debit guard sees about a debit of a restricted account.

    `authorization` is whatever the restriction's owner asks callers to present (an escrow
    release instruction id, a payroll item); the guard interprets it.
    """

    tenant_id: str
    operation: DebitOperation
    purpose: str
    amount_fen: int
    authorization: Any
    reference_type: str
    reference_id: str
    counterparty_account_id: str | None = None
    hold_id: str | None = None


@dataclass(frozen=True)
class Leg:
    """One side of a journal entry: a positive amount credits the account, negative debits it."""

    account_id: str
    amount_fen: int


@dataclass(frozen=True)
class PostingRecord:
    id: str
    account_id: str
    amount_fen: int
    balance_after_fen: int
    seq: int


@dataclass(frozen=True)
class EntryRecord:
    id: str
    journal_ref: str
    kind: str
    purpose: str
    reference_type: str
    reference_id: str
    memo: str | None
    hold_id: str | None
    created_at: datetime
    postings: tuple[PostingRecord, ...]
    # True when this call found the entry already posted and moved nothing.
    replayed: bool = False

    @property
    def total_fen(self) -> int:
        return sum(p.amount_fen for p in self.postings if p.amount_fen > 0)


@dataclass(frozen=True)
class HoldRecord:
    id: str
    account_id: str
    hold_ref: str
    amount_fen: int
    captured_fen: int
    released_fen: int
    status: str
    purpose: str
    reference_type: str
    reference_id: str
    memo: str | None
    created_at: datetime
    updated_at: datetime
    replayed: bool = False

    @property
    def remaining_fen(self) -> int:
        return self.amount_fen - self.captured_fen - self.released_fen


@dataclass(frozen=True)
class CaptureResult:
    hold: HoldRecord
    entry: EntryRecord


@dataclass(frozen=True)
class Capture:
    """One part of a hold to pay with `BulkCapture.capture_hold_many`: its own journal entry.

    `reference_type` / `reference_id` default to the hold's, as in `capture_hold`."""

    journal_ref: str
    to_account_id: str
    amount_fen: int
    reference_type: str | None = None
    reference_id: str | None = None
    memo: str | None = None
    authorization: Any = None


@dataclass(frozen=True)
class CaptureOutcome:
    """What became of one capture: paid (`entry_id`; `replayed` when it had been paid
    already), or refused (`refusal`, the `PaymentRefused` code; nothing was written for it)."""

    journal_ref: str
    entry_id: str | None
    refusal: str | None = None
    replayed: bool = False


@dataclass(frozen=True)
class Balance:
    account_id: str
    ledger_fen: int
    held_fen: int
    # None: unlimited (the bank's internal accounts).
    overdraft_limit_fen: int | None
    as_of: datetime

    @property
    def available_fen(self) -> int:
        """Ledger minus held; never below -overdraft_limit."""
        return self.ledger_fen - self.held_fen


@dataclass(frozen=True)
class StatementLine:
    posting_id: str
    entry_id: str
    amount_fen: int
    balance_after_fen: int
    memo: str | None
    purpose: str
    reference_type: str
    reference_id: str
    counterparty_account_id: str | None
    created_at: datetime


@dataclass(frozen=True)
class Statement:
    """Postings in [start, end) and the ledger balances at both instants."""

    account_id: str
    start: datetime
    end: datetime
    opening_fen: int
    closing_fen: int
    lines: tuple[StatementLine, ...]

    @property
    def credits_fen(self) -> int:
        return sum(line.amount_fen for line in self.lines if line.amount_fen > 0)

    @property
    def debits_fen(self) -> int:
        return -sum(line.amount_fen for line in self.lines if line.amount_fen < 0)


@runtime_checkable
class CoreBanking(Protocol):
    """The bank's ledger as products see it (see the module docstring for the contract)."""

    def transfer(self, session: Session, tenant_id: str, *, from_account_id: str,
                 to_account_id: str, amount_fen: int, journal_ref: str, reference_type: str,
                 reference_id: str, purpose: str = "transfer", memo: str | None = None,
                 authorization: Any = None, at: datetime | None = None) -> EntryRecord:
        """Move `amount_fen` from one account to another in one entry."""
        ...

    def post_entry(self, session: Session, tenant_id: str, *, legs: Sequence[Leg],
                   journal_ref: str, reference_type: str, reference_id: str, purpose: str,
                   memo: str | None = None, authorization: Any = None,
                   at: datetime | None = None) -> EntryRecord:
        """Post a multi-leg entry (a split: payer -> merchant + platform fee); legs sum to 0."""
        ...

    def place_hold(self, session: Session, tenant_id: str, *, account_id: str, amount_fen: int,
                   hold_ref: str, reference_type: str, reference_id: str, purpose: str = "hold",
                   memo: str | None = None, authorization: Any = None,
                   at: datetime | None = None) -> HoldRecord:
        """Reserve money on an account (it stays on the ledger but is no longer available)."""
        ...

    def capture_hold(self, session: Session, tenant_id: str, hold_id: str, *,
                     to_account_id: str, journal_ref: str, amount_fen: int | None = None,
                     final: bool = False, purpose: str | None = None, memo: str | None = None,
                     authorization: Any = None, reference_type: str | None = None,
                     reference_id: str | None = None, at: datetime | None = None) -> CaptureResult:
        """Pay all or part of a hold's remainder to another account.

        A partial capture keeps the rest held (until captured or released) unless `final`,
        which releases the rest in the same step.
        """
        ...

    def release_hold(self, session: Session, tenant_id: str, hold_id: str, *,
                     amount_fen: int | None = None, at: datetime | None = None) -> HoldRecord:
        """Give back all (the default) or part of a hold's remainder to the available balance."""
        ...

    def get_hold(self, session: Session, tenant_id: str, hold_id: str) -> HoldRecord:
        """A hold as it is now."""
        ...

    def balance(self, session: Session, tenant_id: str, account_id: str) -> Balance:
        """An account's ledger, held and available balances now."""
        ...

    def statement(self, session: Session, tenant_id: str, account_id: str, start: datetime,
                  end: datetime) -> Statement:
        """The account's postings in [start, end) with the opening and closing balances."""
        ...


@runtime_checkable
class BulkCapture(Protocol):
    """An optional capability of a `CoreBanking` adapter: many captures of one hold at once.

    The ledger implements it; products check for it (`isinstance(core, BulkCapture)`) and
    otherwise call `capture_hold` once per part, with the same outcome.
    """

    def capture_hold_many(self, session: Session, tenant_id: str, hold_id: str,
                          captures: Sequence[Capture], *, purpose: str | None = None,
                          at: datetime | None = None) -> list[CaptureOutcome]:
        """Capture each part as `capture_hold` would, in order, with one outcome per part.

        Known journal refs replay (or raise `JournalRefConflict`), refusals are reported in
        the outcome and write nothing, and anything else raises before anything is written.
        """
        ...
