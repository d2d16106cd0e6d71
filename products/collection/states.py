"""Collection state machines: every allowed transition is listed here and nowhere else.

Order:
    pending -> succeeded      (money reached the clearing account)
    pending -> failed         (the payer's account refused the debit)
    pending -> expired        (a virtual-account order nobody paid before `expires_at`)
    Orders paid by mandate or wallet are decided at once (pending is never visible).

Debit mandate:
    active -> revoked         (the payer withdrew it, or the platform cancelled it)
    active -> expired         (its expiry date passed; found on use or by the worker)

Bill (park):
    open -> overdue           (the due date passed unpaid)
    open | overdue -> paid    (principal and late fee fully paid)
    paid -> open | overdue    (a refund of one of its payments leaves money owing again: open
                               up to its due date, overdue after it)
    open | overdue -> cancelled
                              (only while nothing is paid on it: refund its payments first;
                               an overdue bill is withdrawn like an open one, its late fee
                               with it, and a bill whose payments were all refunded is back
                               to open or overdue, so it may be cancelled too)

Subsidy grant and lot: funded/open -> expired (the month ended; the rest went back).
"""

from __future__ import annotations

from gateway.states import InvalidTransition, check_transition  # noqa: F401

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"succeeded", "failed", "expired"}),
    "succeeded": frozenset(),
    "failed": frozenset(),
    "expired": frozenset(),
}
ORDER_STATES = tuple(ORDER_TRANSITIONS)
ORDER_FINAL = frozenset({"succeeded", "failed", "expired"})

MANDATE_TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"revoked", "expired"}),
    "revoked": frozenset(),
    "expired": frozenset(),
}
MANDATE_STATES = tuple(MANDATE_TRANSITIONS)

BILL_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"overdue", "paid", "cancelled"}),
    "overdue": frozenset({"paid", "cancelled"}),
    "paid": frozenset({"open", "overdue"}),
    "cancelled": frozenset(),
}
BILL_STATES = tuple(BILL_TRANSITIONS)
BILL_UNPAID = frozenset({"open", "overdue"})

GRANT_TRANSITIONS: dict[str, frozenset[str]] = {
    "funded": frozenset({"expired"}),
    "expired": frozenset(),
}


def check_order(current: str, target: str, *, action: str) -> None:
    """Refuse an order transition the table does not list (409 naming the current state)."""
    check_transition(ORDER_TRANSITIONS, "collection order", current, target, action)


def check_mandate(current: str, target: str, *, action: str) -> None:
    check_transition(MANDATE_TRANSITIONS, "mandate", current, target, action)


def check_bill(current: str, target: str, *, action: str) -> None:
    check_transition(BILL_TRANSITIONS, "bill", current, target, action)


def check_grant(current: str, target: str, *, action: str) -> None:
    check_transition(GRANT_TRANSITIONS, "subsidy grant", current, target, action)
