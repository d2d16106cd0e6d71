"""Debit guards: who may take money out of a restricted account.

An account with a `debit_restriction` (escrow funds 资金监管, a migrant workers' wage account
农民工工资专户) can only be debited when the guard registered for that restriction accepts the
authorization the caller presents (a regulator's release instruction, a payroll item of a
real-name registered worker). With no guard registered for a restriction, or no authorization
presented, every debit is refused: a restriction fails closed.

A guard is `guard(session, account, context) -> None`: it returns to accept and raises a
`Problem` to refuse (subclass `products.accounts.errors.DebitNotAuthorized`, so a refused
transfer is recorded as failed with the guard's code). It runs inside the ledger's transaction
while the account row is locked; it must only read.

The owner of a restriction may also guard *credits* of its accounts (`credit_guard=`): money
then enters them only as the owner allows, whichever product or partner pays in (supervised
escrow takes money only through its own deposit flow, which records the deposit and its
evidence and enforces the scheme's terms; a credit that bypassed it could never be released
or refunded). A credit guard is called like a debit guard, with the credited account and the
movement's context (`amount_fen` credited, `counterparty_account_id` the account debited).
Credits of a restriction without a credit guard are not restricted (a wage account takes the
contractor's funding like any account).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

from sqlalchemy.orm import Session

from products.accounts.errors import DebitRestricted
from products.accounts.models import Account
from products.accounts.port import DebitContext

DebitGuard = Callable[[Session, Account, DebitContext], None]

RESTRICTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")

_guards: dict[str, DebitGuard] = {}
_credit_guards: dict[str, DebitGuard] = {}
_lock = threading.Lock()


def register_debit_guard(restriction: str, guard: DebitGuard, *,
                         credit_guard: DebitGuard | None = None, replace: bool = False) -> None:
    """Register the guard deciding debits of accounts restricted by `restriction`, and the one
    deciding their credits when the owner restricts those too.

    Registering the same guards again is a no-op; a different guard for a restriction that
    already has one is refused unless `replace=True` (one product owns each restriction).
    """
    if not RESTRICTION_NAME.fullmatch(restriction):
        raise ValueError(f"bad debit restriction name {restriction!r}")
    if not callable(guard) or (credit_guard is not None and not callable(credit_guard)):
        raise TypeError("a debit guard is a callable")
    with _lock:
        current = (_guards.get(restriction), _credit_guards.get(restriction))
        if current[0] is not None and current != (guard, credit_guard) and not replace:
            raise ValueError(f"a debit guard is already registered for {restriction!r}")
        _guards[restriction] = guard
        if credit_guard is None:
            _credit_guards.pop(restriction, None)
        else:
            _credit_guards[restriction] = credit_guard


def unregister_debit_guard(restriction: str) -> None:
    """Remove a restriction's guards (its accounts then refuse every debit)."""
    with _lock:
        _guards.pop(restriction, None)
        _credit_guards.pop(restriction, None)


def debit_guard(restriction: str) -> DebitGuard | None:
    return _guards.get(restriction)


def check_debit(session: Session, account: Account, context: DebitContext) -> None:
    """Refuse a debit of a restricted account unless its guard accepts the authorization."""
    restriction = account.debit_restriction
    if restriction is None:
        return
    guard = _guards.get(restriction)
    if guard is None:
        raise DebitRestricted(
            f"Account {account.id} is restricted ({restriction}) and no authority for that "
            "restriction is available: it cannot be debited.",
            extra={"restriction": restriction})
    if context.authorization is None:
        raise DebitRestricted(
            f"Account {account.id} is restricted ({restriction}): a debit needs an "
            "authorization.", extra={"restriction": restriction})
    guard(session, account, context)


def check_credit(session: Session, account: Account, context: DebitContext) -> None:
    """Refuse a credit of a restricted account whose owner guards credits, unless its credit
    guard accepts the movement (the ledger asks before writing anything, as for a debit)."""
    restriction = account.debit_restriction
    if restriction is None:
        return
    guard = _credit_guards.get(restriction)
    if guard is not None:
        guard(session, account, context)
