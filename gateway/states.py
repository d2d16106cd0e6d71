"""State machines: each resource keeps its own explicit table of allowed transitions
(`{state: frozenset(next states)}`) in its package; checking a move against a table, and the
problem a refused move gets, live here once."""

from __future__ import annotations

from collections.abc import Mapping

from gateway.errors import Conflict

Transitions = Mapping[str, frozenset[str]]


class InvalidTransition(Conflict):
    code, title = "invalid_state", "Not allowed in the current state"


def check_transition(table: Transitions, what: str, current: str, target: str,
                     action: str) -> None:
    """Refuse a move the table does not list: a 409 naming the current state."""
    if target not in table.get(current, frozenset()):
        article = "An" if what[:1].lower() in "aeiou" else "A"
        raise InvalidTransition(f"{article} {what} that is {current} cannot be {action}.",
                                extra={"current_status": current})
