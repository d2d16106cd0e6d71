"""The one place collection talks to the ledger (products.accounts).

Money moves only through the core-banking port (`get_core_banking()`); accounts are opened and
looked up through `products.accounts.service`. Collection's own accounts are restricted by
`collection_funds`: the ledger refuses to debit them unless the caller presents
`AUTHORITY`, which only this package's services pass, so neither the accounts API nor another
product can take money out of a clearing account, a wallet pool, a subsidy pool or a virtual
account behind collection's back.

Accounts collection opens per tenant:

| account | kind | owner | why |
| --- | --- | --- | --- |
| collection clearing (`collection_clearing`, `_1` ... `_7`) | internal, no overdraft | bank | collected money waits here for settlement; eight shards, one row lock each |
| wallet pool (`collection_wallets`) | internal, no overdraft | bank | the canteen personal wallets' money |
| settlement advances (`collection_advances`) | internal, unlimited overdraft | bank | the bank pays refunds of already-settled orders from it; its negative balance is what the payees owe the bank, repaid from their next settlements |
| subsidy pool, one per employer | escrow | the employer | granted, unspent subsidies |
| virtual accounts | virtual, under the platform's account | the platform | payers transfer in; we match |

Money from outside the bank (an incoming transfer to a virtual account) comes in through
`products.accounts.service.deposit` (the bank's own clearing account); a refund of such money
goes back out the same way.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from products.accounts import service as accounts
from products.accounts.errors import AccountNotFound, DebitNotAuthorized, InsufficientFunds
from products.accounts.guards import register_debit_guard
from products.accounts.models import Account
from products.accounts.port import DebitContext, EntryRecord, Leg
from products.collection.errors import AccountNotUsable

RESTRICTION = "collection_funds"
CLEARING_PURPOSE = "collection_clearing"
# Orders credit one shard each (by their id), so a burst of orders spreads its row locks.
CLEARING_SHARDS = 8
WALLETS_PURPOSE = "collection_wallets"
ADVANCES_PURPOSE = "collection_advances"


class CollectionAuthority:
    """The authorization collection's services present to debit collection's accounts."""

    def __repr__(self) -> str:
        return "CollectionAuthority()"


AUTHORITY = CollectionAuthority()


def _guard(session: Session, account: Account, context: DebitContext) -> None:
    if not isinstance(context.authorization, CollectionAuthority):
        raise DebitNotAuthorized(
            f"Account {account.id} holds collection funds: only the collection service moves "
            "money out of it.", extra={"restriction": RESTRICTION})


def install_guard() -> None:
    """Register the `collection_funds` debit guard (idempotent)."""
    register_debit_guard(RESTRICTION, _guard)


install_guard()


def core() -> Any:
    return accounts.get_core_banking()


# --- opening and checking accounts ------------------------------------------------------

def _find_internal(session: Session, tenant_id: str, purpose: str) -> str | None:
    return session.scalar(select(Account.id).where(Account.tenant_id == tenant_id,
                                                   Account.internal_purpose == purpose))


def _internal(session: Session, tenant_id: str, purpose: str, label: str, at: datetime, *,
              overdraft_limit_fen: int | None = 0) -> str:
    existing = _find_internal(session, tenant_id, purpose)
    if existing is not None:
        return existing
    account = accounts.create_account(session, tenant_id, kind="internal",
                                      internal_purpose=purpose, label=label,
                                      overdraft_limit_fen=overdraft_limit_fen,
                                      debit_restriction=RESTRICTION, at=at)
    return account.id


def open_clearing(session: Session, tenant_id: str, at: datetime,
                  shards: int = CLEARING_SHARDS) -> list[str]:
    """The tenant's collection clearing account: `shards` internal accounts that together
    are the clearing account (opened on first use; the first is its primary id)."""
    return [_internal(session, tenant_id,
                      CLEARING_PURPOSE if i == 0 else f"{CLEARING_PURPOSE}_{i}",
                      "Collection clearing" if i == 0 else f"Collection clearing {i}", at)
            for i in range(shards)]


def open_wallet_pool(session: Session, tenant_id: str, at: datetime) -> str:
    """The pool holding the canteen diners' personal wallets (opened on first use)."""
    return _internal(session, tenant_id, WALLETS_PURPOSE, "Canteen personal wallets", at)


