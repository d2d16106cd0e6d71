"""The ledger: accounts, a double-entry journal, holds and transfers (`LedgerCoreBanking`).

Rules, all enforced here and nowhere else:

- Every money movement is one journal entry whose postings sum to zero, posted under the row
  locks of the accounts it touches. `journal_ref` is unique per tenant: posting again with a
  known ref returns the first entry and moves nothing (a ref reused for a different movement is
  a `JournalRefConflict`).
- An account's `ledger_fen` and `held_fen` are updated with its postings and holds, in the same
  transaction, under its row lock; `audit` proves them equal to the sums they summarize.
- `available = ledger - held` never goes below `-overdraft_limit` (NULL limit: unlimited, the
  bank's internal accounts only). Debits and holds check it under the lock; a CHECK constraint
  on the row backs it up.
- Frozen accounts refuse debits and holds (credits still arrive); closed accounts refuse both.
  A restricted account refuses every debit its restriction's guard does not accept, and every
  credit its credit guard, when the restriction has one, does not (`products.accounts.guards`).

Concurrency: accounts are locked one by one in sorted id order, with SELECT ... FOR UPDATE on
PostgreSQL (READ COMMITTED) and refreshed from the row (`populate_existing`), so two movements
over the same accounts wait for each other and never deadlock; a journal_ref is looked up again
once the locks are held, so a concurrent retry replays instead of paying twice. SQLite
serializes every writer with BEGIN IMMEDIATE.

Ordering: postings of an account are numbered (`seq`) under its lock, and an entry's time is
never earlier than the last posting of any account it touches. So `(created_at, seq)` is the
order in which the balances actually changed, `balance_after_fen` is a true running balance,
and the transactions list pages on `seq`, which is that order (ordering by a global
`(created_at, id)` would not be: ids made by different processes are not ordered among
themselves).

Holds: a capture pays part or all of a hold's remainder to one account in one journal entry.
A partial capture keeps the rest held until it is captured or released (payroll captures item
by item out of one hold and releases what failed); pass `final=True` to release the rest in
the same step. `capture_hold_many` makes many captures of one hold at once (a payroll chunk):
each is still its own entry under its own journal_ref, checked and replayed as one capture is,
but the accounts are locked once, entries and postings are written in bulk (`gateway.bulk`)
and each account's balances and the hold change once. `_Positions` numbers postings and runs
balances for both paths.

Services flush, never commit; time comes from `at` or the tenant's clock.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from json.encoder import encode_basestring as _json_string
from types import SimpleNamespace
from typing import Any, Final, Generic, TypeVar

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from gateway import pagination
from gateway.bulk import (
    insert_rows,
    row_writer,
    session_insert,
    session_insert_later,
    session_rows,
    session_store,
    session_update_later,
)
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.identifiers import (
    IdentifierError,
    luhn_check_digit,
    validate_bank_card,
    validate_resident_id,
    validate_uscc,
)
from gateway.ids import new_id
from gateway.money import MAX_FEN, format_fen
from gateway.pii import mask_account_number, mask_id_number, mask_name, pii_digest
from gateway.tenancy import clock_for, is_sandbox
from products.accounts import magic
from products.accounts.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFound,
    HoldAmountExceeded,
    HoldNotActive,
    HoldNotFound,
    HoldRefConflict,
    InsufficientFunds,
    InvalidAccount,
    InvalidAccountTransition,
    InvalidAmount,
    InvalidPeriod,
    JournalRefConflict,
    LedgerIntegrityError,
    NameMismatch,
    OverdraftInUse,
    PaymentRefused,
    SameAccount,
    TransferNotFound,
    UnbalancedEntry,
)
from products.accounts.guards import (
    RESTRICTION_NAME,
    DebitGuard,
    check_credit,
    check_debit,
    register_debit_guard,
    unregister_debit_guard,
)
from products.accounts.models import Account, Hold, JournalEntry, Posting, Transfer
from products.accounts.port import (
    Balance,
    Capture,
    CaptureOutcome,
    CaptureResult,
    CoreBanking,
    DebitContext,
    DebitOperation,
    EntryRecord,
    HoldRecord,
    Leg,
    PostingRecord,
    Statement,
    StatementLine,
)
from products.accounts.schemas import AccountOut, TransferOut
from products.accounts.states import (
    ACCOUNT_KINDS,
    ACCOUNT_TRANSITIONS,
    DEFAULT_RESTRICTIONS,
    TRANSFER_TRANSITIONS,
    can_transition,
)

__all__ = [
    "DEFAULT_RESTRICTION",
    "BANK_OWNER_NAME",
    "CLEARING",
    "DebitContext",
    "DebitGuard",
    "LedgerCoreBanking",
    "Leg",
    "Page",
    "audit",
    "balance",
    "capture_hold",
    "capture_hold_many",
    "close_account",
    "create_account",
    "create_transfer",
    "deposit",
    "find_account_by_number",
    "freeze_account",
    "generate_account_number",
    "get_account",
    "get_core_banking",
    "get_hold",
    "get_transfer",
    "internal_account",
    "list_accounts",
    "list_transfers",
    "place_hold",
    "post_entry",
    "register_debit_guard",
    "release_hold",
    "resolve_due_transfers",
    "set_core_banking",
    "set_overdraft_limit",
    "statement",
    "transactions",
    "transfer",
    "unfreeze_account",
    "unregister_debit_guard",
]

T = TypeVar("T")

BANK_OWNER_NAME: Final = "本行内部账户"
# The bank's clearing account of a tenant: money entering or leaving the platform passes it.
CLEARING: Final = "clearing"
MAX_LIMIT: Final = 100
_REF_MAX = 160
_MEMO_MAX = 200
_REFERENCE_TYPE_MAX = 40
_REFERENCE_ID_MAX = 80
_IN_CHUNK = 500


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT_RESTRICTION"


# `create_account(debit_restriction=...)` default: the kind's usual restriction (escrow accounts
# "escrow", wage accounts "wage_account", others none).
DEFAULT_RESTRICTION: Final = _Default()


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None on the last page)."""

    data: list[T]
    next_cursor: str | None


# --- small checks -----------------------------------------------------------------------


def _when(session: Session, tenant_id: str, at: datetime | None) -> datetime:
    if at is None:
        return clock_for(session, tenant_id).now()
    if at.tzinfo is None:
        raise ValueError("`at` must be timezone-aware")
    return at


def _check_amount(amount_fen: object, what: str = "amount") -> int:
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise InvalidAmount(f"The {what} must be an integer number of fen.")
    if amount_fen <= 0:
        raise InvalidAmount(f"The {what} must be greater than zero.")
    if amount_fen > MAX_FEN:
        raise InvalidAmount(f"The {what} is too large.")
    return amount_fen


def _check_text(value: object, what: str, max_len: int, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value) > max_len:
        raise ValidationFailed(f"{what} must be a string of 1 to {max_len} characters.",
                               code=f"invalid_{what}")
    return value


def _check_reference(journal_ref: str, reference_type: str, reference_id: str,
                     memo: str | None, ref_name: str = "journal_ref") -> None:
    _check_text(journal_ref, ref_name, _REF_MAX)
    _check_text(reference_type, "reference_type", _REFERENCE_TYPE_MAX)
    _check_text(reference_id, "reference_id", _REFERENCE_ID_MAX)
    _check_text(memo, "memo", _MEMO_MAX, optional=True)


def movement_fingerprint(kind: str, legs: Iterable[Leg], reference_type: str,
                         reference_id: str, hold_id: str | None = None) -> str:
    """What a movement is, hashed: kind, hold, legs (account and amount, sorted) and reference.

    The digest of the canonical JSON `{"hold"?, "kind", "legs", "reference"}` (sorted keys, no
    spaces, UTF-8), which a journal_ref's replay compares with. It is written out here rather
    than by `json.dumps`, which costs twice as much, and a bulk capture makes one per entry.
    """
    legs_json = ",".join(f"[{_json_string(account_id)},{int(amount)}]"
                         for account_id, amount in sorted((leg.account_id, leg.amount_fen)
                                                          for leg in legs))
    hold = "" if hold_id is None else f'"hold":{_json_string(hold_id)},'
    raw = (f'{{{hold}"kind":{_json_string(kind)},"legs":[{legs_json}],'
           f'"reference":[{_json_string(reference_type)},{_json_string(reference_id)}]}}')
    return hashlib.sha256(raw.encode()).hexdigest()


def _chunks(values: Sequence[T], size: int = _IN_CHUNK) -> Iterable[Sequence[T]]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


# --- records (what the port returns) ----------------------------------------------------


def _hold_record(hold: Hold, replayed: bool = False) -> HoldRecord:
    return HoldRecord(
        id=hold.id, account_id=hold.account_id, hold_ref=hold.hold_ref,
        amount_fen=hold.amount_fen, captured_fen=hold.captured_fen,
        released_fen=hold.released_fen, status=hold.status, purpose=hold.purpose,
        reference_type=hold.reference_type, reference_id=hold.reference_id, memo=hold.memo,
        created_at=hold.created_at, updated_at=hold.updated_at, replayed=replayed)


def _entry_record(session: Session, entry: Any, *, replayed: bool = False,
                  postings: Sequence[Any] | None = None) -> EntryRecord:
    """The record of an entry (a JournalEntry, or the row just inserted, by attribute)."""
    if postings is None:
        postings = list(session.scalars(
            select(Posting).where(Posting.entry_id == entry.id).order_by(Posting.id)))
    return EntryRecord(
        id=entry.id, journal_ref=entry.journal_ref, kind=entry.kind, purpose=entry.purpose,
        reference_type=entry.reference_type, reference_id=entry.reference_id, memo=entry.memo,
        hold_id=entry.hold_id, created_at=entry.created_at, replayed=replayed,
        postings=tuple(PostingRecord(id=p.id, account_id=p.account_id, amount_fen=p.amount_fen,
                                     balance_after_fen=p.balance_after_fen, seq=p.seq)
                       for p in postings))


