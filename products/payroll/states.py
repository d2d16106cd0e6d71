"""The payroll state machines: every allowed transition is listed here and nowhere else.

Batch:
    received -> validated | rejected            (synchronously, while the upload is read)
    validated -> scheduled                       (confirmed, value date still ahead: total held)
    validated -> processing                      (confirmed on or after the value date: total held)
    scheduled -> processing                      (the tenant's clock reached the value date)
    validated | scheduled -> cancelled           (hold released; no cancel once processing)
    processing -> completed | partially_completed | failed   (every item settled)

Item:
    pending -> succeeded | failed                (paid with its own journal reference, or refused)
    pending -> cancelled                         (its batch was cancelled)
    succeeded -> returned                        (退票: the receiving bank sent the money back)
"""

from __future__ import annotations

from gateway.states import InvalidTransition, check_transition  # noqa: F401

BATCH_TRANSITIONS: dict[str, frozenset[str]] = {
    "received": frozenset({"validated", "rejected"}),
    "validated": frozenset({"scheduled", "processing", "cancelled"}),
    "scheduled": frozenset({"processing", "cancelled"}),
    "processing": frozenset({"completed", "partially_completed", "failed"}),
    "rejected": frozenset(),
    "cancelled": frozenset(),
    "completed": frozenset(),
    "partially_completed": frozenset(),
    "failed": frozenset(),
}
BATCH_STATES = tuple(BATCH_TRANSITIONS)
CANCELLABLE = frozenset(s for s, nxt in BATCH_TRANSITIONS.items() if "cancelled" in nxt)
BATCH_FINAL = frozenset({"rejected", "cancelled", "completed", "partially_completed", "failed"})

ITEM_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"succeeded", "failed", "cancelled"}),
    "succeeded": frozenset({"returned"}),
    "failed": frozenset(),
    "cancelled": frozenset(),
    "returned": frozenset(),
}
ITEM_STATES = tuple(ITEM_TRANSITIONS)


def check_batch(current: str, target: str, *, action: str) -> None:
    """Refuse a batch transition the table does not list (a 409 naming the current state)."""
    check_transition(BATCH_TRANSITIONS, "batch", current, target, action)


def check_item(current: str, target: str, *, action: str) -> None:
    check_transition(ITEM_TRANSITIONS, "item", current, target, action)


def settled_status(succeeded: int, failed: int) -> str:
    """The final batch status once no item is pending."""
    if failed == 0:
        return "completed"
    if succeeded == 0:
        return "failed"
    return "partially_completed"