def find_advances(session: Session, tenant_id: str) -> str | None:
    """The tenant's settlement-advances account, if the bank ever advanced a refund."""
    return _find_internal(session, tenant_id, ADVANCES_PURPOSE)


def open_advances(session: Session, tenant_id: str, at: datetime) -> str:
    """The bank's settlement-advances account of the tenant (opened on first use).

    Its overdraft is unlimited, as the bank's internal accounts' are: it goes negative by the
    refunds the bank advanced and the payees have not repaid yet (a receivable), and only
    collection's services, which debit it for nothing else, may debit it.
    """
    existing = find_advances(session, tenant_id)
    if existing is not None:
        return existing
    try:
        with session.begin_nested():
            return _internal(session, tenant_id, ADVANCES_PURPOSE, "Collection settlement advances",
                             at, overdraft_limit_fen=None)
    except IntegrityError:
        # A concurrent refund opened it first (one internal account per purpose and tenant).
        found = find_advances(session, tenant_id)
        if found is None:  # pragma: no cover - the winner committed, so the row exists
            raise
        return found


def open_subsidy_pool(session: Session, tenant_id: str, *, employer_name: str, employer_uscc: str,
                      employer_id: str, at: datetime) -> str:
    """An employer's subsidy pool: an escrow account in the employer's name."""
    account = accounts.create_account(
        session, tenant_id, kind="escrow", owner_type="enterprise", owner_name=employer_name,
        owner_uscc=employer_uscc, label=f"Canteen subsidy pool {employer_id}"[:100],
        debit_restriction=RESTRICTION, at=at)
    return account.id


def open_virtual(session: Session, tenant_id: str, *, parent_account_id: str, label: str,
                 at: datetime) -> tuple[str, str]:
    """A virtual sub-account under the platform's account: (ledger id, account number)."""
    account = accounts.create_account(session, tenant_id, kind="virtual",
                                      parent_account_id=parent_account_id, label=label[:100],
                                      debit_restriction=RESTRICTION, at=at)
    return account.id, account.account_number


def usable_account(session: Session, tenant_id: str, account_id: str, *, field: str,
                   kinds: Sequence[str] = ("settlement",)) -> Account:
    """A customer account of the tenant that can receive or pay money, or a 422 problem."""
    try:
        account = accounts.get_account(session, tenant_id, account_id)
    except AccountNotFound:
        raise AccountNotUsable(f"No account {account_id} in this environment.",
                               errors=[{"field": f"body.{field}",
                                        "message": "no such account"}]) from None
    if account.kind not in kinds:
        raise AccountNotUsable(f"Account {account_id} is a {account.kind} account; "
                               f"{field} must be a {' or '.join(kinds)} account.",
                               errors=[{"field": f"body.{field}", "message": "wrong kind"}])
    if account.status == "closed":
        raise AccountNotUsable(f"Account {account_id} is closed.",
                               errors=[{"field": f"body.{field}", "message": "closed"}])
    return account


# --- moving money -----------------------------------------------------------------------

def move(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
         amount_fen: int, journal_ref: str, reference_type: str, reference_id: str,
         purpose: str, at: datetime, memo: str | None = None) -> EntryRecord:
    """One transfer through the port; `PaymentRefused` propagates before anything is written."""
    return core().transfer(session, tenant_id, from_account_id=from_account_id,
                           to_account_id=to_account_id, amount_fen=amount_fen,
                           journal_ref=journal_ref, reference_type=reference_type,
                           reference_id=reference_id, purpose=purpose, memo=memo,
                           authorization=AUTHORITY, at=at)