# --- reading and locking ----------------------------------------------------------------


def _find_account(session: Session, tenant_id: str, account_id: object) -> Account | None:
    if not isinstance(account_id, str) or len(account_id) > 60:
        return None
    return session.scalars(
        select(Account).where(Account.id == account_id, Account.tenant_id == tenant_id)
        .execution_options(populate_existing=True)).one_or_none()


def get_account(session: Session, tenant_id: str, account_id: str, *,
                include_internal: bool = True) -> Account:
    """An account of the tenant, as stored now; `AccountNotFound` (404) for any other id.

    `include_internal=False` (what partners see through the API) hides the bank's own internal
    accounts: they are not the partner's to read or to pay from.
    """
    account = _find_account(session, tenant_id, account_id)
    if account is None or (not include_internal and account.kind == "internal"):
        raise AccountNotFound(f"No account {account_id!s:.60} in this environment.")
    return account


# Built once: SQLAlchemy then finds its compiled form without building and keying a new
# statement on every call, which cost more than reading the rows.
_LOCK_ACCOUNTS = (select(Account)
                  .where(Account.tenant_id == bindparam("tenant"),
                         Account.id.in_(bindparam("ids", expanding=True)))
                  .order_by(Account.id).with_for_update(key_share=True)
                  .execution_options(populate_existing=True))


def _lock_accounts(session: Session, tenant_id: str, account_ids: Iterable[str]) -> dict[str, Account]:
    """Lock the accounts in sorted id order (the one global order: no deadlocks).

    The lock is `FOR NO KEY UPDATE` (what an UPDATE of the balances needs, no more): a row that
    refers to an account (a transfer, an order, a hold) takes `FOR KEY SHARE` on it through its
    foreign key, and a plain `FOR UPDATE` would wait for every such writer, so two transfers
    from one account that each wrote their own row first would deadlock on each other.

    One statement per `_IN_CHUNK` ids: PostgreSQL locks the rows of `... ORDER BY id FOR
    UPDATE` in that order, so a bulk capture over many payees keeps the order of a transfer.
    """
    ids = sorted(set(account_ids))
    for account_id in ids:
        if not isinstance(account_id, str) or len(account_id) > 60:
            raise AccountNotFound(f"No account {account_id!s:.60} in this environment.")
    locked: dict[str, Account] = {}
    for chunk in _chunks(ids):
        for account in session.scalars(_LOCK_ACCOUNTS, {"tenant": tenant_id, "ids": list(chunk)}):
            locked[account.id] = account
    for account_id in ids:
        if account_id not in locked:
            raise AccountNotFound(f"No account {account_id} in this environment.")
    return locked


