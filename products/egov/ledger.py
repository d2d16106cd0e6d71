"""E-government's adapter over the core-banking port (products.accounts): the only module of
this package that touches money.

- Payment orders are paid into the portal's collection account, either from an account of the
  tenant's ledger or, for a payer who banks elsewhere (or scans a QR code), from the bank's
  clearing account (money entering the platform).
- Escrow money sits in accounts restricted by `ESCROW_RESTRICTION`: the scheme's escrow account
  and one virtual sub-account per student, building, bidder or case. The ledger refuses every
  debit of them unless our guard (`escrow.guard`) accepts the release instruction presented,
  and every credit but a deposit made by `deposit_into` (`escrow.credit_guard`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from gateway.tenancy import is_sandbox
from products.accounts import magic
from products.accounts import service as accounts
from products.accounts.errors import AccountNotFound, InvalidAccount, PaymentRefused
from products.accounts.models import Account
from products.accounts.port import EntryRecord
from products.egov.errors import PayeeAccountNotFound

ESCROW_RESTRICTION = "egov_escrow"
REFERENCE_ORDER = "egov_payment_order"
REFERENCE_DEPOSIT = "egov_escrow_deposit"
REFERENCE_RELEASE = "egov_release_instruction"

__all__ = ["AccountNotFound", "InvalidAccount", "PaymentRefused", "ESCROW_RESTRICTION"]


@dataclass(frozen=True)
class AccountView:
    id: str
    kind: str
    status: str
    owner_name: str
    masked_number: str
    restricted: bool


def _view(account: Account) -> AccountView:
    return AccountView(id=account.id, kind=account.kind, status=account.status,
                       owner_name=account.owner_display_name,
                       masked_number=account.account_number_masked,
                       restricted=account.debit_restriction is not None)


def get_account(session: Session, tenant_id: str, account_id: str) -> AccountView:
    """An account of the tenant; `AccountNotFound` (404) otherwise."""
    return _view(accounts.get_account(session, tenant_id, account_id))


def check_payee(session: Session, tenant_id: str, account_id: str, what: str) -> AccountView:
    """An account money may be paid into: the tenant's, open, not an escrow account."""
    try:
        account = accounts.get_account(session, tenant_id, account_id)
    except AccountNotFound:
        raise PayeeAccountNotFound(f"{what}: no account {account_id} in this environment.",
                                   code="account_not_found") from None
    if account.status == "closed":
        raise PayeeAccountNotFound(f"{what}: account {account_id} is closed.", code="account_closed")
    if account.kind in ("internal",) or account.debit_restriction == ESCROW_RESTRICTION:
        raise PayeeAccountNotFound(f"{what}: account {account_id} cannot be used here.",
                                   code="account_not_usable")
    return _view(account)


def find_by_number(session: Session, tenant_id: str, account_number: str) -> AccountView | None:
    account = accounts.find_account_by_number(session, tenant_id, account_number)
    return _view(account) if account is not None else None


def sandbox_refusal(session: Session, tenant_id: str, amount_fen: int) -> str | None:
    """The failure code a sandbox magic amount forces (products.accounts.magic), if any.

    The pending-then-failed amount fails at once here: a checkout answers the payer now."""
    if not is_sandbox(session, tenant_id):
        return None
    forced = magic.magic_amount(amount_fen)
    return forced.failure_code if forced is not None else None


def magic_account_status(account_number: str) -> str | None:
    return magic.account_number_status(account_number)


def pay_order(session: Session, tenant_id: str, *, order_id: str, payee_account_id: str,
              amount_fen: int, from_account_id: str | None, at: datetime) -> EntryRecord:
    """Pay an order into the collection account, exactly once (journal ref per order).

    `from_account_id` None: the payer banks outside the platform; the money enters through the
    bank's clearing account. Raises `PaymentRefused` with nothing moved.
    """
    source = from_account_id or accounts.internal_account(session, tenant_id, accounts.CLEARING).id
    return accounts.get_core_banking().transfer(
        session, tenant_id, from_account_id=source, to_account_id=payee_account_id,
        amount_fen=amount_fen, journal_ref=f"egov:order:{order_id}", reference_type=REFERENCE_ORDER,
        reference_id=order_id, purpose="egov_payment", memo=f"egov payment order {order_id}", at=at)


def open_escrow_account(session: Session, tenant_id: str, *, holder_name: str, holder_uscc: str,
                        label: str, at: datetime) -> AccountView:
    """The scheme's escrow account (资金监管账户), restricted to approved releases."""
    account = accounts.create_account(session, tenant_id, kind="escrow", owner_type="enterprise",
                                      owner_name=holder_name, owner_uscc=holder_uscc, label=label[:100],
                                      debit_restriction=ESCROW_RESTRICTION, at=at)
    return _view(account)


def open_sub_account(session: Session, tenant_id: str, *, parent_account_id: str, label: str,
                     at: datetime) -> AccountView:
    """A virtual sub-account under the escrow account, restricted the same way."""
    account = accounts.create_account(session, tenant_id, kind="virtual",
                                      parent_account_id=parent_account_id, label=label[:100],
                                      debit_restriction=ESCROW_RESTRICTION, at=at)
    return _view(account)


def deposit_into(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
                 amount_fen: int, deposit_id: str, at: datetime) -> EntryRecord:
    """Pay a deposit into a sub-account: the deposit id is the authorization the credit guard
    checks (no other credit of an escrow account is accepted)."""
    return accounts.get_core_banking().transfer(
        session, tenant_id, from_account_id=from_account_id, to_account_id=to_account_id,
        amount_fen=amount_fen, journal_ref=f"egov:deposit:{deposit_id}",
        reference_type=REFERENCE_DEPOSIT, reference_id=deposit_id, purpose="escrow_deposit",
        memo=f"escrow deposit {deposit_id}", authorization={"egov_escrow_deposit": deposit_id},
        at=at)


def release_from(session: Session, tenant_id: str, *, from_account_id: str, to_account_id: str,
                 amount_fen: int, instruction_id: str, journal_ref: str, at: datetime) -> EntryRecord:
    """Execute an approved instruction: the instruction id is the authorization the guard checks."""
    return accounts.get_core_banking().transfer(
        session, tenant_id, from_account_id=from_account_id, to_account_id=to_account_id,
        amount_fen=amount_fen, journal_ref=journal_ref, reference_type=REFERENCE_RELEASE,
        reference_id=instruction_id, purpose="escrow_release", memo=f"escrow release {instruction_id}",
        authorization={"egov_release_instruction": instruction_id}, at=at)


def balance_fen(session: Session, tenant_id: str, account_id: str) -> int:
    return accounts.get_core_banking().balance(session, tenant_id, account_id).ledger_fen


def balance_before(session: Session, tenant_id: str, account_id: str, at: datetime) -> int:
    """The account's ledger balance from the postings strictly before `at` (reconciliation)."""
    statement = accounts.get_core_banking().statement(session, tenant_id, account_id, at,
                                                      at + timedelta(microseconds=1))
    return statement.opening_fen