def post(session: Session, tenant_id: str, *, legs: dict[str, int], journal_ref: str,
         reference_type: str, reference_id: str, purpose: str, at: datetime,
         memo: str | None = None) -> EntryRecord:
    """A multi-leg entry; legs of zero are left out, and two legs become a plain transfer."""
    parts = [Leg(account_id, amount) for account_id, amount in legs.items() if amount]
    return core().post_entry(session, tenant_id, legs=parts, journal_ref=journal_ref,
                             reference_type=reference_type, reference_id=reference_id,
                             purpose=purpose, memo=memo, authorization=AUTHORITY, at=at)


def receive_external(session: Session, tenant_id: str, *, account_id: str, amount_fen: int,
                     journal_ref: str, memo: str, at: datetime) -> EntryRecord:
    """Money from another bank arriving at one of our accounts."""
    return accounts.deposit(session, tenant_id, account_id, amount_fen, journal_ref=journal_ref,
                            memo=memo[:200], at=at)


def bank_clearing(session: Session, tenant_id: str) -> str:
    """The bank's own clearing account (money leaving the bank goes out through it)."""
    return accounts.internal_account(session, tenant_id, accounts.CLEARING).id


def balance_now(session: Session, tenant_id: str, account_id: str) -> int:
    return core().balance(session, tenant_id, account_id).ledger_fen


def balance_before(session: Session, tenant_id: str, account_id: str, at: datetime) -> int:
    """The account's ledger balance just before instant `at`."""
    return core().statement(session, tenant_id, account_id, at,
                            at + timedelta(microseconds=1)).opening_fen


def shard_for(shards: Sequence[str], key: str) -> str:
    """The clearing shard an order (or any key) uses: stable, spread evenly."""
    return shards[zlib.crc32(key.encode()) % len(shards)]


def shard_balances(session: Session, tenant_id: str, shards: Sequence[str]) -> dict[str, int]:
    return {shard: balance_now(session, tenant_id, shard) for shard in shards}


def draw(balances: dict[str, int], shards: Sequence[str], amount_fen: int, *,
         prefer: str | None = None) -> dict[str, int] | None:
    """Debit legs taking `amount_fen` out of the clearing shards (the preferred shard first,
    then the fullest), or None when all of them together hold less."""
    order = sorted(shards, key=lambda shard: (shard != prefer, -balances[shard], shard))
    legs: dict[str, int] = {}
    left = amount_fen
    for shard in order:
        take = min(left, max(0, balances[shard]))
        if take:
            legs[shard] = -take
            left -= take
        if not left:
            return legs
    return None


def pay_from_clearing(session: Session, tenant_id: str, shards: Sequence[str], *,
                      credits: dict[str, int], journal_ref: str, reference_type: str,
                      reference_id: str, purpose: str, at: datetime, memo: str | None = None,
                      prefer: str | None = None, balances: dict[str, int] | None = None
                      ) -> EntryRecord | None:
    """Pay `credits` (account -> fen) out of the clearing shards in one entry; None when the
    shards hold too little.

    `balances` (shard -> fen), when given, saves reading the shards again and is kept up to
    date (a settlement run pays many payees). A concurrent payout may empty a shard between
    the read and the lock: the ledger then refuses before writing anything, and the legs are
    planned again from fresh balances.
    """
    amount = sum(credits.values())
    known = balances if balances is not None else shard_balances(session, tenant_id, shards)
    for attempt in range(5):
        if attempt:
            known.update(shard_balances(session, tenant_id, shards))
        legs = draw(known, shards, amount, prefer=prefer)
        if legs is None:
            return None
        debits = dict(legs)
        for account_id, fen in credits.items():
            legs[account_id] = legs.get(account_id, 0) + fen
        try:
            entry = post(session, tenant_id, legs=legs, journal_ref=journal_ref,
                         reference_type=reference_type, reference_id=reference_id,
                         purpose=purpose, at=at, memo=memo)
        except InsufficientFunds:
            continue
        for shard, fen in debits.items():
            known[shard] += fen
        return entry
    return None