def _find_hold(session: Session, tenant_id: str, hold_id: object, *, lock: bool = False) -> Hold:
    if not isinstance(hold_id, str) or len(hold_id) > 60:
        raise HoldNotFound(f"No hold {hold_id!s:.60} in this environment.")
    query = select(Hold).where(Hold.id == hold_id, Hold.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update(key_share=True)  # see _lock_accounts
    hold = session.scalars(query.execution_options(populate_existing=True)).one_or_none()
    if hold is None:
        raise HoldNotFound(f"No hold {hold_id} in this environment.")
    return hold


def _entry_by_ref(session: Session, tenant_id: str, journal_ref: str) -> JournalEntry | None:
    return session.scalars(select(JournalEntry).where(
        JournalEntry.tenant_id == tenant_id, JournalEntry.journal_ref == journal_ref)).one_or_none()


def _hold_by_ref(session: Session, tenant_id: str, hold_ref: str) -> Hold | None:
    return session.scalars(select(Hold).where(Hold.tenant_id == tenant_id, Hold.hold_ref == hold_ref)
                           .execution_options(populate_existing=True)).one_or_none()


# --- the rules of a debit ----------------------------------------------------------------


def _check_debitable(account: Account) -> None:
    if account.status == "frozen":
        raise AccountFrozen(f"Account {account.id} is frozen: it cannot be debited.",
                            extra={"account_id": account.id})
    if account.status == "closed":
        raise AccountClosed(f"Account {account.id} is closed.", extra={"account_id": account.id})


def _check_creditable(account: Account) -> None:
    if account.status == "closed":
        raise AccountClosed(f"Account {account.id} is closed: it cannot receive money.",
                            extra={"account_id": account.id})


def _check_funds(account: Account, ledger_change: int, held_change: int) -> None:
    limit = account.overdraft_limit_fen
    if limit is None:
        return
    available = account.ledger_fen - account.held_fen
    after = (account.ledger_fen + ledger_change) - (account.held_fen + held_change)
    if after < -limit:
        needed = available - after
        raise InsufficientFunds(
            f"Account {account.id} has {format_fen(available)} available"
            + (f" and an overdraft of {format_fen(limit)}" if limit else "")
            + f"; {format_fen(needed)} is needed.",
            extra={"account_id": account.id})


def _check_legs(session: Session, tenant_id: str, accounts: dict[str, Account],
                legs: Sequence[Leg], *, operation: DebitOperation, purpose: str,
                authorization: Any, reference_type: str, reference_id: str,
                held_change: dict[str, int] | None = None, hold_id: str | None = None) -> None:
    """Every refusal, before anything is written: statuses, then guards, then funds."""
    held_change = held_change or {}
    for leg in legs:
        if leg.amount_fen < 0:
            _check_debitable(accounts[leg.account_id])
        else:
            _check_creditable(accounts[leg.account_id])
    credits = [leg.account_id for leg in legs if leg.amount_fen > 0]
    counterparty = credits[0] if len(credits) == 1 else None
    debits = [leg.account_id for leg in legs if leg.amount_fen < 0]
    payer = debits[0] if len(debits) == 1 else None
    for leg in legs:
        account = accounts[leg.account_id]
        # Only a restricted account has a guard to ask (a bulk capture checks every entry);
        # its owner may restrict credits too (escrow takes money only as deposits).
        if account.debit_restriction is None:
            continue
        if leg.amount_fen < 0:
            check_debit(session, account, DebitContext(
                tenant_id=tenant_id, operation=operation, purpose=purpose,
                amount_fen=-leg.amount_fen, authorization=authorization,
                reference_type=reference_type, reference_id=reference_id,
                counterparty_account_id=counterparty, hold_id=hold_id))
        else:
            check_credit(session, account, DebitContext(
                tenant_id=tenant_id, operation=operation, purpose=purpose,
                amount_fen=leg.amount_fen, authorization=authorization,
                reference_type=reference_type, reference_id=reference_id,
                counterparty_account_id=payer, hold_id=hold_id))
    for leg in legs:
        if leg.amount_fen < 0:
            _check_funds(accounts[leg.account_id], leg.amount_fen,
                         held_change.get(leg.account_id, 0))


def _validate_legs(legs: Sequence[Leg]) -> list[Leg]:
    legs = list(legs)
    if len(legs) < 2:
        raise UnbalancedEntry("A journal entry needs at least two postings.")
    seen: set[str] = set()
    for leg in legs:
        if not isinstance(leg, Leg):
            raise LedgerIntegrityError("Journal entry legs must be `Leg`s.")
        amount = leg.amount_fen
        if isinstance(amount, bool) or not isinstance(amount, int) or amount == 0:
            raise InvalidAmount("Every posting is a non-zero integer number of fen.")
        if abs(amount) > MAX_FEN:
            raise InvalidAmount("A posting amount is too large.")
        if leg.account_id in seen:
            raise LedgerIntegrityError("An account appears once in a journal entry.")
        seen.add(leg.account_id)
    if sum(leg.amount_fen for leg in legs) != 0:
        raise UnbalancedEntry("The postings of a journal entry must sum to zero.")
    if sum(leg.amount_fen for leg in legs if leg.amount_fen > 0) > MAX_FEN:
        raise InvalidAmount("The entry's amount is too large.")
    return legs


class _Positions:
    """The running positions of locked accounts while entries are planned: the one place where
    postings are numbered, balances run and entry times are kept in order.

    An entry is never earlier than the last posting of any account it touches, so running
    balances stay in `(created_at, seq)` order. `store()` puts the positions back on the
    accounts (once, however many entries were planned).
    """

    def __init__(self, accounts: dict[str, Account]) -> None:
        self.accounts = accounts
        self.seq = {i: a.posting_seq for i, a in accounts.items()}
        self.ledger = {i: a.ledger_fen for i, a in accounts.items()}
        self.last = {i: a.last_posted_at for i, a in accounts.items()}
        self.touched: set[str] = set()

    def entry(self, tenant_id: str, legs: Sequence[Leg], *, kind: str, purpose: str,
              journal_ref: str, reference_type: str, reference_id: str, memo: str | None,
              hold_id: str | None, fingerprint: str,
              at: datetime) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The rows of one entry whose checks passed: the entry and its postings."""
        if sum(leg.amount_fen for leg in legs) != 0:  # the one path to postings checks it again
            raise UnbalancedEntry("The postings of a journal entry must sum to zero.")
        last = self.last
        for leg in legs:
            previous = last[leg.account_id]
            if previous is not None and previous > at:
                at = previous
        entry_id = new_id("jnl")
        entry = {"id": entry_id, "tenant_id": tenant_id, "journal_ref": journal_ref,
                 "kind": kind, "purpose": purpose, "reference_type": reference_type,
                 "reference_id": reference_id, "hold_id": hold_id, "memo": memo,
                 "fingerprint": fingerprint,
                 "total_fen": sum(leg.amount_fen for leg in legs if leg.amount_fen > 0),
                 "created_at": at}
        postings = []
        for leg in legs:
            account_id = leg.account_id
            seq = self.seq[account_id] + 1
            balance_after = self.ledger[account_id] + leg.amount_fen
            self.seq[account_id] = seq
            self.ledger[account_id] = balance_after
            last[account_id] = at
            self.touched.add(account_id)
            postings.append({"id": new_id("pst"), "tenant_id": tenant_id, "entry_id": entry_id,
                             "account_id": account_id, "seq": seq, "amount_fen": leg.amount_fen,
                             "balance_after_fen": balance_after, "created_at": at})
        return entry, postings

    def store(self) -> None:
        for account_id in self.touched:
            account = self.accounts[account_id]
            account.posting_seq = self.seq[account_id]
            account.ledger_fen = self.ledger[account_id]
            account.last_posted_at = self.last[account_id]
            account.updated_at = self.last[account_id]

    def write(self, session: Session) -> None:
        """`store()`, written on the driver (one statement for every touched account, sent with
        the transaction's next statement: `gateway.bulk.session_update_later`)
        and set on the objects as their stored state."""
        rows = [{"id": account_id, "posting_seq": self.seq[account_id],
                 "ledger_fen": self.ledger[account_id], "last_posted_at": self.last[account_id],
                 "updated_at": self.last[account_id]} for account_id in sorted(self.touched)]
        session_update_later(session, Account.__table__, "id", rows)
        for row in rows:
            account = self.accounts[row["id"]]
            for name in _POSITION_COLUMNS:
                set_committed_value(account, name, row[name])


_POSITION_COLUMNS = ("posting_seq", "ledger_fen", "last_posted_at", "updated_at")


def _ref_conflict(exc: IntegrityError, what: str) -> None:
    if "journal_ref" in str(exc.orig):
        raise JournalRefConflict(
            f"journal_ref {what} was posted concurrently by another movement.") from None


def _write_entry(session: Session, tenant_id: str, accounts: dict[str, Account],
                 legs: Sequence[Leg], *, kind: str, purpose: str, journal_ref: str,
                 reference_type: str, reference_id: str, memo: str | None,
                 hold_id: str | None, fingerprint: str, at: datetime) -> EntryRecord | None:
    """Write an entry whose checks passed; the accounts are locked by the caller.

    None, with nothing written, when the tenant already has an entry under `journal_ref` (the
    caller replays it or refuses): the entry's INSERT skips a known ref, so a movement asked
    for the first time needs no look-up of its ref.

    The rows go in on the driver (`gateway.bulk`): nothing reads them back as objects in the
    request, and SQLAlchemy's statement machinery cost several times the statements. The
    accounts' new positions are written the same way and set on the locked objects as their
    stored state, so the ORM holds what the database holds and flushes nothing for them.
    """
    positions = _Positions(accounts)
    entry_row, posting_rows = positions.entry(
        tenant_id, legs, kind=kind, purpose=purpose, journal_ref=journal_ref,
        reference_type=reference_type, reference_id=reference_id, memo=memo, hold_id=hold_id,
        fingerprint=fingerprint, at=at)
    session.flush()  # a hold changed by the caller is stored before an entry refers to it
    if not session_insert(session, JournalEntry.__table__, [entry_row], skip_conflicts=True):
        return None
    # Nothing waits on these: they go with the transaction's next statement or its COMMIT.
    session_insert_later(session, Posting.__table__, posting_rows)
    positions.write(session)
    return _entry_record(session, SimpleNamespace(**entry_row),
                         postings=[SimpleNamespace(**row) for row in posting_rows])


def _replay_entry(session: Session, tenant_id: str, journal_ref: str,
                  fingerprint: str) -> EntryRecord | None:
    entry = _entry_by_ref(session, tenant_id, journal_ref)
    if entry is None:
        return None
    if entry.fingerprint != fingerprint:
        raise JournalRefConflict(
            f"journal_ref {journal_ref!r} was already used for a different movement.")
    return _entry_record(session, entry, replayed=True)


def _post(session: Session, tenant_id: str, legs: Sequence[Leg], *, kind: str, purpose: str,
          journal_ref: str, reference_type: str, reference_id: str, memo: str | None,
          authorization: Any, at: datetime | None) -> EntryRecord:
    legs = _validate_legs(legs)
    _check_reference(journal_ref, reference_type, reference_id, memo)
    _check_text(purpose, "purpose", 40)
    fingerprint = movement_fingerprint(kind, legs, reference_type, reference_id)
    when = _when(session, tenant_id, at)
    accounts = _lock_accounts(session, tenant_id, (leg.account_id for leg in legs))
    # A known journal_ref replays its entry whatever the accounts are like now. It is looked up
    # only when it matters: when the movement is refused, or when the entry's INSERT finds the
    # ref taken. The accounts are locked, so a concurrent call with the same ref has committed
    # (or not begun) and the look-up sees it either way.
    try:
        _check_legs(session, tenant_id, accounts, legs, operation="transfer", purpose=purpose,
                    authorization=authorization, reference_type=reference_type,
                    reference_id=reference_id)
    except PaymentRefused:
        replay = _replay_entry(session, tenant_id, journal_ref, fingerprint)
        if replay is not None:
            return replay
        raise
    entry = _write_entry(session, tenant_id, accounts, legs, kind=kind, purpose=purpose,
                         journal_ref=journal_ref, reference_type=reference_type,
                         reference_id=reference_id, memo=memo, hold_id=None,
                         fingerprint=fingerprint, at=when)
    if entry is None:
        entry = _replay_entry(session, tenant_id, journal_ref, fingerprint)
        if entry is None:  # taken by a movement whose transaction has not ended: cannot be known
            raise JournalRefConflict(
                f"journal_ref {journal_ref!r} was posted concurrently by another movement.")
    return entry


# --- the port's operations --------------------------------------------------------------


def transfer(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
             amount_fen: int, journal_ref: str, reference_type: str, reference_id: str,
             purpose: str = "transfer", memo: str | None = None, authorization: Any = None,
             at: datetime | None = None) -> EntryRecord:
    """Move `amount_fen` from one account to another as one journal entry.

    Raises a `PaymentRefused` (insufficient funds, frozen, closed, restricted) before writing
    anything; a known `journal_ref` returns the first entry (`replayed=True`) and moves nothing.
    """
    _check_amount(amount_fen)
    if from_account_id == to_account_id:
        raise SameAccount("A transfer needs two different accounts.")
    return _post(session, tenant_id, [Leg(from_account_id, -amount_fen), Leg(to_account_id, amount_fen)],
                 kind="transfer", purpose=purpose, journal_ref=journal_ref,
                 reference_type=reference_type, reference_id=reference_id, memo=memo,
                 authorization=authorization, at=at)


def post_entry(session: Session, tenant_id: str, *, legs: Sequence[Leg], journal_ref: str,
               reference_type: str, reference_id: str, purpose: str, memo: str | None = None,
               authorization: Any = None, at: datetime | None = None) -> EntryRecord:
    """Post a multi-leg entry (a split payment); the legs must sum to zero (`UnbalancedEntry`).

    Each debited account is checked as in `transfer`; replays as in `transfer`.
    """
    return _post(session, tenant_id, legs, kind="entry", purpose=purpose, journal_ref=journal_ref,
                 reference_type=reference_type, reference_id=reference_id, memo=memo,
                 authorization=authorization, at=at)


def place_hold(session: Session, tenant_id: str, *, account_id: str, amount_fen: int,
               hold_ref: str, reference_type: str, reference_id: str, purpose: str = "hold",
               memo: str | None = None, authorization: Any = None,
               at: datetime | None = None) -> HoldRecord:
    """Reserve `amount_fen` of an account's available balance.

    Refused like a debit (frozen, closed, restricted without an accepted authorization,
    `InsufficientFunds` when available + overdraft is short). `hold_ref` is unique per tenant:
    placing again with a known ref returns that hold (`replayed=True`) and reserves nothing.
    """
    _check_amount(amount_fen)
    _check_reference(hold_ref, reference_type, reference_id, memo, ref_name="hold_ref")
    _check_text(purpose, "purpose", 40)

    def replay() -> HoldRecord | None:
        existing = _hold_by_ref(session, tenant_id, hold_ref)
        if existing is None:
            return None
        if existing.account_id != account_id or existing.amount_fen != amount_fen:
            raise HoldRefConflict(f"hold_ref {hold_ref!r} was already used for another hold.")
        return _hold_record(existing, replayed=True)

    found = replay()
    if found is not None:
        return found
    when = _when(session, tenant_id, at)
    account = _lock_accounts(session, tenant_id, [account_id])[account_id]
    found = replay()
    if found is not None:
        return found
    _check_debitable(account)
    check_debit(session, account, DebitContext(
        tenant_id=tenant_id, operation="hold", purpose=purpose, amount_fen=amount_fen,
        authorization=authorization, reference_type=reference_type, reference_id=reference_id))
    _check_funds(account, 0, amount_fen)
    hold = Hold(id=new_id("hold"), tenant_id=tenant_id, account_id=account.id, hold_ref=hold_ref,
                amount_fen=amount_fen, captured_fen=0, released_fen=0, status="active",
                purpose=purpose, reference_type=reference_type, reference_id=reference_id,
                memo=memo, created_at=when, updated_at=when)
    session.add(hold)
    account.held_fen += amount_fen
    account.updated_at = when
    try:
        session.flush()
    except IntegrityError as exc:
        if "hold_ref" in str(exc.orig):
            raise HoldRefConflict(f"hold_ref {hold_ref!r} was used concurrently.") from None
        raise
    return _hold_record(hold)


def _settle_hold_status(hold: Hold) -> None:
    if hold.remaining_fen == 0:
        hold.status = "captured" if hold.captured_fen else "released"


@dataclass(frozen=True)
class _Posted:
    """What a posted capture's journal_ref stands for (its replay must ask for the same)."""

    entry_id: str
    hold_id: str | None
    credited: list[str]
    total_fen: int


def _check_capture_replay(journal_ref: str, posted: _Posted, *, hold_id: str,
                          to_account_id: str, amount_fen: int | None) -> None:
    if (posted.hold_id != hold_id or posted.credited != [to_account_id]
            or (amount_fen is not None and posted.total_fen != amount_fen)):
        raise JournalRefConflict(
            f"journal_ref {journal_ref!r} was already used for a different movement.")


def _capture_fingerprint(hold_id: str, legs: Sequence[Leg], reference_type: str,
                         reference_id: str) -> str:
    return movement_fingerprint("capture", legs, reference_type, reference_id, hold_id)


def _posted_by_ref(session: Session, tenant_id: str, refs: Sequence[str]) -> dict[str, _Posted]:
    """The entries already posted under any of these journal refs (two queries per 500)."""
    found: dict[str, tuple[str, str | None, int]] = {}
    for chunk in _chunks(sorted(set(refs))):
        for ref, entry_id, hold_id, total in session.execute(
                select(JournalEntry.journal_ref, JournalEntry.id, JournalEntry.hold_id,
                       JournalEntry.total_fen)
                .where(JournalEntry.tenant_id == tenant_id, JournalEntry.journal_ref.in_(chunk))):
            found[ref] = (entry_id, hold_id, total)
    credited: dict[str, list[str]] = {}
    for chunk in _chunks([entry_id for entry_id, _, _ in found.values()]):
        for entry_id, account_id in session.execute(
                select(Posting.entry_id, Posting.account_id)
                .where(Posting.entry_id.in_(chunk), Posting.amount_fen > 0).order_by(Posting.id)):
            credited.setdefault(entry_id, []).append(account_id)
    return {ref: _Posted(entry_id, hold_id, credited.get(entry_id, []), total)
            for ref, (entry_id, hold_id, total) in found.items()}


def capture_hold(session: Session, tenant_id: str, hold_id: str, *, to_account_id: str,
                 journal_ref: str, amount_fen: int | None = None, final: bool = False,
                 purpose: str | None = None, memo: str | None = None, authorization: Any = None,
                 reference_type: str | None = None, reference_id: str | None = None,
                 at: datetime | None = None) -> CaptureResult:
    """Pay `amount_fen` (default: all that remains) of an active hold to `to_account_id`.

    One journal entry debits the hold's account and credits the destination; the hold's held
    amount goes down by the same amount, so the available balance does not change. A partial
    capture keeps the rest held until captured or released; `final=True` releases the rest now.
    The debit is checked like any other (a frozen account refuses it; a restricted account's
    guard sees operation "capture"), but not for funds: the hold reserved them. A known
    `journal_ref` returns the first capture and changes nothing.
    """
    if amount_fen is not None:
        _check_amount(amount_fen)
    hold = _find_hold(session, tenant_id, hold_id)
    reference_type = reference_type or hold.reference_type
    reference_id = reference_id or hold.reference_id
    purpose = purpose or hold.purpose
    _check_reference(journal_ref, reference_type, reference_id, memo)

    def replay() -> CaptureResult | None:
        entry = _entry_by_ref(session, tenant_id, journal_ref)
        if entry is None:
            return None
        record = _entry_record(session, entry, replayed=True)
        _check_capture_replay(journal_ref, _Posted(
            entry.id, entry.hold_id, [p.account_id for p in record.postings if p.amount_fen > 0],
            record.total_fen), hold_id=hold_id, to_account_id=to_account_id, amount_fen=amount_fen)
        return CaptureResult(hold=_hold_record(_find_hold(session, tenant_id, hold_id)),
                             entry=record)

    found = replay()
    if found is not None:
        return found
    if hold.account_id == to_account_id:
        raise SameAccount("A hold is captured into another account.")
    when = _when(session, tenant_id, at)
    accounts = _lock_accounts(session, tenant_id, [hold.account_id, to_account_id])
    hold = _find_hold(session, tenant_id, hold_id, lock=True)
    found = replay()
    if found is not None:
        return found
    if hold.status != "active":
        raise HoldNotActive(f"Hold {hold.id} is {hold.status}.")
    amount = amount_fen if amount_fen is not None else hold.remaining_fen
    if amount > hold.remaining_fen:
        raise HoldAmountExceeded(
            f"Hold {hold.id} still holds {format_fen(hold.remaining_fen)}; "
            f"{format_fen(amount)} cannot be captured.")
    rest = hold.remaining_fen - amount if final else 0
    legs = [Leg(hold.account_id, -amount), Leg(to_account_id, amount)]
    _check_legs(session, tenant_id, accounts, legs, operation="capture", purpose=purpose,
                authorization=authorization, reference_type=reference_type,
                reference_id=reference_id, held_change={hold.account_id: -amount - rest},
                hold_id=hold.id)
    source = accounts[hold.account_id]
    source.held_fen -= amount + rest
    hold.captured_fen += amount
    hold.released_fen += rest
    _settle_hold_status(hold)
    hold.updated_at = when
    entry = _write_entry(session, tenant_id, accounts, legs, kind="capture", purpose=purpose,
                         journal_ref=journal_ref, reference_type=reference_type,
                         reference_id=reference_id, memo=memo, hold_id=hold.id,
                         fingerprint=_capture_fingerprint(hold.id, legs, reference_type,
                                                          reference_id), at=when)
    if entry is None:  # the ref was free under the locks a moment ago: another hold's capture
        raise JournalRefConflict(
            f"journal_ref {journal_ref!r} was posted concurrently by another movement.")
    return CaptureResult(hold=_hold_record(hold), entry=entry)


def capture_hold_many(session: Session, tenant_id: str, hold_id: str,
                      captures: Sequence[Capture], *, purpose: str | None = None,
                      at: datetime | None = None) -> list[CaptureOutcome]:
    """Pay many parts of one hold, each to its own account as its own journal entry, at once.

    The outcome is that of calling `capture_hold` for each capture in order (with its
    journal_ref, amount, destination, reference, memo and authorization; never `final`), but
    the accounts are locked once, the entries and postings are written in bulk, and each
    account's balances and the hold change once. One outcome per capture, in order:

    - a known journal_ref replays its capture (`replayed=True`, nothing moves), or raises
      `JournalRefConflict` if it was used for a different movement; so a call repeated after a
      crash or a rollback pays nothing twice;
    - a refused capture (a `PaymentRefused`: frozen or closed account, a debit guard's refusal)
      is reported with the problem's code in `refusal` and writes nothing;
    - anything else raises before anything is written: a bad capture (amount, text, the hold's
      own account), an unknown account, a hold that is not active or holds too little
      (`HoldNotActive`, `HoldAmountExceeded`).
    """
    captures = list(captures)
    if not captures:
        return []
    hold = _find_hold(session, tenant_id, hold_id)
    purpose = purpose or hold.purpose
    _check_text(purpose, "purpose", 40)
    source_id, reference_type, reference_id = hold.account_id, hold.reference_type, hold.reference_id
    for capture in captures:
        _check_amount(capture.amount_fen)
        _check_reference(capture.journal_ref, capture.reference_type or reference_type,
                         capture.reference_id or reference_id, capture.memo)
        if capture.to_account_id == source_id:
            raise SameAccount("A hold is captured into another account.")
    when = _when(session, tenant_id, at)
    accounts = _lock_accounts(session, tenant_id,
                              {hold.account_id, *(c.to_account_id for c in captures)})
    hold = _find_hold(session, tenant_id, hold_id, lock=True)
    # A journal_ref is unique in the tenant, so a ref posted before (a replay, or a conflict)
    # makes the insert fail, and captures made before may have used the hold up: only then are
    # the refs looked up. Replays are rare, and looking every ref up first would cost an index
    # probe per capture on every call (and a scan while a new tenant's statistics are stale).
    try:
        with session.begin_nested():
            return _capture_many(session, tenant_id, hold, accounts, captures, purpose=purpose,
                                 when=when, posted={})
    except IntegrityError as exc:
        if "journal_ref" not in str(exc.orig):
            raise
    except (HoldNotActive, HoldAmountExceeded):
        pass  # raised again below unless known refs replay
    # The savepoint's rollback expired the hold and the accounts; they are still locked.
    posted = _posted_by_ref(session, tenant_id, [c.journal_ref for c in captures])
    try:
        return _capture_many(session, tenant_id, hold, accounts, captures, purpose=purpose,
                             when=when, posted=posted)
    except IntegrityError as exc:
        _ref_conflict(exc, f"of a capture of hold {hold.id}")
        raise


def _capture_many(session: Session, tenant_id: str, hold: Hold, accounts: dict[str, Account],
                  captures: Sequence[Capture], *, purpose: str, when: datetime,
                  posted: dict[str, _Posted]) -> list[CaptureOutcome]:
    """`capture_hold_many` under its locks, with the refs known to be posted already.

    First every capture is checked (a debit guard may read the database), then the entries
    are made and streamed to the database, which inserts them while the next ones are made.
    """
    source_id, hold_id, status = hold.account_id, hold.id, hold.status
    hold_reference = (hold.reference_type, hold.reference_id)
    remaining = hold.remaining_fen
    outcomes: list[CaptureOutcome | None] = []
    accepted: list[tuple[int, Capture, list[Leg], str, str]] = []
    posting_here: dict[str, int] = {}  # ref -> the capture of this call that posts it
    replays_here: list[tuple[int, int]] = []  # (capture, the earlier capture it replays)
    for capture in captures:
        ref, amount, to_account_id = capture.journal_ref, capture.amount_fen, capture.to_account_id
        known = posted.get(ref)
        if known is not None:
            _check_capture_replay(ref, known, hold_id=hold_id, to_account_id=to_account_id,
                                  amount_fen=amount)
            if ref in posting_here:
                replays_here.append((len(outcomes), posting_here[ref]))
                outcomes.append(None)
            else:
                outcomes.append(CaptureOutcome(ref, known.entry_id, replayed=True))
            continue
        if status != "active" or remaining == 0:
            raise HoldNotActive(f"Hold {hold_id} is "
                                f"{status if status != 'active' else 'captured'}.")
        if amount > remaining:
            raise HoldAmountExceeded(
                f"Hold {hold_id} still holds {format_fen(remaining)}; "
                f"{format_fen(amount)} cannot be captured.")
        reference_type = capture.reference_type or hold_reference[0]
        reference_id = capture.reference_id or hold_reference[1]
        legs = [Leg(source_id, -amount), Leg(to_account_id, amount)]
        try:
            _check_legs(session, tenant_id, accounts, legs, operation="capture",
                        purpose=purpose, authorization=capture.authorization,
                        reference_type=reference_type, reference_id=reference_id,
                        held_change={source_id: -amount}, hold_id=hold_id)
        except PaymentRefused as exc:
            outcomes.append(CaptureOutcome(ref, None, refusal=exc.code))
            continue
        remaining -= amount
        # A ref given twice in one call replays its first capture (whose entry is made below).
        posted[ref] = _Posted("", hold_id, [to_account_id], amount)
        posting_here[ref] = len(outcomes)
        accepted.append((len(outcomes), capture, legs, reference_type, reference_id))
        outcomes.append(None)
    if accepted:
        positions = _Positions(accounts)
        postings: list[dict[str, Any]] = []
        captured = 0
        with row_writer(session, JournalEntry.__table__) as write_entry:
            for index, capture, legs, reference_type, reference_id in accepted:
                entry, rows = positions.entry(
                    tenant_id, legs, kind="capture", purpose=purpose,
                    journal_ref=capture.journal_ref, reference_type=reference_type,
                    reference_id=reference_id, memo=capture.memo, hold_id=hold_id,
                    fingerprint=_capture_fingerprint(hold_id, legs, reference_type, reference_id),
                    at=when)
                write_entry(entry)
                postings.extend(rows)
                captured += capture.amount_fen
                outcomes[index] = CaptureOutcome(capture.journal_ref, entry["id"])
        positions.store()
        accounts[source_id].held_fen -= captured
        hold.captured_fen += captured
        _settle_hold_status(hold)
        hold.updated_at = when
        insert_rows(session, Posting.__table__, postings)  # flushes the balances and the hold
    for index, first in replays_here:
        made = outcomes[first]
        assert made is not None
        outcomes[index] = CaptureOutcome(made.journal_ref, made.entry_id, replayed=True)
    return [o for o in outcomes if o is not None]


def release_hold(session: Session, tenant_id: str, hold_id: str, *, amount_fen: int | None = None,
                 at: datetime | None = None) -> HoldRecord:
    """Give back `amount_fen` (default: all that remains) of a hold to the available balance.

    Releasing everything is idempotent: on a hold that is no longer active it returns the
    hold (`replayed=True`). Releasing a given amount needs an active hold holding that much.
    """
    if amount_fen is not None:
        _check_amount(amount_fen)
    hold = _find_hold(session, tenant_id, hold_id)
    when = _when(session, tenant_id, at)
    account = _lock_accounts(session, tenant_id, [hold.account_id])[hold.account_id]
    hold = _find_hold(session, tenant_id, hold_id, lock=True)
    if hold.status != "active":
        if amount_fen is None:
            return _hold_record(hold, replayed=True)
        raise HoldNotActive(f"Hold {hold.id} is {hold.status}.")
    amount = amount_fen if amount_fen is not None else hold.remaining_fen
    if amount > hold.remaining_fen:
        raise HoldAmountExceeded(
            f"Hold {hold.id} still holds {format_fen(hold.remaining_fen)}; "
            f"{format_fen(amount)} cannot be released.")
    hold.released_fen += amount
    _settle_hold_status(hold)
    hold.updated_at = when
    account.held_fen -= amount
    account.updated_at = when
    session.flush()
    return _hold_record(hold)


def get_hold(session: Session, tenant_id: str, hold_id: str) -> HoldRecord:
    """A hold as it is now; `HoldNotFound` for an id of another tenant."""
    return _hold_record(_find_hold(session, tenant_id, hold_id))


def balance(session: Session, tenant_id: str, account_id: str, *,
            at: datetime | None = None) -> Balance:
    """An account's balances now (ledger, held, available = ledger - held, overdraft limit)."""
    account = get_account(session, tenant_id, account_id)
    return Balance(account_id=account.id, ledger_fen=account.ledger_fen, held_fen=account.held_fen,
                   overdraft_limit_fen=account.overdraft_limit_fen,
                   as_of=_when(session, tenant_id, at))


def _counterparties(session: Session, account_id: str,
                    own: Sequence[tuple[str, int]]) -> dict[str, str | None]:
    """For each (entry, own amount): the one account on the other side of the entry (None when
    the other side is split among several, as for the payer of a split payment)."""
    sign = {entry_id: amount > 0 for entry_id, amount in own}
    others: dict[str, list[str]] = {}
    for chunk in _chunks(list(sign)):
        rows = session.execute(select(Posting.entry_id, Posting.account_id, Posting.amount_fen).where(
            Posting.entry_id.in_(chunk), Posting.account_id != account_id))
        for entry_id, other, amount in rows:
            if (amount > 0) != sign[entry_id]:
                others.setdefault(entry_id, []).append(other)
    return {e: (others[e][0] if len(others.get(e, [])) == 1 else None) for e in sign}


def _lines(session: Session, account_id: str,
           rows: Sequence[Any]) -> list[StatementLine]:
    counterparties = _counterparties(session, account_id, [(p.entry_id, p.amount_fen) for p, _ in rows])
    return [StatementLine(posting_id=p.id, entry_id=e.id, amount_fen=p.amount_fen,
                          balance_after_fen=p.balance_after_fen, memo=e.memo, purpose=e.purpose,
                          reference_type=e.reference_type, reference_id=e.reference_id,
                          counterparty_account_id=counterparties.get(e.id),
                          created_at=p.created_at)
            for p, e in rows]


def _check_period(start: datetime | None, end: datetime | None) -> None:
    for value in (start, end):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidPeriod("Period bounds are timezone-aware instants.")
    if start is not None and end is not None and start >= end:
        raise InvalidPeriod("The period's start must be before its end.")


def _balance_before(session: Session, account_id: str, instant: datetime) -> int:
    value = session.scalar(
        select(Posting.balance_after_fen).where(Posting.account_id == account_id,
                                                Posting.created_at < instant)
        .order_by(Posting.seq.desc()).limit(1))
    return int(value or 0)


def statement(session: Session, tenant_id: str, account_id: str, start: datetime,
              end: datetime) -> Statement:
    """The account's postings with `start <= created_at < end`, oldest first, with the ledger
    balance at `start` (opening) and at `end` (closing)."""
    if start is None or end is None:
        raise InvalidPeriod("A statement needs a start and an end.")
    _check_period(start, end)
    account = get_account(session, tenant_id, account_id)
    opening = _balance_before(session, account.id, start)
    rows = session.execute(
        select(Posting, JournalEntry).join(JournalEntry, JournalEntry.id == Posting.entry_id)
        .where(Posting.account_id == account.id, Posting.created_at >= start,
               Posting.created_at < end)
        .order_by(Posting.seq)).all()
    lines = _lines(session, account.id, rows)
    closing = lines[-1].balance_after_fen if lines else opening
    return Statement(account_id=account.id, start=start, end=end, opening_fen=opening,
                     closing_fen=closing, lines=tuple(lines))


# --- the default core-banking adapter ----------------------------------------------------


class LedgerCoreBanking:
    """`CoreBanking` over this package's double-entry ledger (the default)."""

    def transfer(self, session: Session, tenant_id: str, *, from_account_id: str,
                 to_account_id: str, amount_fen: int, journal_ref: str, reference_type: str,
                 reference_id: str, purpose: str = "transfer", memo: str | None = None,
                 authorization: Any = None, at: datetime | None = None) -> EntryRecord:
        return transfer(session, tenant_id, from_account_id=from_account_id,
                        to_account_id=to_account_id, amount_fen=amount_fen,
                        journal_ref=journal_ref, reference_type=reference_type,
                        reference_id=reference_id, purpose=purpose, memo=memo,
                        authorization=authorization, at=at)

    def post_entry(self, session: Session, tenant_id: str, *, legs: Sequence[Leg],
                   journal_ref: str, reference_type: str, reference_id: str, purpose: str,
                   memo: str | None = None, authorization: Any = None,
                   at: datetime | None = None) -> EntryRecord:
        return post_entry(session, tenant_id, legs=legs, journal_ref=journal_ref,
                          reference_type=reference_type, reference_id=reference_id,
                          purpose=purpose, memo=memo, authorization=authorization, at=at)

    def place_hold(self, session: Session, tenant_id: str, *, account_id: str, amount_fen: int,
                   hold_ref: str, reference_type: str, reference_id: str, purpose: str = "hold",
                   memo: str | None = None, authorization: Any = None,
                   at: datetime | None = None) -> HoldRecord:
        return place_hold(session, tenant_id, account_id=account_id, amount_fen=amount_fen,
                          hold_ref=hold_ref, reference_type=reference_type,
                          reference_id=reference_id, purpose=purpose, memo=memo,
                          authorization=authorization, at=at)

    def capture_hold(self, session: Session, tenant_id: str, hold_id: str, *,
                     to_account_id: str, journal_ref: str, amount_fen: int | None = None,
                     final: bool = False, purpose: str | None = None, memo: str | None = None,
                     authorization: Any = None, reference_type: str | None = None,
                     reference_id: str | None = None, at: datetime | None = None) -> CaptureResult:
        return capture_hold(session, tenant_id, hold_id, to_account_id=to_account_id,
                            journal_ref=journal_ref, amount_fen=amount_fen, final=final,
                            purpose=purpose, memo=memo, authorization=authorization,
                            reference_type=reference_type, reference_id=reference_id, at=at)

    def capture_hold_many(self, session: Session, tenant_id: str, hold_id: str,
                          captures: Sequence[Capture], *, purpose: str | None = None,
                          at: datetime | None = None) -> list[CaptureOutcome]:
        return capture_hold_many(session, tenant_id, hold_id, captures, purpose=purpose, at=at)

    def release_hold(self, session: Session, tenant_id: str, hold_id: str, *,
                     amount_fen: int | None = None, at: datetime | None = None) -> HoldRecord:
        return release_hold(session, tenant_id, hold_id, amount_fen=amount_fen, at=at)

    def get_hold(self, session: Session, tenant_id: str, hold_id: str) -> HoldRecord:
        return get_hold(session, tenant_id, hold_id)

    def balance(self, session: Session, tenant_id: str, account_id: str) -> Balance:
        return balance(session, tenant_id, account_id)

    def statement(self, session: Session, tenant_id: str, account_id: str, start: datetime,
                  end: datetime) -> Statement:
        return statement(session, tenant_id, account_id, start, end)


_core_banking: CoreBanking = LedgerCoreBanking()


def get_core_banking() -> CoreBanking:
    """The process's core-banking adapter (the ledger unless a bank plugged in its own)."""
    return _core_banking


def set_core_banking(adapter: CoreBanking | None) -> None:
    """Plug in another core-banking adapter; None restores the ledger."""
    global _core_banking
    if adapter is not None and not isinstance(adapter, CoreBanking):
        raise TypeError("a core-banking adapter implements products.accounts.port.CoreBanking")
    _core_banking = adapter if adapter is not None else LedgerCoreBanking()


# --- accounts ----------------------------------------------------------------------------

_SYSTEM_RANDOM = random.SystemRandom()
_PREFIXES: Final = {"person": "622202", "enterprise": "100201", "bank": "900001"}


def generate_account_number(owner_type: str = "enterprise", *, suffix: str = "",
                            rng: random.Random | None = None, length: int = 19) -> str:
    """A realistic 19-digit account number that passes the Luhn check.

    Without a `suffix` the number never ends in a sandbox magic suffix; with one (the sandbox
    seeds its closed "…0002" and frozen "…0003" accounts so) it ends in exactly that suffix.
    """
    rng = rng or _SYSTEM_RANDOM
    prefix = _PREFIXES.get(owner_type, _PREFIXES["enterprise"])
    if any(c not in "0123456789" for c in suffix) or len(prefix) + len(suffix) >= length:
        raise ValueError("a suffix is a few digits")
    while True:
        if not suffix:
            payload = prefix + "".join(rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
            number = payload + luhn_check_digit(payload)
            if magic.account_number_status(number) is None:
                return number
            continue
        middle = [rng.choice("0123456789") for _ in range(length - len(prefix) - len(suffix))]
        # Changing one digit walks its Luhn contribution through all ten residues, so one of
        # the ten choices makes the check digit equal the suffix's last digit.
        for digit in "0123456789":
            middle[-1] = digit
            payload = prefix + "".join(middle) + suffix[:-1]
            if luhn_check_digit(payload) == suffix[-1]:
                return payload + suffix[-1]


def _normalize_name(value: str) -> str:
    # NFKC folds full-width brackets and letters (（有限公司） vs (有限公司)) as banks' name checks do.
    return " ".join(unicodedata.normalize("NFKC", value).split())


def create_account(session: Session, tenant_id: str, *, kind: str, owner_type: str | None = None,
                   owner_name: str | None = None, owner_uscc: str | None = None,
                   owner_id_number: str | None = None, account_number: str | None = None,
                   parent_account_id: str | None = None, label: str | None = None,
                   overdraft_limit_fen: int | None = 0,
                   debit_restriction: str | None | _Default = DEFAULT_RESTRICTION,
                   internal_purpose: str | None = None, at: datetime | None = None) -> Account:
    """Open an account (for seeding, products and operations; partners do not open accounts).

    - `kind`: settlement, escrow, wage, virtual (a sub-account: `parent_account_id` required,
      owner taken from the parent) or internal (the bank's own; owner_type "bank").
    - owner: an enterprise (`owner_uscc`, check-digit validated) or a person
      (`owner_id_number`, validated, stored encrypted with a digest and a mask).
    - `account_number`: given (12-19 digits, Luhn-checked) or generated; stored encrypted with
      digest, last 4 and mask. In a sandbox tenant a number ending in 0002 opens a closed
      account and 0003 a frozen one (`products.accounts.magic`).
    - `overdraft_limit_fen`: 0 by default; None (unlimited) for internal accounts only.
    - `debit_restriction`: by default "escrow" for escrow and "wage_account" for wage accounts.
    """
    when = _when(session, tenant_id, at)
    if kind not in ACCOUNT_KINDS:
        raise InvalidAccount(f"kind must be one of {', '.join(ACCOUNT_KINDS)}.")
    parent: Account | None = None
    if kind == "virtual":
        if parent_account_id is None:
            raise InvalidAccount("A virtual account needs a parent account.")
        parent = _find_account(session, tenant_id, parent_account_id)
        if parent is None:
            raise InvalidAccount(f"No parent account {parent_account_id!s:.60}.",
                                 code="parent_account_not_found")
        if parent.kind in ("virtual", "internal") or parent.status == "closed":
            raise InvalidAccount("A virtual account's parent is an open, real customer account.")
        if owner_type or owner_name or owner_uscc or owner_id_number:
            raise InvalidAccount("A virtual account belongs to its parent's owner.")
        owner_type, owner_name = parent.owner_type, parent.owner_name
        owner_uscc, owner_id_number = parent.owner_uscc, parent.owner_id_number
    elif parent_account_id is not None:
        raise InvalidAccount("Only virtual accounts have a parent account.")
    if kind == "internal":
        owner_type = owner_type or "bank"
        owner_name = owner_name or BANK_OWNER_NAME
        if owner_type != "bank":
            raise InvalidAccount("Internal accounts belong to the bank.")
    elif owner_type not in ("enterprise", "person"):
        raise InvalidAccount("owner_type must be enterprise or person.")
    if internal_purpose is not None and kind != "internal":
        raise InvalidAccount("Only internal accounts have an internal purpose.")
    if not isinstance(owner_name, str) or not owner_name.strip() or len(owner_name.strip()) > 200:
        raise InvalidAccount("owner_name must be 1 to 200 characters.")
    owner_name = _normalize_name(owner_name)
    try:
        if owner_type == "enterprise":
            if owner_uscc is None or owner_id_number is not None:
                raise InvalidAccount("An enterprise owner has a unified social credit code.")
            owner_uscc = validate_uscc(owner_uscc)
        elif owner_type == "person":
            if owner_id_number is None or owner_uscc is not None:
                raise InvalidAccount("A person owner has a resident ID number.")
            owner_id_number = validate_resident_id(owner_id_number,
                                                   today=clock_for(session, tenant_id).today())
        elif owner_uscc is not None or owner_id_number is not None:
            raise InvalidAccount("The bank's accounts carry no owner identifiers.")
        number = (validate_bank_card(account_number) if account_number is not None
                  else generate_account_number(owner_type))
    except IdentifierError as exc:
        raise InvalidAccount(str(exc)) from None
    if overdraft_limit_fen is None:
        if kind != "internal":
            raise InvalidAccount("Only internal accounts have an unlimited overdraft.")
    elif isinstance(overdraft_limit_fen, bool) or not isinstance(overdraft_limit_fen, int) \
            or not 0 <= overdraft_limit_fen <= MAX_FEN:
        raise InvalidAccount("overdraft_limit_fen is a non-negative integer number of fen.")
    restriction = (DEFAULT_RESTRICTIONS.get(kind) if isinstance(debit_restriction, _Default)
                   else debit_restriction)
    if restriction is not None and not RESTRICTION_NAME.fullmatch(restriction):
        raise InvalidAccount("debit_restriction is a lower-case name such as 'escrow'.")
    _check_text(label, "label", 100, optional=True)
    digest = pii_digest(number)
    taken = session.scalar(select(Account.id).where(Account.tenant_id == tenant_id,
                                                    Account.account_number_digest == digest))
    if taken is not None:
        raise InvalidAccount("An account with this number exists.", code="account_number_taken",
                             status=409)
    status = "active"
    if is_sandbox(session, tenant_id):
        status = magic.account_number_status(number) or "active"
    account = Account(
        id=new_id("acct"), tenant_id=tenant_id, kind=kind, status=status, currency="CNY",
        label=label, owner_type=owner_type, owner_name=owner_name,
        owner_display_name=mask_name(owner_name) if owner_type == "person" else owner_name,
        owner_uscc=owner_uscc, owner_id_number=owner_id_number,
        owner_id_number_digest=pii_digest(owner_id_number) if owner_id_number else None,
        owner_id_number_masked=mask_id_number(owner_id_number) if owner_id_number else None,
        account_number=number, account_number_digest=digest, account_number_last4=number[-4:],
        account_number_masked=mask_account_number(number),
        parent_id=parent.id if parent is not None else None,
        overdraft_limit_fen=overdraft_limit_fen, debit_restriction=restriction,
        internal_purpose=internal_purpose, ledger_fen=0, held_fen=0, posting_seq=0,
        last_posted_at=None, created_at=when, updated_at=when)
    session.add(account)
    session.flush()
    return account


def find_account_by_number(session: Session, tenant_id: str, account_number: str) -> Account | None:
    """The tenant's account with this number (looked up by its keyed digest), if any."""
    if not isinstance(account_number, str):
        return None
    digest = pii_digest(account_number.strip())
    return session.scalars(select(Account).where(
        Account.tenant_id == tenant_id, Account.account_number_digest == digest)).one_or_none()


def internal_account(session: Session, tenant_id: str, purpose: str = CLEARING) -> Account:
    """The bank's internal account for `purpose` in a tenant, opened on first use.

    Internal accounts have an unlimited overdraft: the clearing account goes negative by what
    came into the platform from outside, so the sum of all balances stays zero.
    """
    if not isinstance(purpose, str) or not re.fullmatch(r"[a-z][a-z0-9_:.-]{0,59}", purpose):
        raise InvalidAccount("An internal purpose is a short lower-case name.")
    account = session.scalars(select(Account).where(
        Account.tenant_id == tenant_id, Account.internal_purpose == purpose)).one_or_none()
    if account is None:
        account = create_account(session, tenant_id, kind="internal", internal_purpose=purpose,
                                 label=purpose, overdraft_limit_fen=None)
    return account


def deposit(session: Session, tenant_id: str, account_id: str, amount_fen: int, *,
            journal_ref: str, memo: str | None = None, at: datetime | None = None) -> EntryRecord:
    """Money arriving from outside the platform (the sandbox's top-up, an inbound payment):
    a transfer from the tenant's clearing account. Replays like any entry."""
    clearing = internal_account(session, tenant_id, CLEARING)
    return transfer(session, tenant_id, from_account_id=clearing.id, to_account_id=account_id,
                    amount_fen=amount_fen, journal_ref=journal_ref, reference_type="deposit",
                    reference_id=journal_ref[:_REFERENCE_ID_MAX], purpose="deposit",
                    memo=memo, at=at)


def _check_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise ValidationFailed(f"limit must be between 1 and {MAX_LIMIT}.", code="invalid_limit")
    return limit


def list_accounts(session: Session, tenant_id: str, *, cursor: str | None = None, limit: int = 50,
                  kind: str | None = None, status: str | None = None,
                  parent_account_id: str | None = None,
                  include_internal: bool = False) -> Page[Account]:
    """The tenant's accounts, newest first, `limit` (1-100) at a time; the bank's internal
    accounts only with `include_internal`."""
    _check_limit(limit)
    query = select(Account).where(Account.tenant_id == tenant_id)
    if not include_internal:
        query = query.where(Account.kind != "internal")
    if kind is not None:
        query = query.where(Account.kind == kind)
    if status is not None:
        query = query.where(Account.status == status)
    if parent_account_id is not None:
        query = query.where(Account.parent_id == parent_account_id)
    return Page(*pagination.page(session, query, Account.id, limit=limit, cursor=cursor))


def transactions(session: Session, tenant_id: str, account_id: str, *,
                 start: datetime | None = None, end: datetime | None = None,
                 cursor: str | None = None, limit: int = 50) -> Page[StatementLine]:
    """An account's postings, newest first, optionally with `start <= created_at < end`.

    Pages follow the order in which the balance changed (`(created_at, seq)`), so a page
    boundary never skips or repeats a posting, whatever was posted meanwhile.
    """
    _check_limit(limit)
    _check_period(start, end)
    account = get_account(session, tenant_id, account_id)
    query = (select(Posting, JournalEntry).join(JournalEntry, JournalEntry.id == Posting.entry_id)
             .where(Posting.account_id == account.id))
    if start is not None:
        query = query.where(Posting.created_at >= start)
    if end is not None:
        query = query.where(Posting.created_at < end)
    scope = pagination.scope_of(Posting.seq)
    if cursor:
        query = query.where(Posting.seq < pagination.decode_int_cursor(scope, cursor))
    rows = session.execute(query.order_by(Posting.seq.desc()).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = pagination.encode_cursor(scope, str(rows[-1][0].seq)) if more and rows else None
    return Page(_lines(session, account.id, rows), next_cursor)


def _change_status(session: Session, tenant_id: str, account_id: str, new: str, *, actor: str,
                   reason: str | None, at: datetime | None) -> Account:
    when = _when(session, tenant_id, at)
    account = _lock_accounts(session, tenant_id, [account_id])[account_id]
    if account.status == new:
        return account
    if not can_transition(ACCOUNT_TRANSITIONS, account.status, new):
        raise InvalidAccountTransition(f"A {account.status} account cannot become {new}.")
    if new == "closed":
        if account.ledger_fen != 0 or account.held_fen != 0:
            raise AccountNotEmpty("Only an account with no money and no holds can be closed.")
        open_children = session.scalar(select(func.count()).select_from(Account).where(
            Account.parent_id == account.id, Account.status != "closed"))
        if open_children:
            raise AccountNotEmpty("Close the account's virtual sub-accounts first.")
    account.status = new
    account.updated_at = when
    session.flush()
    event = {"frozen": "account.frozen", "active": "account.unfrozen", "closed": "account.closed"}[new]
    data = AccountOut.from_model(account).model_dump(mode="json")
    if reason:
        data["reason"] = reason
    publish(session, tenant_id=tenant_id, type=event, resource_type="account",
            resource_id=account.id, data=data, actor=actor, at=when)
    return account


def freeze_account(session: Session, tenant_id: str, account_id: str, *, actor: str,
                   reason: str | None = None, at: datetime | None = None) -> Account:
    """Freeze an active account: debits and holds are refused, credits still arrive."""
    return _change_status(session, tenant_id, account_id, "frozen", actor=actor, reason=reason, at=at)


def unfreeze_account(session: Session, tenant_id: str, account_id: str, *, actor: str,
                     reason: str | None = None, at: datetime | None = None) -> Account:
    """Make a frozen account active again."""
    return _change_status(session, tenant_id, account_id, "active", actor=actor, reason=reason, at=at)


def close_account(session: Session, tenant_id: str, account_id: str, *, actor: str,
                  reason: str | None = None, at: datetime | None = None) -> Account:
    """Close an active account holding no money, no holds and no open sub-accounts (final)."""
    return _change_status(session, tenant_id, account_id, "closed", actor=actor, reason=reason, at=at)


def set_overdraft_limit(session: Session, tenant_id: str, account_id: str,
                        overdraft_limit_fen: int, *, at: datetime | None = None) -> Account:
    """Change an account's overdraft limit; never below what the account already uses."""
    if isinstance(overdraft_limit_fen, bool) or not isinstance(overdraft_limit_fen, int) \
            or not 0 <= overdraft_limit_fen <= MAX_FEN:
        raise InvalidAmount("The overdraft limit is a non-negative integer number of fen.")
    when = _when(session, tenant_id, at)
    account = _lock_accounts(session, tenant_id, [account_id])[account_id]
    if account.available_fen < -overdraft_limit_fen:
        raise OverdraftInUse(
            f"The account uses {format_fen(-account.available_fen)} of overdraft.")
    account.overdraft_limit_fen = overdraft_limit_fen
    account.updated_at = when
    session.flush()
    return account


# --- transfers (the API's resource) -------------------------------------------------------


def _names_match(given: str, account: Account) -> bool:
    return _normalize_name(given) == _normalize_name(account.owner_name)


def _transfer_event(session: Session, transfer: Transfer, actor: str, at: datetime) -> None:
    publish(session, tenant_id=transfer.tenant_id, type=f"transfer.{transfer.status}",
            resource_type="transfer", resource_id=transfer.id,
            data=TransferOut.from_model(transfer).model_dump(mode="json"), actor=actor, at=at)


def _mark_failed(transfer: Transfer, code: str, message: str, at: datetime) -> None:
    if not can_transition(TRANSFER_TRANSITIONS, transfer.status, "failed"):
        raise LedgerIntegrityError(f"A {transfer.status} transfer cannot fail.")
    transfer.status = "failed"
    transfer.failure_code = code
    transfer.failure_message = message[:300]
    transfer.resolved_at = at


def _fail(session: Session, transfer: Transfer, code: str, message: str, *, actor: str,
          at: datetime) -> Transfer:
    """Fail a stored transfer (locked by the caller)."""
    _mark_failed(transfer, code, message, at)
    session.flush()
    _transfer_event(session, transfer, actor, at)
    return transfer


def _store_new(session: Session, transfer: Transfer, actor: str, at: datetime) -> Transfer:
    """Store a transfer made in this call, its outcome known: one INSERT on the driver, after
    any hold placed for it (which the row refers to)."""
    session_store(session, [transfer], later=True)
    _transfer_event(session, transfer, actor, at)
    return transfer


def _check_partner_accounts(session: Session, tenant_id: str, payer: object, payee: object) -> None:
    """`AccountNotFound` unless both are accounts of the tenant that a partner may use (the
    bank's internal accounts count as unknown), in one read of their kinds."""
    for account_id in (payer, payee):
        if not isinstance(account_id, str) or len(account_id) > 60:
            raise AccountNotFound(f"No account {account_id!s:.60} in this environment.")
    kinds = dict(session_rows(
        session, "SELECT id, kind FROM accounts "
                 "WHERE tenant_id = :tenant AND id IN (:payer, :payee)",
        {"tenant": tenant_id, "payer": payer, "payee": payee}))
    for account_id in (payer, payee):
        if kinds.get(account_id) in (None, "internal"):
            raise AccountNotFound(f"No account {account_id} in this environment.")


def create_transfer(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
                    amount_fen: int, actor: str, memo: str | None = None,
                    to_account_name: str | None = None, purpose: str = "transfer",
                    authorization: Any = None, at: datetime | None = None) -> Transfer:
    """Transfer money between two of the tenant's accounts, and record the outcome.

    The outcome is a `Transfer` in one of three states, never an exception:

    - `completed`: one journal entry moved the money (`journal_entry_id`); `transfer.completed`.
    - `failed`: the bank refused (a `PaymentRefused`: insufficient_funds, account_frozen,
      account_closed, debit_restricted or a guard's code, name_mismatch when
      `to_account_name` does not match the payee, or a sandbox magic amount); nothing moved,
      `failure_code` says why; `transfer.failed`. The API answers 201 with the failed
      transfer, as a bank returns a rejected payment order: the request was valid and its
      outcome is recorded (and a retry with a new Idempotency-Key is a new attempt).
    - `pending` (sandbox magic amount 4040.05 only): the amount is held on the source and the
      transfer fails with `processing_failed` once `magic.PENDING_FAILS_AFTER` has passed on
      the tenant's clock (`resolve_due_transfers`, or on the next read); `transfer.pending`.

    Invalid requests raise and record nothing: an unknown account (404 account_not_found; the
    bank's internal accounts count as unknown: a partner never pays from or to them), the same
    account twice (422 same_account), a bad amount (422 invalid_amount).
    """
    _check_amount(amount_fen)
    _check_text(memo, "memo", _MEMO_MAX, optional=True)
    if from_account_id == to_account_id:
        raise SameAccount("A transfer needs two different accounts.")
    _check_partner_accounts(session, tenant_id, from_account_id, to_account_id)
    when = _when(session, tenant_id, at)
    # Stored once its outcome is known (nothing refers to it before): one INSERT, no UPDATE.
    record = Transfer(id=new_id("trf"), tenant_id=tenant_id, from_account_id=from_account_id,
                      to_account_id=to_account_id, amount_fen=amount_fen, memo=memo,
                      status="pending", created_by=actor[:80], created_at=when)
    sandbox = is_sandbox(session, tenant_id)
    forced = magic.magic_amount(amount_fen) if sandbox else None
    if forced is not None and forced.outcome == "failed":
        _mark_failed(record, forced.failure_code,
                     f"Sandbox magic amount {forced.amount}: {forced.description}", when)
        return _store_new(session, record, actor, when)
    core = get_core_banking()
    try:
        if to_account_name is not None:
            payee = get_account(session, tenant_id, to_account_id)
            if sandbox and magic.forces_name_mismatch(payee.owner_name):
                raise NameMismatch("The payee's name does not match the account (sandbox magic name).")
            if not _names_match(to_account_name, payee):
                raise NameMismatch("The payee's name does not match the account.")
        if forced is not None:  # pending, then fails
            hold = core.place_hold(session, tenant_id, account_id=from_account_id,
                                   amount_fen=amount_fen, hold_ref=f"transfer:{record.id}",
                                   reference_type="transfer", reference_id=record.id,
                                   purpose=purpose, memo=memo, authorization=authorization,
                                   at=when)
            record.hold_id = hold.id
            record.resolves_at = when + magic.PENDING_FAILS_AFTER
            return _store_new(session, record, actor, when)
        entry = core.transfer(session, tenant_id, from_account_id=from_account_id,
                              to_account_id=to_account_id, amount_fen=amount_fen,
                              journal_ref=f"transfer:{record.id}", reference_type="transfer",
                              reference_id=record.id, purpose=purpose, memo=memo,
                              authorization=authorization, at=when)
    except PaymentRefused as exc:
        _mark_failed(record, exc.code, exc.detail or exc.title, when)
        return _store_new(session, record, actor, when)
    record.status = "completed"
    record.journal_entry_id = entry.id
    record.resolved_at = entry.created_at
    return _store_new(session, record, actor, entry.created_at)


def _resolve(session: Session, record: Transfer, when: datetime) -> Transfer:
    """Fail a due sandbox pending transfer (locked by the caller) and release its hold."""
    if record.status != "pending" or record.resolves_at is None or record.resolves_at > when:
        return record
    if record.hold_id is not None:
        get_core_banking().release_hold(session, record.tenant_id, record.hold_id, at=when)
    forced = magic.MAGIC_AMOUNTS.get(record.amount_fen)
    return _fail(session, record, forced.failure_code if forced else "processing_failed",
                 "The payment failed at the bank after it was pending (sandbox magic amount).",
                 actor="system", at=when)


def _locked_transfer(session: Session, tenant_id: str, transfer_id: str) -> Transfer | None:
    return session.scalars(select(Transfer).where(Transfer.id == transfer_id,
                                                  Transfer.tenant_id == tenant_id)
                           .with_for_update().execution_options(populate_existing=True)).one_or_none()


def get_transfer(session: Session, tenant_id: str, transfer_id: str) -> Transfer:
    """A transfer of the tenant; a due sandbox pending transfer is resolved first."""
    if not isinstance(transfer_id, str) or len(transfer_id) > 60:
        raise TransferNotFound("No such transfer.")
    record = session.scalars(select(Transfer).where(
        Transfer.id == transfer_id, Transfer.tenant_id == tenant_id)
        .execution_options(populate_existing=True)).one_or_none()
    if record is None:
        raise TransferNotFound(f"No transfer {transfer_id} in this environment.")
    if record.status == "pending":
        when = _when(session, tenant_id, None)
        if record.resolves_at is not None and record.resolves_at <= when:
            locked = _locked_transfer(session, tenant_id, transfer_id)
            if locked is not None:
                record = _resolve(session, locked, when)
    return record


def resolve_due_transfers(session: Session, tenant_id: str, *, at: datetime | None = None,
                          limit: int = 100) -> list[Transfer]:
    """Fail the tenant's pending sandbox transfers whose time has come (a job, or the sandbox
    clock's advance, calls this); returns those resolved."""
    when = _when(session, tenant_id, at)
    ids = list(session.scalars(select(Transfer.id).where(
        Transfer.tenant_id == tenant_id, Transfer.status == "pending",
        Transfer.resolves_at <= when).order_by(Transfer.id).limit(limit)))
    resolved = []
    for transfer_id in ids:
        locked = _locked_transfer(session, tenant_id, transfer_id)
        if locked is not None and locked.status == "pending":
            resolved.append(_resolve(session, locked, when))
    return resolved


def list_transfers(session: Session, tenant_id: str, *, cursor: str | None = None,
                   limit: int = 50, account_id: str | None = None) -> Page[Transfer]:
    """The tenant's transfers, newest first (optionally those from or to one account)."""
    _check_limit(limit)
    query = select(Transfer).where(Transfer.tenant_id == tenant_id)
    if account_id is not None:
        query = query.where((Transfer.from_account_id == account_id)
                            | (Transfer.to_account_id == account_id))
    return Page(*pagination.page(session, query, Transfer.id, limit=limit, cursor=cursor))


# --- proof ---------------------------------------------------------------------------------


def audit(session: Session, tenant_id: str) -> list[str]:
    """Check the tenant's ledger against its invariants; returns what is wrong (empty: sound).

    - every journal entry's postings sum to zero (so all postings sum to zero);
    - each account's ledger_fen is the sum of its postings, its postings are numbered 1..n,
      each balance_after_fen is the running sum, and created_at never goes back;
    - each account's held_fen is the sum of its active holds' remainders, and every hold's
      status agrees with its remainder;
    - available (ledger - held) is never below -overdraft_limit.
    """
    problems: list[str] = []
    unbalanced = session.execute(
        select(Posting.entry_id, func.sum(Posting.amount_fen)).where(Posting.tenant_id == tenant_id)
        .group_by(Posting.entry_id).having(func.sum(Posting.amount_fen) != 0)).all()
    problems += [f"entry {e} sums to {s}" for e, s in unbalanced]
    total = session.scalar(select(func.coalesce(func.sum(Posting.amount_fen), 0))
                           .where(Posting.tenant_id == tenant_id))
    if total != 0:
        problems.append(f"all postings sum to {total}")
    held = dict(session.execute(
        select(Hold.account_id, func.sum(Hold.amount_fen - Hold.captured_fen - Hold.released_fen))
        .where(Hold.tenant_id == tenant_id, Hold.status == "active").group_by(Hold.account_id)).all())
    bad_holds = session.scalars(select(Hold.id).where(
        Hold.tenant_id == tenant_id,
        ((Hold.status == "active") & (Hold.amount_fen - Hold.captured_fen - Hold.released_fen <= 0))
        | ((Hold.status != "active") & (Hold.amount_fen - Hold.captured_fen - Hold.released_fen != 0)))).all()
    problems += [f"hold {h} has a status that disagrees with its remainder" for h in bad_holds]
    accounts = session.scalars(select(Account).where(Account.tenant_id == tenant_id)
                               .execution_options(populate_existing=True)).all()
    for account in accounts:
        running = 0
        last_at: datetime | None = None
        expected_seq = 0
        for seq, amount, after, created in session.execute(
                select(Posting.seq, Posting.amount_fen, Posting.balance_after_fen, Posting.created_at)
                .where(Posting.account_id == account.id).order_by(Posting.seq)):
            expected_seq += 1
            running += amount
            if seq != expected_seq:
                problems.append(f"account {account.id} posting seq {seq}, expected {expected_seq}")
            if after != running:
                problems.append(f"account {account.id} posting {seq} balance_after {after} != {running}")
            if last_at is not None and created < last_at:
                problems.append(f"account {account.id} posting {seq} goes back in time")
            last_at = created
        if running != account.ledger_fen:
            problems.append(f"account {account.id} ledger {account.ledger_fen} != postings {running}")
        if expected_seq != account.posting_seq:
            problems.append(f"account {account.id} posting_seq {account.posting_seq} != {expected_seq}")
        if int(held.get(account.id) or 0) != account.held_fen:
            problems.append(f"account {account.id} held {account.held_fen} != holds {held.get(account.id)}")
        limit = account.overdraft_limit_fen
        if limit is not None and account.available_fen < -limit:
            problems.append(f"account {account.id} available {account.available_fen} below -{limit}")
    return problems
