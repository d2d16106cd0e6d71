"""Chain credit's thin adapter over the core-banking port (`products.accounts`).

Money moves only here: financing proceeds (the bank's financing account -> the holder),
maturity payments (the core enterprise -> each leaf's holder, or the bank for what it holds),
factoring / order-financing disbursements and repayments. Every movement carries a journal
reference derived from the business object (`chain-credit:<what>:<id>`), so a retried or
re-run step pays exactly once.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from products.accounts import service as accounts
from products.accounts.errors import AccountNotFound, PaymentRefused
from products.accounts.port import Leg

# The bank's own account funding discounting and receiving what the bank is paid at maturity.
FINANCING_PURPOSE = "chain_credit_financing"
SETTLEMENT_KINDS = frozenset({"settlement", "virtual"})

# Refusals the rules handle themselves (a short or frozen payer: overdue, not an error).
InsufficientFunds = PaymentRefused


def settlement_account_problem(session: Session, tenant_id: str, account_id: str,
                               owner_uscc: str) -> str | None:
    """Why an account cannot be a member's settlement account (None when it can): it must be an
    active settlement (or virtual) account of the tenant owned by that enterprise."""
    try:
        account = accounts.get_account(session, tenant_id, account_id)
    except AccountNotFound:
        return f"No account {account_id} in this tenant."
    if account.kind not in SETTLEMENT_KINDS:
        return f"Account {account_id} is a {account.kind} account, not a settlement account."
    if account.status != "active":
        return f"Account {account_id} is {account.status}."
    if account.owner_uscc != owner_uscc:
        return f"Account {account_id} does not belong to the enterprise with code {owner_uscc}."
    return None


def bank_financing_account(session: Session, tenant_id: str) -> str:
    """The bank's internal financing account in the tenant, opened on first need."""
    return accounts.internal_account(session, tenant_id, FINANCING_PURPOSE).id


def available_fen(session: Session, tenant_id: str, account_id: str) -> int:
    """What the account can pay now (ledger - held, overdraft aside)."""
    return accounts.get_core_banking().balance(session, tenant_id, account_id).available_fen


def pay(session: Session, tenant_id: str, *, from_account: str, to_account: str, amount_fen: int,
        journal_ref: str, reference_type: str, reference_id: str, purpose: str, memo: str) -> str:
    """Move money as one journal entry; returns the entry id. A known journal_ref replays."""
    entry = accounts.get_core_banking().transfer(
        session, tenant_id, from_account_id=from_account, to_account_id=to_account,
        amount_fen=amount_fen, journal_ref=journal_ref, reference_type=reference_type,
        reference_id=reference_id, purpose=purpose, memo=memo[:200])
    return entry.id


def pay_many(session: Session, tenant_id: str, *, from_account: str, credits: dict[str, int],
             journal_ref: str, reference_type: str, reference_id: str, purpose: str, memo: str) -> str:
    """One payer, several payees, one journal entry (all paid or none); returns the entry id."""
    payees = {account: fen for account, fen in credits.items() if fen}
    if list(payees) == [from_account]:
        return ""  # the payer would pay itself: nothing moves
    legs = [Leg(from_account, -sum(fen for account, fen in payees.items() if account != from_account))]
    legs += [Leg(account, fen) for account, fen in sorted(payees.items()) if account != from_account]
    entry = accounts.get_core_banking().post_entry(
        session, tenant_id, legs=legs, journal_ref=journal_ref, reference_type=reference_type,
        reference_id=reference_id, purpose=purpose, memo=memo[:200])
    return entry.id
