"""Payroll's thin adapter over the core-banking port (`products.accounts`): the one place
payroll moves money.

| movement | how | journal / hold reference |
| --- | --- | --- |
| confirm a batch | hold the total on the payer account | `payroll:<batch id>` (hold_ref) |
| pay an item | capture the item's amount out of the hold, to the employee's account at this bank or to the bank's clearing account (another bank's card); a chunk of items in one bulk capture | `payroll:<item id>` |
| an item fails | release its amount from the hold | - |
| batch settled / cancelled | release what the hold still holds | - |
| an item is returned (退票) | clearing account -> payer account | `payroll-return:<item id>` |
| fund a wage account | developer's account -> wage account | `wage-funding:<funding id>` |

Every debit presents a `PayrollDebit` authorization, which is what the wage accounts' debit
guard (`products.payroll.wage.wage_account_guard`) inspects: a wage account refuses every debit
but the hold of a batch of its own project and the capture of that batch's items, each to the
registered worker's registered card.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.bulk import one_of
from gateway.errors import Problem, ValidationFailed
from products.accounts import service as accounts
from products.accounts.errors import AccountNotFound, InsufficientFunds, PaymentRefused
from products.accounts.models import Account
from products.accounts.port import Balance, BulkCapture, Capture
from products.payroll.errors import PayerAccountNotFound, PayerAccountUnavailable
from products.payroll.receiving import Payee

RESTRICTION = "wage_account"  # accounts of kind "wage" carry it by default
PAYER_KINDS = frozenset({"settlement", "virtual", "wage"})
PURPOSE = "payroll"


@dataclass(frozen=True)
class PayrollDebit:
    """The authorization payroll presents with each debit: which batch (and item) it pays."""

    batch_id: str
    item_id: str | None = None


@dataclass(frozen=True)
class Payment:
    item_id: str
    journal_ref: str
    amount_fen: int
    payee_account_id: str | None  # None: another bank's card, through the clearing account
    memo: str


@dataclass(frozen=True)
class Outcome:
    entry_id: str | None
    failure: str | None = None


def core():  # type: ignore[no-untyped-def]
    return accounts.get_core_banking()


def payer_account(session: Session, tenant_id: str, account_id: str, *,
                  field: str = "body.header.payer_account_id") -> Account:
    """The account a batch pays from: an open settlement, virtual or wage account of the tenant.
    `field` is where the request named it, for the problem's `errors`."""
    try:
        account = accounts.get_account(session, tenant_id, account_id)
    except AccountNotFound:
        raise PayerAccountNotFound(
            f"No account {account_id} in this environment.",
            errors=[{"field": field, "message": "unknown account"}]) from None
    if account.kind not in PAYER_KINDS:
        raise ValidationFailed(
            f"Account {account_id} is a {account.kind} account; payroll pays from a settlement, "
            "virtual or wage account.", code="payer_account_not_allowed",
            errors=[{"field": field, "message": f"a {account.kind} account"}])
    if account.status == "closed":
        raise PayerAccountUnavailable(f"Account {account_id} is closed.")
    return account


def payees(session: Session, tenant_id: str, digests: Sequence[str]) -> dict[str, Payee]:
    """This bank's accounts among the given card-number digests (one query per 500)."""
    found: dict[str, Payee] = {}
    unique = sorted(set(digests))
    for start in range(0, len(unique), 500):
        rows = session.execute(select(Account.account_number_digest, Account.id, Account.status,
                                      Account.owner_name, Account.kind)
                               .where(Account.tenant_id == tenant_id,
                                      one_of(session, Account.account_number_digest,
                                             unique[start:start + 500])))
        for digest, account_id, status, owner_name, kind in rows:
            if kind != "internal":
                found[digest] = Payee(account_id=account_id, status=status, owner_name=owner_name)
    return found


def clearing_account(session: Session, tenant_id: str) -> str:
    return accounts.internal_account(session, tenant_id, accounts.CLEARING).id


def hold(session: Session, tenant_id: str, *, account_id: str, amount_fen: int, batch_id: str,
         memo: str) -> str:
    """Hold a batch total; a refusal (short, frozen, restricted) becomes a problem, nothing held."""
    try:
        record = core().place_hold(
            session, tenant_id, account_id=account_id, amount_fen=amount_fen,
            hold_ref=f"payroll:{batch_id}", reference_type="payroll_batch", reference_id=batch_id,
            purpose=PURPOSE, memo=memo[:200], authorization=PayrollDebit(batch_id))
    except InsufficientFunds as exc:
        raise Problem(f"The batch total cannot be held: {exc.detail}", status=409,
                      code="insufficient_funds", title="Insufficient funds",
                      extra={"batch_id": batch_id}) from None
    except PaymentRefused as exc:
        raise Problem(f"The batch total cannot be held on account {account_id}: {exc.detail}",
                      status=409, code=exc.code, title=exc.title,
                      extra={"batch_id": batch_id}) from None
    return record.id


