"""Many captures of one hold at once (`capture_hold_many`): the same outcome as one
`capture_hold` per capture, each its own balanced entry, exactly once however often it is
repeated, and nothing written when anything but a refusal goes wrong."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from gateway.db import Database
from products.accounts import service
from products.accounts.errors import HoldAmountExceeded, HoldNotActive, JournalRefConflict
from products.accounts.models import Account, Hold, JournalEntry, Posting
from products.accounts.port import BulkCapture, Capture
from tests.products.accounts.factories import enterprise_account, funded_account, new_tenant
from tests.tools.concurrency import run_together


@pytest.fixture
def tenant(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s)


def _hold(s, tenant, fen=10_000, hold_fen=6_000):
    payer = funded_account(s, tenant, fen).id
    hold = service.place_hold(s, tenant, account_id=payer, amount_fen=hold_fen,
                              hold_ref=f"batch:{payer}", reference_type="payroll_batch",
                              reference_id="pbatch_1")
    return payer, hold.id


def _counts(s, tenant):
    return (s.scalar(select(func.count()).select_from(JournalEntry)
                     .where(JournalEntry.tenant_id == tenant)),
            s.scalar(select(func.count()).select_from(Posting).where(Posting.tenant_id == tenant)))


def test_the_ledger_offers_bulk_capture():
    assert isinstance(service.get_core_banking(), BulkCapture)


def test_many_captures_are_one_entry_each_and_balance_like_single_captures(database, tenant):
    amounts = [100, 250, 1, 999, 650]
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant)
        sinks = [enterprise_account(s, tenant).id for _ in range(3)]
        twin_payer, twin_hold = _hold(s, tenant)
        captures = [Capture(journal_ref=f"item-{i}", to_account_id=sinks[i % 3], amount_fen=fen,
                            reference_type="payroll_item", reference_id=f"pitem_{i}",
                            memo=f"wages {i}")
                    for i, fen in enumerate(amounts)]
        outcomes = service.capture_hold_many(s, tenant, hold_id, captures)
        # The same captures one by one, from a twin hold, into the same sinks.
        for c in captures:
            service.capture_hold(s, tenant, twin_hold, to_account_id=c.to_account_id,
                                 journal_ref="twin-" + c.journal_ref, amount_fen=c.amount_fen,
                                 reference_type=c.reference_type, reference_id=c.reference_id,
                                 memo=c.memo)
        assert [o.journal_ref for o in outcomes] == [c.journal_ref for c in captures]
        assert all(o.entry_id and not o.refusal and not o.replayed for o in outcomes)
        total = sum(amounts)
        for account in (payer, twin_payer):
            bal = service.balance(s, tenant, account)
            assert (bal.ledger_fen, bal.held_fen) == (10_000 - total, 6_000 - total)
        assert service.get_hold(s, tenant, hold_id).captured_fen == total
        for i, c in enumerate(captures):
            entry = s.scalars(select(JournalEntry).where(JournalEntry.journal_ref == c.journal_ref)).one()
            twin = s.scalars(select(JournalEntry).where(
                JournalEntry.journal_ref == "twin-" + c.journal_ref)).one()
            assert entry.id == outcomes[i].entry_id
            assert (entry.kind, entry.purpose, entry.total_fen, entry.reference_id, entry.memo) == (
                twin.kind, twin.purpose, twin.total_fen, twin.reference_id, twin.memo)
            assert entry.hold_id == hold_id
            legs = sorted(s.execute(select(Posting.account_id, Posting.amount_fen)
                                    .where(Posting.entry_id == entry.id)).all(), key=lambda r: r[1])
            assert legs == [(payer, -c.amount_fen), (c.to_account_id, c.amount_fen)]
        assert service.audit(s, tenant) == []  # seq 1..n and running balances per account


def test_a_refused_capture_fails_alone_and_writes_nothing(database, tenant):
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant)
        good = enterprise_account(s, tenant).id
        closed = enterprise_account(s, tenant).id
        service.close_account(s, tenant, closed, actor="test")
        outcomes = service.capture_hold_many(s, tenant, hold_id, [
            Capture("a", good, 100), Capture("b", closed, 200), Capture("c", good, 300)])
        assert [(o.entry_id is not None, o.refusal) for o in outcomes] == [
            (True, None), (False, "account_closed"), (True, None)]
        assert _counts(s, tenant)[0] == 1 + 2  # the funding deposit, two captures
        assert service.balance(s, tenant, good).ledger_fen == 400
        assert service.get_hold(s, tenant, hold_id).remaining_fen == 6_000 - 400
        assert service.audit(s, tenant) == []


def test_repeating_the_captures_replays_them_and_moves_nothing(database, tenant):
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant)
        sink = enterprise_account(s, tenant).id
        captures = [Capture(f"item-{i}", sink, 100 + i) for i in range(5)]
        first = service.capture_hold_many(s, tenant, hold_id, captures)
    with database.transaction() as s:
        again = service.capture_hold_many(s, tenant, hold_id, captures)
        assert [o.entry_id for o in again] == [o.entry_id for o in first]
        assert all(o.replayed for o in again)
        assert service.balance(s, tenant, sink).ledger_fen == sum(100 + i for i in range(5))
        assert _counts(s, tenant) == (1 + 5, 2 + 10)
        assert service.audit(s, tenant) == []


def test_captures_posted_before_are_replayed_among_new_ones(database, tenant):
    """A crash after some captures committed (or an adapter that commits on its own): the
    repeated call pays only what was not paid."""
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant)
        sink = enterprise_account(s, tenant).id
        captures = [Capture(f"item-{i}", sink, 100) for i in range(6)]
        earlier = {c.journal_ref: service.capture_hold(
            s, tenant, hold_id, to_account_id=sink, journal_ref=c.journal_ref, amount_fen=100)
            for c in captures[1::2]}
    with database.transaction() as s:
        outcomes = service.capture_hold_many(s, tenant, hold_id, captures)
        assert [o.replayed for o in outcomes] == [False, True] * 3
        for o in outcomes[1::2]:
            assert o.entry_id == earlier[o.journal_ref].entry.id
        assert service.balance(s, tenant, sink).ledger_fen == 600
        assert service.get_hold(s, tenant, hold_id).captured_fen == 600
        assert _counts(s, tenant)[0] == 1 + 6
        assert service.audit(s, tenant) == []


def test_a_ref_twice_in_one_call_is_paid_once(database, tenant):
    with database.transaction() as s:
        _, hold_id = _hold(s, tenant)
        sink = enterprise_account(s, tenant).id
        outcomes = service.capture_hold_many(s, tenant, hold_id, [
            Capture("dup", sink, 100), Capture("other", sink, 5), Capture("dup", sink, 100)])
        assert outcomes[2].replayed and outcomes[2].entry_id == outcomes[0].entry_id
        assert service.balance(s, tenant, sink).ledger_fen == 105
        with pytest.raises(JournalRefConflict):
            service.capture_hold_many(s, tenant, hold_id, [
                Capture("twice", sink, 1), Capture("twice", sink, 2)])


def test_a_ref_used_for_another_movement_is_a_conflict_and_nothing_moves(database, tenant):
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant)
        sink = enterprise_account(s, tenant).id
        other = funded_account(s, tenant, 500).id
        service.transfer(s, tenant, from_account_id=other, to_account_id=sink, amount_fen=50,
                         journal_ref="taken", reference_type="test", reference_id="t")
        before = _counts(s, tenant)
    with pytest.raises(JournalRefConflict), database.transaction() as s:
        service.capture_hold_many(s, tenant, hold_id, [Capture("fresh", sink, 100),
                                                        Capture("taken", sink, 50)])
    with database.transaction() as s:
        assert _counts(s, tenant) == before
        assert service.balance(s, tenant, sink).ledger_fen == 50
        assert service.audit(s, tenant) == []


def test_more_than_the_hold_holds_or_a_spent_hold_writes_nothing(database, tenant):
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant, hold_fen=300)
        sink = enterprise_account(s, tenant).id
        before = _counts(s, tenant)
        with pytest.raises(HoldAmountExceeded):
            service.capture_hold_many(s, tenant, hold_id, [Capture("a", sink, 200),
                                                            Capture("b", sink, 101)])
        assert _counts(s, tenant) == before
        assert service.get_hold(s, tenant, hold_id).remaining_fen == 300
        with pytest.raises(HoldNotActive):  # the first two use it up, as capture_hold would
            service.capture_hold_many(s, tenant, hold_id, [
                Capture("a", sink, 200), Capture("b", sink, 100), Capture("c", sink, 1)])
        service.capture_hold_many(s, tenant, hold_id, [Capture("a", sink, 200),
                                                        Capture("b", sink, 100)])
        hold = s.get(Hold, hold_id)
        assert (hold.status, hold.captured_fen) == ("captured", 300)
        assert s.get(Account, payer).held_fen == 0
        # Spent: new captures are refused, known ones still replay.
        with pytest.raises(HoldNotActive):
            service.capture_hold_many(s, tenant, hold_id, [Capture("d", sink, 1)])
        assert all(o.replayed for o in service.capture_hold_many(
            s, tenant, hold_id, [Capture("a", sink, 200)]))
        assert service.audit(s, tenant) == []


@pytest.mark.timeout(240)
def test_concurrent_repeats_of_the_same_captures_pay_each_once(database, tenant):
    with database.transaction() as s:
        payer, hold_id = _hold(s, tenant, fen=100_000, hold_fen=50_000)
        sinks = [enterprise_account(s, tenant).id for _ in range(3)]
    captures = [Capture(f"item-{i}", sinks[i % 3], 10 + i) for i in range(60)]
    def capture_all() -> None:
        with database.transaction() as s:
            service.capture_hold_many(s, tenant, hold_id, captures)

    run_together(capture_all, 4, timeout=120)
    with database.transaction() as s:
        total = sum(c.amount_fen for c in captures)
        assert _counts(s, tenant)[0] == 1 + len(captures)
        assert service.balance(s, tenant, payer).ledger_fen == 100_000 - total
        assert service.get_hold(s, tenant, hold_id).captured_fen == total
        assert service.audit(s, tenant) == []
