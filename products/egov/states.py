"""The e-government state machines: every allowed transition is listed here and nowhere else.

Payment order:
    open -> paid        (the payer paid at checkout; terminal, a paid order is never paid again)
    open -> cancelled   (the portal or the payer cancelled it)
    open -> expired     (its expiry passed before it was paid)
    open -> failed      (too many refused payment attempts: the checkout is closed)

Release instruction:
    pending_approval -> approved     (enough regulator approvals, or approved by policy)
    pending_approval -> rejected     (a regulator rejected it)
    pending_approval -> cancelled    (the scheme's operator withdrew it)
    approved -> executed             (the ledger transfer was made)
    approved -> failed               (the ledger refused it; money did not move)

Escrow sub-account:
    open -> completed   (tuition: every class consumed and paid out; case or building paid out)
    open -> withdrawn   (tuition: the student withdrew and was refunded)
    open -> awarded     (bid deposit: this bidder won)
    open -> lost        (bid deposit: another bidder won; a refund is scheduled)
    lost -> refunded    (bid deposit: the refund was paid)
    awarded -> refunded | completed  (the winner's deposit returned, or released to the tenderer)
"""

from __future__ import annotations

from gateway.states import InvalidTransition, check_transition  # noqa: F401

ORDER_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"paid", "cancelled", "expired", "failed"}),
    "paid": frozenset(),
    "cancelled": frozenset(),
    "expired": frozenset(),
    "failed": frozenset(),
}
ORDER_STATES = tuple(ORDER_TRANSITIONS)
ORDER_FINAL = frozenset(s for s, nxt in ORDER_TRANSITIONS.items() if not nxt)

INSTRUCTION_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending_approval": frozenset({"approved", "rejected", "cancelled"}),
    "approved": frozenset({"executed", "failed"}),
    "rejected": frozenset(),
    "cancelled": frozenset(),
    "executed": frozenset(),
    "failed": frozenset(),
}
INSTRUCTION_STATES = tuple(INSTRUCTION_TRANSITIONS)
# Instructions that still reserve their amount of the sub-account's balance.
INSTRUCTION_OUTSTANDING = frozenset({"pending_approval", "approved"})

SUB_ACCOUNT_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"completed", "withdrawn", "awarded", "lost"}),
    "awarded": frozenset({"refunded", "completed"}),
    "lost": frozenset({"refunded"}),
    "completed": frozenset(),
    "withdrawn": frozenset(),
    "refunded": frozenset(),
}
SUB_ACCOUNT_STATES = tuple(SUB_ACCOUNT_TRANSITIONS)


def check_order(current: str, target: str, *, action: str) -> None:
    """Refuse an order transition the table does not list (a 409 naming the current state)."""
    check_transition(ORDER_TRANSITIONS, "payment order", current, target, action)


def check_instruction(current: str, target: str, *, action: str) -> None:
    check_transition(INSTRUCTION_TRANSITIONS, "release instruction", current, target, action)


def check_sub_account(current: str, target: str, *, action: str) -> None:
    check_transition(SUB_ACCOUNT_TRANSITIONS, "sub-account", current, target, action)