def release(session: Session, tenant_id: str, hold_id: str, amount_fen: int) -> None:
    if amount_fen > 0:
        core().release_hold(session, tenant_id, hold_id, amount_fen=amount_fen)


def pay_items(session: Session, tenant_id: str, *, hold_id: str, batch_id: str,
              payments: Sequence[Payment]) -> dict[str, Outcome]:
    """Capture each item out of the batch's hold under its own journal reference.

    A refusal of one item (the ledger writes nothing for it) fails that item only. A journal
    reference already posted replays the first capture: the item was paid, once. With the
    ledger (or any adapter offering `BulkCapture`) the chunk is one bulk capture; otherwise
    one `capture_hold` per item, with the same outcome.
    """
    if not payments:
        return {}
    clearing = clearing_account(session, tenant_id) if any(
        p.payee_account_id is None for p in payments) else ""
    bank = core()
    if isinstance(bank, BulkCapture):
        outcomes = bank.capture_hold_many(session, tenant_id, hold_id, [
            Capture(journal_ref=p.journal_ref, to_account_id=p.payee_account_id or clearing,
                    amount_fen=p.amount_fen, reference_type="payroll_item",
                    reference_id=p.item_id, memo=p.memo[:200] or None,
                    authorization=PayrollDebit(batch_id, p.item_id))
            for p in payments], purpose=PURPOSE)
        return {p.item_id: Outcome(o.entry_id, o.refusal)
                for p, o in zip(payments, outcomes, strict=True)}
    out: dict[str, Outcome] = {}
    for p in payments:
        try:
            result = bank.capture_hold(
                session, tenant_id, hold_id, to_account_id=p.payee_account_id or clearing,
                journal_ref=p.journal_ref, amount_fen=p.amount_fen, purpose=PURPOSE,
                memo=p.memo[:200] or None, authorization=PayrollDebit(batch_id, p.item_id),
                reference_type="payroll_item", reference_id=p.item_id)
        except PaymentRefused as exc:
            out[p.item_id] = Outcome(None, exc.code)
            continue
        out[p.item_id] = Outcome(result.entry.id)
    return out


def refund(session: Session, tenant_id: str, *, payer_account_id: str, amount_fen: int,
           journal_ref: str, item_id: str, memo: str) -> str:
    """A returned item's money comes back from the clearing account to the payer."""
    entry = core().transfer(
        session, tenant_id, from_account_id=clearing_account(session, tenant_id),
        to_account_id=payer_account_id, amount_fen=amount_fen, journal_ref=journal_ref,
        reference_type="payroll_item", reference_id=item_id, purpose="payroll_return",
        memo=memo[:200])
    return entry.id


def fund(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
         amount_fen: int, journal_ref: str, funding_id: str, memo: str) -> str:
    """The developer's transfer into a wage account; a refusal is a problem, nothing moves."""
    try:
        accounts.get_account(session, tenant_id, from_account_id)
    except AccountNotFound:
        raise ValidationFailed(f"No account {from_account_id} in this environment.",
                               code="funding_account_not_found",
                               errors=[{"field": "body.from_account_id",
                                        "message": "unknown account"}]) from None
    try:
        entry = core().transfer(
            session, tenant_id, from_account_id=from_account_id, to_account_id=to_account_id,
            amount_fen=amount_fen, journal_ref=journal_ref, reference_type="wage_funding",
            reference_id=funding_id, purpose="wage_funding", memo=memo[:200])
    except PaymentRefused as exc:
        raise Problem(f"The funding transfer was refused: {exc.detail}", status=409,
                      code=exc.code, title=exc.title) from None
    return entry.id


def balance(session: Session, tenant_id: str, account_id: str) -> Balance:
    return core().balance(session, tenant_id, account_id)


def open_wage_account(session: Session, tenant_id: str, *, project_code: str, owner_name: str,
                      owner_uscc: str) -> str:
    """Open a project's special wage account, owned by the general contractor and restricted."""
    account = accounts.create_account(
        session, tenant_id, kind="wage", owner_type="enterprise", owner_name=owner_name,
        owner_uscc=owner_uscc, label=f"{project_code} 农民工工资专户"[:100])
    return account.id
