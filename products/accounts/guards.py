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
_lock = threading.Lock()


def register_debit_guard(restriction: str, guard: DebitGuard, *, replace: bool = False) -> None:
    """Register the guard deciding debits of accounts restricted by `restriction`.

    Registering the same guard again is a no-op; a different guard for a restriction that
    already has one is refused unless `replace=True` (one product owns each restriction).
    """
    if not RESTRICTION_NAME.fullmatch(restriction):
        raise ValueError(f"bad debit restriction name {restriction!r}")
    if not callable(guard):
        raise TypeError("a debit guard is a callable")
    with _lock:
        current = _guards.get(restriction)
        if current is not None and current is not guard and not replace:
            raise ValueError(f"a debit guard is already registered for {restriction!r}")
        _guards[restriction] = guard


def unregister_debit_guard(restriction: str) -> None:
    """Remove a restriction's guard (its accounts then refuse every debit)."""
    with _lock:
        _guards.pop(restriction, None)


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
