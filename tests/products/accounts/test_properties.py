"""Random sequences of transfers, holds, captures, releases, freezes and replays, checked against
a model of what the ledger must do, and against the ledger's invariants after every step."""

from __future__ import annotations

import hashlib
import itertools
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from gateway.db import Database
from products.accounts import service
from products.accounts.errors import AccountFrozen, HoldAmountExceeded, InsufficientFunds
from products.accounts.port import Leg
from tests.products.accounts.factories import enterprise_account, new_tenant

LIMITS = (0, 0, 500, 0)
START = (3_000, 1_000, 0, 2_000)
ACCOUNT = st.integers(0, len(LIMITS) - 1)
AMOUNT = st.integers(1, 2_500)


def test_ledger_state_machine(database: Database) -> None:
    counter = itertools.count()

    class Ledger(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            with database.transaction() as s:
                self.tenant = new_tenant(s)
                self.ids = []
                for limit, start in zip(LIMITS, START, strict=True):
                    account = enterprise_account(s, self.tenant, overdraft_limit_fen=limit)
                    if start:
                        service.deposit(s, self.tenant, account.id, start,
                                        journal_ref=f"seed:{account.id}")
                    self.ids.append(account.id)
            self.ledger = list(START)
            self.held = [0] * len(LIMITS)
            self.frozen = [False] * len(LIMITS)
            self.holds: dict[str, tuple[int, int]] = {}  # hold id -> (account, remaining)
            self.posted: list[tuple[str, int, int, int]] = []  # (ref, src, dst, amount)

        def _ref(self) -> str:
            return f"ref-{next(counter)}"

        def _spendable(self, i: int) -> int:
            return self.ledger[i] - self.held[i] + LIMITS[i]

        @rule(src=ACCOUNT, dst=ACCOUNT, amount=AMOUNT)
        def transfer(self, src: int, dst: int, amount: int) -> None:
            if src == dst:
                return
            ref = self._ref()
            try:
                with database.transaction() as s:
                    service.transfer(s, self.tenant, from_account_id=self.ids[src],
                                     to_account_id=self.ids[dst], amount_fen=amount,
                                     journal_ref=ref, reference_type="test", reference_id=ref)
            except AccountFrozen:
                assert self.frozen[src]
            except InsufficientFunds:
                assert not self.frozen[src] and self._spendable(src) < amount
            else:
                assert not self.frozen[src] and self._spendable(src) >= amount
                self.ledger[src] -= amount
                self.ledger[dst] += amount
                self.posted.append((ref, src, dst, amount))

        @rule(i=ACCOUNT, amount=AMOUNT)
        def place_hold(self, i: int, amount: int) -> None:
            ref = self._ref()
            try:
                with database.transaction() as s:
                    hold = service.place_hold(s, self.tenant, account_id=self.ids[i],
                                              amount_fen=amount, hold_ref=ref,
                                              reference_type="test", reference_id=ref)
            except AccountFrozen:
                assert self.frozen[i]
            except InsufficientFunds:
                assert not self.frozen[i] and self._spendable(i) < amount
            else:
                assert not self.frozen[i] and self._spendable(i) >= amount
                self.held[i] += amount
                self.holds[hold.id] = (i, amount)

        @precondition(lambda self: self.holds)
        @rule(pick=st.integers(0, 10**6), dst=ACCOUNT, share=st.integers(1, 120),
              final=st.booleans())
        def capture(self, pick: int, dst: int, share: int, final: bool) -> None:
            hold_id = sorted(self.holds)[pick % len(self.holds)]
            i, remaining = self.holds[hold_id]
            if i == dst:
                return
            amount = max(1, remaining * share // 100)  # share > 100 asks for too much
            ref = self._ref()
            try:
                with database.transaction() as s:
                    result = service.capture_hold(s, self.tenant, hold_id,
                                                  to_account_id=self.ids[dst], journal_ref=ref,
                                                  amount_fen=amount, final=final)
            except AccountFrozen:
                assert self.frozen[i]
            except HoldAmountExceeded:
                assert amount > remaining
            else:
                assert not self.frozen[i] and amount <= remaining
                rest = remaining - amount
                self.ledger[i] -= amount
                self.ledger[dst] += amount
                self.held[i] -= amount + (rest if final else 0)
                if final or rest == 0:
                    del self.holds[hold_id]
                    assert result.hold.status == "captured"
                else:
                    self.holds[hold_id] = (i, rest)
                    assert result.hold.status == "active"

        @precondition(lambda self: self.holds)
        @rule(pick=st.integers(0, 10**6), partial=st.booleans())
        def release(self, pick: int, partial: bool) -> None:
            hold_id = sorted(self.holds)[pick % len(self.holds)]
            i, remaining = self.holds[hold_id]
            amount = max(1, remaining // 2) if partial else None
            with database.transaction() as s:
                service.release_hold(s, self.tenant, hold_id, amount_fen=amount)
            released = amount if amount is not None else remaining
            self.held[i] -= released
            if released == remaining:
                del self.holds[hold_id]
            else:
                self.holds[hold_id] = (i, remaining - released)

        @precondition(lambda self: self.posted)
        @rule(pick=st.integers(0, 10**6))
        def replay(self, pick: int) -> None:
            ref, src, dst, amount = self.posted[pick % len(self.posted)]
            with database.transaction() as s:
                entry = service.transfer(s, self.tenant, from_account_id=self.ids[src],
                                         to_account_id=self.ids[dst], amount_fen=amount,
                                         journal_ref=ref, reference_type="test", reference_id=ref)
            assert entry.replayed

        @rule(i=ACCOUNT)
        def toggle_freeze(self, i: int) -> None:
            with database.transaction() as s:
                if self.frozen[i]:
                    service.unfreeze_account(s, self.tenant, self.ids[i], actor="test")
                else:
                    service.freeze_account(s, self.tenant, self.ids[i], actor="test")
            self.frozen[i] = not self.frozen[i]

        @invariant()
        def ledger_is_sound(self) -> None:
            with database.transaction() as s:
                assert service.audit(s, self.tenant) == []
                for i, account_id in enumerate(self.ids):
                    bal = service.balance(s, self.tenant, account_id)
                    assert (bal.ledger_fen, bal.held_fen) == (self.ledger[i], self.held[i])
                    assert bal.available_fen >= -LIMITS[i]
                clearing = service.internal_account(s, self.tenant)
                assert sum(self.ledger) + clearing.ledger_fen == 0  # money is conserved

    run_state_machine_as_test(Ledger, settings=settings(
        max_examples=25, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))


@settings(max_examples=300, deadline=None)
@given(kind=st.text(max_size=12), hold=st.none() | st.text(max_size=30),
       legs=st.lists(st.tuples(st.text(max_size=30), st.integers(-10**15, 10**15)),
                     min_size=2, max_size=4),
       reference=st.tuples(st.text(max_size=20), st.text(max_size=40)))
def test_movement_fingerprint_is_the_canonical_json(kind: str, hold: str | None,
                                                    legs: list[tuple[str, int]],
                                                    reference: tuple[str, str]) -> None:
    """Entries stored before keep replaying: the written-out JSON is exactly json.dumps's
    canonical form (sorted keys, no spaces, UTF-8), for any text, quotes and controls included."""
    parts: dict[str, object] = {"kind": kind, "legs": sorted(legs), "reference": list(reference)}
    if hold is not None:
        parts["hold"] = hold
    canonical = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(canonical.encode()).hexdigest()
    got = service.movement_fingerprint(kind, [Leg(a, n) for a, n in legs], *reference, hold)
    assert got == expected
