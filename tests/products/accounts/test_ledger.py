"""The ledger's rules, each with a test that tries to break it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from gateway.db import Database
from products.accounts import service
from products.accounts.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFound,
    HoldAmountExceeded,
    HoldNotActive,
    HoldNotFound,
    HoldRefConflict,
    InsufficientFunds,
    InvalidAccountTransition,
    InvalidAmount,
    InvalidCursor,
    InvalidPeriod,
    JournalRefConflict,
    LedgerIntegrityError,
    OverdraftInUse,
    SameAccount,
    UnbalancedEntry,
)
from products.accounts.models import Account, Hold, JournalEntry, Posting
from products.accounts.port import CoreBanking, Leg
from tests.products.accounts.factories import enterprise_account, funded_account, new_tenant

T0 = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def _move(session, tenant_id, src, dst, fen, ref, **kwargs):
    return service.transfer(session, tenant_id, from_account_id=src, to_account_id=dst,
                            amount_fen=fen, journal_ref=ref, reference_type="test",
                            reference_id=ref, **kwargs)


def _counts(session) -> tuple[int, int, int]:
    return (session.scalar(select(func.count()).select_from(JournalEntry)),
            session.scalar(select(func.count()).select_from(Posting)),
            session.scalar(select(func.count()).select_from(Hold)))


@pytest.fixture
def tenant(database: Database) -> str:
    with database.transaction() as s:
        return new_tenant(s)


# --- transfers, balances, journal ------------------------------------------------------------

def test_a_transfer_is_one_balanced_entry_and_moves_the_balances(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 10_000).id
        b = enterprise_account(s, tenant).id
        entry = _move(s, tenant, a, b, 2_550, "pay-1", memo="3月货款")
    assert not entry.replayed and entry.total_fen == 2_550
    assert sorted(p.amount_fen for p in entry.postings) == [-2_550, 2_550]
    with database.transaction() as s:
        assert service.balance(s, tenant, a).ledger_fen == 7_450
        assert service.balance(s, tenant, b).available_fen == 2_550
        assert service.audit(s, tenant) == []
        clearing = service.internal_account(s, tenant)
        assert clearing.overdraft_limit_fen is None and clearing.ledger_fen == -10_000


def test_a_transfer_beyond_available_is_refused_and_writes_nothing(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
    with database.transaction() as s:
        before = _counts(s)
        with pytest.raises(InsufficientFunds) as caught:
            _move(s, tenant, a, b, 1_001, "too-much")
        assert caught.value.status == 422 and caught.value.code == "insufficient_funds"
        assert _counts(s) == before
        assert service.balance(s, tenant, a).ledger_fen == 1_000


def test_overdraft_limit_is_usable_to_the_fen_and_not_beyond(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000, overdraft_limit_fen=500).id
        b = enterprise_account(s, tenant).id
        _move(s, tenant, a, b, 1_500, "to-the-limit")
        assert service.balance(s, tenant, a).available_fen == -500
        with pytest.raises(InsufficientFunds):
            _move(s, tenant, a, b, 1, "one-fen-more")
        with pytest.raises(OverdraftInUse):
            service.set_overdraft_limit(s, tenant, a, 499)
        with pytest.raises(InsufficientFunds):
            service.place_hold(s, tenant, account_id=a, amount_fen=1, hold_ref="h",
                               reference_type="test", reference_id="h")
        service.set_overdraft_limit(s, tenant, a, 600)
        _move(s, tenant, a, b, 100, "more-limit")
        assert service.audit(s, tenant) == []


def test_the_database_refuses_a_balance_below_the_overdraft_limit(database, tenant):
    """The CHECK constraint is the last line of defence if code ever bypassed the checks."""
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
    with pytest.raises(IntegrityError), database.transaction() as s:
        s.execute(update(Account).where(Account.id == a).values(held_fen=1_001))
    with pytest.raises(IntegrityError), database.transaction() as s:
        s.execute(update(Account).where(Account.id == a).values(ledger_fen=-1))


def test_bad_amounts_and_the_same_account_are_refused(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        for bad in (0, -5, 1.5, True, "100", 10**16):
            with pytest.raises(InvalidAmount):
                _move(s, tenant, a, b, bad, f"bad-{bad!r}")
        with pytest.raises(SameAccount):
            _move(s, tenant, a, a, 100, "self")
        assert service.audit(s, tenant) == []


def test_another_tenants_account_does_not_exist(database, tenant):
    with database.transaction() as s:
        other = new_tenant(s)
        theirs = funded_account(s, other, 1_000).id
        mine = enterprise_account(s, tenant).id
        with pytest.raises(AccountNotFound):
            _move(s, tenant, theirs, mine, 100, "steal")
        with pytest.raises(AccountNotFound):
            service.balance(s, tenant, theirs)
        with pytest.raises(AccountNotFound):
            service.get_account(s, tenant, "acct_nope")
        assert service.balance(s, other, theirs).ledger_fen == 1_000


# --- frozen and closed -----------------------------------------------------------------------

def test_a_frozen_account_refuses_debits_and_holds_but_receives_credits(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = funded_account(s, tenant, 1_000).id
        hold = service.place_hold(s, tenant, account_id=a, amount_fen=300, hold_ref="before-freeze",
                                  reference_type="test", reference_id="1")
        service.freeze_account(s, tenant, a, actor="ops", reason="司法冻结")
    with database.transaction() as s:
        with pytest.raises(AccountFrozen) as caught:
            _move(s, tenant, a, b, 100, "from-frozen")
        assert caught.value.status == 409 and caught.value.code == "account_frozen"
        with pytest.raises(AccountFrozen):
            service.place_hold(s, tenant, account_id=a, amount_fen=1, hold_ref="h2",
                               reference_type="test", reference_id="2")
        with pytest.raises(AccountFrozen):
            service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="cap")
        _move(s, tenant, b, a, 100, "to-frozen")
        service.release_hold(s, tenant, hold.id)
        assert service.balance(s, tenant, a).ledger_fen == 1_100
        with pytest.raises(InvalidAccountTransition):
            service.close_account(s, tenant, a, actor="ops")
        service.unfreeze_account(s, tenant, a, actor="ops")
        _move(s, tenant, a, b, 100, "after-unfreeze")
        types = [r[0] for r in s.execute(text(
            "SELECT type FROM events WHERE resource_id = :a ORDER BY created_at, id"), {"a": a})]
        assert types == ["account.frozen", "account.unfrozen"]


def test_a_closed_account_refuses_debits_and_credits(database, tenant):
    with database.transaction() as s:
        a = enterprise_account(s, tenant).id
        b = funded_account(s, tenant, 1_000).id
        service.close_account(s, tenant, a, actor="ops")
        with pytest.raises(AccountClosed) as caught:
            _move(s, tenant, b, a, 100, "to-closed")
        assert caught.value.code == "account_closed"
        with pytest.raises(AccountClosed):
            _move(s, tenant, a, b, 100, "from-closed")
        with pytest.raises(InvalidAccountTransition):
            service.unfreeze_account(s, tenant, a, actor="ops")


def test_only_an_empty_account_can_be_closed(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        with pytest.raises(AccountNotEmpty):
            service.close_account(s, tenant, a, actor="ops")
        sub = service.create_account(s, tenant, kind="virtual", parent_account_id=b)
        with pytest.raises(AccountNotEmpty):
            service.close_account(s, tenant, b, actor="ops")
        service.close_account(s, tenant, sub.id, actor="ops")
        service.close_account(s, tenant, b, actor="ops")
        assert service.get_account(s, tenant, b).status == "closed"


# --- journal_ref: exactly once -----------------------------------------------------------------

def test_a_replayed_journal_ref_returns_the_entry_and_moves_nothing(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 10_000).id
        b = enterprise_account(s, tenant).id
        first = _move(s, tenant, a, b, 1_000, "payroll:item:42")
    # A crash-restart: a new transaction asks for the same movement again.
    with database.transaction() as s:
        again = _move(s, tenant, a, b, 1_000, "payroll:item:42")
        assert again.replayed and again.id == first.id and again.postings == first.postings
        assert service.balance(s, tenant, a).ledger_fen == 9_000
        assert s.scalar(select(func.count()).select_from(JournalEntry)
                        .where(JournalEntry.tenant_id == tenant)) == 2  # the deposit and this


def test_a_journal_ref_reused_for_another_movement_is_a_conflict(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 10_000).id
        b = enterprise_account(s, tenant).id
        _move(s, tenant, a, b, 1_000, "ref-1")
        with pytest.raises(JournalRefConflict):
            _move(s, tenant, a, b, 1_001, "ref-1")
        with pytest.raises(JournalRefConflict):
            _move(s, tenant, b, a, 1_000, "ref-1")
        assert service.balance(s, tenant, a).ledger_fen == 9_000


def test_a_replay_is_answered_even_when_the_movement_would_now_be_refused(database, tenant):
    # The entry's ref is looked up only when a movement is refused or its INSERT finds the ref
    # taken: a repeat of a payment that used the money up must still get that payment back.
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        first = _move(s, tenant, a, b, 1_000, "drain-1")
    with database.transaction() as s:
        service.freeze_account(s, tenant, a, actor="ops")
    with database.transaction() as s:
        again = _move(s, tenant, a, b, 1_000, "drain-1")
        assert again.replayed and again.id == first.id
        with pytest.raises(AccountFrozen):
            _move(s, tenant, a, b, 1_000, "drain-2")
        with pytest.raises(JournalRefConflict):  # refused, and its ref names another movement
            _move(s, tenant, a, b, 999, "drain-1")
    with database.transaction() as s:
        assert service.balance(s, tenant, a).ledger_fen == 0
        assert service.balance(s, tenant, b).ledger_fen == 1_000
        assert service.audit(s, tenant) == []


def test_the_session_sees_the_balances_an_entry_wrote(database, tenant):
    # The balances are written beside the ORM; the locked objects must hold what was stored,
    # and nothing must be written twice when the session flushes later.
    with database.transaction() as s:
        a = funded_account(s, tenant, 10_000)
        b = enterprise_account(s, tenant)
        entry = _move(s, tenant, a.id, b.id, 2_500, "seen-1")
        assert (a.ledger_fen, b.ledger_fen) == (7_500, 2_500)
        assert a.posting_seq == 2 and b.posting_seq == 1
        assert a.last_posted_at == entry.created_at
        a.label = "renamed"  # an unrelated change flushed with the session
        s.flush()
        _move(s, tenant, a.id, b.id, 500, "seen-2")
        assert (a.ledger_fen, b.ledger_fen) == (7_000, 3_000)
    with database.transaction() as s:
        stored = s.get(Account, a.id)
        assert (stored.ledger_fen, stored.posting_seq, stored.label) == (7_000, 3, "renamed")
        assert service.audit(s, tenant) == []


def test_journal_refs_are_per_tenant(database, tenant):
    with database.transaction() as s:
        other = new_tenant(s)
        a1, b1 = funded_account(s, tenant, 1_000).id, enterprise_account(s, tenant).id
        a2, b2 = funded_account(s, other, 1_000).id, enterprise_account(s, other).id
        assert not _move(s, tenant, a1, b1, 100, "same-ref").replayed
        assert not _move(s, other, a2, b2, 100, "same-ref").replayed


# --- balanced entries only -----------------------------------------------------------------------

def test_unbalanced_postings_are_impossible(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        c = enterprise_account(s, tenant).id
        before = _counts(s)
        cases = [
            [Leg(a, -100), Leg(b, 99)],
            [Leg(a, -100)],
            [Leg(a, 100), Leg(b, 100)],
            [],
        ]
        for legs in cases:
            with pytest.raises(UnbalancedEntry) as caught:
                service.post_entry(s, tenant, legs=legs, journal_ref=f"bad-{len(legs)}-{legs!r}"[:100],
                                   reference_type="test", reference_id="x", purpose="split")
            assert caught.value.status == 500
        with pytest.raises(InvalidAmount):
            service.post_entry(s, tenant, legs=[Leg(a, -100), Leg(b, 100), Leg(c, 0)],
                               journal_ref="zero-leg", reference_type="test", reference_id="x",
                               purpose="split")
        with pytest.raises(LedgerIntegrityError):
            service.post_entry(s, tenant, legs=[Leg(a, -100), Leg(a, 100)], journal_ref="dup",
                               reference_type="test", reference_id="x", purpose="split")
        assert _counts(s) == before


def test_a_split_entry_debits_one_and_credits_many(database, tenant):
    with database.transaction() as s:
        payer = funded_account(s, tenant, 10_000).id
        merchant = enterprise_account(s, tenant).id
        platform = enterprise_account(s, tenant).id
        entry = service.post_entry(
            s, tenant, legs=[Leg(payer, -10_000), Leg(merchant, 9_940), Leg(platform, 60)],
            journal_ref="order-7", reference_type="collection_order", reference_id="co_7",
            purpose="collection")
        assert entry.total_fen == 10_000 and len(entry.postings) == 3
        lines = service.transactions(s, tenant, payer).data
        assert lines[0].counterparty_account_id is None  # a split has no single counterparty
        assert service.transactions(s, tenant, platform).data[0].counterparty_account_id == payer
        assert service.audit(s, tenant) == []


# --- holds -------------------------------------------------------------------------------------

def test_a_hold_reserves_available_money(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        hold = service.place_hold(s, tenant, account_id=a, amount_fen=700, hold_ref="batch-1",
                                  reference_type="payroll_batch", reference_id="pbatch_1")
        bal = service.balance(s, tenant, a)
        assert (bal.ledger_fen, bal.held_fen, bal.available_fen) == (1_000, 700, 300)
        with pytest.raises(InsufficientFunds):
            _move(s, tenant, a, b, 301, "over-hold")
        with pytest.raises(InsufficientFunds):
            service.place_hold(s, tenant, account_id=a, amount_fen=301, hold_ref="batch-2",
                               reference_type="payroll_batch", reference_id="pbatch_2")
        again = service.place_hold(s, tenant, account_id=a, amount_fen=700, hold_ref="batch-1",
                                   reference_type="payroll_batch", reference_id="pbatch_1")
        assert again.replayed and again.id == hold.id
        assert service.balance(s, tenant, a).held_fen == 700
        with pytest.raises(HoldRefConflict):
            service.place_hold(s, tenant, account_id=a, amount_fen=100, hold_ref="batch-1",
                               reference_type="payroll_batch", reference_id="pbatch_1")


def test_partial_captures_keep_the_rest_held_until_released(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        hold = service.place_hold(s, tenant, account_id=a, amount_fen=600, hold_ref="h",
                                  reference_type="test", reference_id="h")
        first = service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-1",
                                     amount_fen=250)
        assert first.hold.status == "active" and first.hold.remaining_fen == 350
        bal = service.balance(s, tenant, a)
        assert (bal.ledger_fen, bal.held_fen, bal.available_fen) == (750, 350, 400)
        replay = service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-1",
                                      amount_fen=250)
        assert replay.entry.replayed and replay.entry.id == first.entry.id
        assert service.balance(s, tenant, a).ledger_fen == 750
        with pytest.raises(JournalRefConflict):
            service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-1",
                                 amount_fen=251)
        with pytest.raises(HoldAmountExceeded):
            service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-2",
                                 amount_fen=351)
        released = service.release_hold(s, tenant, hold.id, amount_fen=100)
        assert released.remaining_fen == 250 and released.status == "active"
        last = service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-3")
        assert last.entry.total_fen == 250 and last.hold.status == "captured"
        with pytest.raises(HoldNotActive):
            service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="item-4",
                                 amount_fen=1)
        assert service.release_hold(s, tenant, hold.id).replayed  # releasing all: idempotent
        with pytest.raises(HoldNotActive):
            service.release_hold(s, tenant, hold.id, amount_fen=1)
        bal = service.balance(s, tenant, a)
        assert (bal.ledger_fen, bal.held_fen) == (500, 0)
        assert service.audit(s, tenant) == []


def test_a_final_capture_releases_the_rest(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 1_000).id
        b = enterprise_account(s, tenant).id
        hold = service.place_hold(s, tenant, account_id=a, amount_fen=600, hold_ref="h",
                                  reference_type="test", reference_id="h")
        result = service.capture_hold(s, tenant, hold.id, to_account_id=b, journal_ref="c",
                                      amount_fen=200, final=True)
        assert (result.hold.captured_fen, result.hold.released_fen) == (200, 400)
        assert result.hold.status == "captured"
        bal = service.balance(s, tenant, a)
        assert (bal.ledger_fen, bal.held_fen, bal.available_fen) == (800, 0, 800)
        released = service.place_hold(s, tenant, account_id=a, amount_fen=800, hold_ref="h2",
                                      reference_type="test", reference_id="h2")
        assert service.release_hold(s, tenant, released.id).status == "released"
        assert service.audit(s, tenant) == []


def test_holds_of_another_tenant_do_not_exist(database, tenant):
    with database.transaction() as s:
        other = new_tenant(s)
        a = funded_account(s, other, 1_000).id
        hold = service.place_hold(s, other, account_id=a, amount_fen=100, hold_ref="h",
                                  reference_type="test", reference_id="h")
        mine = enterprise_account(s, tenant).id
        with pytest.raises(HoldNotFound):
            service.capture_hold(s, tenant, hold.id, to_account_id=mine, journal_ref="x")
        with pytest.raises(HoldNotFound):
            service.release_hold(s, tenant, hold.id)


# --- time, statements, transactions ----------------------------------------------------------

def test_statement_has_opening_and_closing_balances(database, tenant):
    with database.transaction() as s:
        a = enterprise_account(s, tenant).id
        b = enterprise_account(s, tenant).id
        service.deposit(s, tenant, a, 10_000, journal_ref="d1", at=T0)
        _move(s, tenant, a, b, 1_000, "m1", at=T0 + timedelta(hours=1))
        service.deposit(s, tenant, a, 500, journal_ref="d2", at=T0 + timedelta(hours=2))
        _move(s, tenant, a, b, 2_000, "m2", at=T0 + timedelta(hours=3))
        st = service.statement(s, tenant, a, T0 + timedelta(minutes=30), T0 + timedelta(hours=3))
        assert (st.opening_fen, st.closing_fen) == (10_000, 9_500)
        assert [line.amount_fen for line in st.lines] == [-1_000, 500]
        assert (st.credits_fen, st.debits_fen) == (500, 1_000)
        assert st.opening_fen + st.credits_fen - st.debits_fen == st.closing_fen
        empty = service.statement(s, tenant, a, T0 - timedelta(days=1), T0)
        assert (empty.opening_fen, empty.closing_fen, empty.lines) == (0, 0, ())
        with pytest.raises(InvalidPeriod):
            service.statement(s, tenant, a, T0, T0)
        with pytest.raises(InvalidPeriod):
            service.statement(s, tenant, a, T0.replace(tzinfo=None), T0 + timedelta(hours=1))


def test_an_entry_never_goes_back_before_an_accounts_last_posting(database, tenant):
    with database.transaction() as s:
        a = enterprise_account(s, tenant).id
        b = enterprise_account(s, tenant).id
        service.deposit(s, tenant, a, 1_000, journal_ref="d", at=T0 + timedelta(hours=5))
        late = _move(s, tenant, a, b, 100, "back-dated", at=T0)
        assert late.created_at == T0 + timedelta(hours=5)
        assert service.audit(s, tenant) == []


def test_transactions_page_newest_first_without_gaps(database, tenant):
    with database.transaction() as s:
        a = funded_account(s, tenant, 100_000).id
        b = enterprise_account(s, tenant).id
        for i in range(7):
            _move(s, tenant, a, b, 100 + i, f"p{i}")
    seen: list[int] = []
    cursor = None
    with database.transaction() as s:
        while True:
            page = service.transactions(s, tenant, a, cursor=cursor, limit=3)
            seen += [line.amount_fen for line in page.data]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
            _move(s, tenant, a, b, 1, f"meanwhile-{len(seen)}")  # new postings never shift pages
        assert seen == [-(100 + i) for i in reversed(range(7))] + [100_000]
        with pytest.raises(InvalidCursor):
            service.transactions(s, tenant, a, cursor="not-a-cursor!")
        accounts_cursor = service.list_accounts(s, tenant, limit=1).next_cursor
        with pytest.raises(InvalidCursor):
            service.transactions(s, tenant, a, cursor=accounts_cursor)


def test_list_accounts_pages_and_filters(database, tenant):
    with database.transaction() as s:
        ids = [enterprise_account(s, tenant).id for _ in range(4)]
        escrow = enterprise_account(s, tenant, kind="escrow").id
        other = new_tenant(s)
        enterprise_account(s, other)
        got, cursor = [], None
        while True:
            page = service.list_accounts(s, tenant, cursor=cursor, limit=2)
            got += [a.id for a in page.data]
            if not page.next_cursor:
                break
            cursor = page.next_cursor
        assert got == sorted([*ids, escrow], reverse=True)
        assert [a.id for a in service.list_accounts(s, tenant, kind="escrow").data] == [escrow]


def test_the_default_core_banking_is_the_ledger_and_can_be_replaced():
    core = service.get_core_banking()
    assert isinstance(core, service.LedgerCoreBanking) and isinstance(core, CoreBanking)

    class Recorder(service.LedgerCoreBanking):
        pass

    service.set_core_banking(Recorder())
    try:
        assert isinstance(service.get_core_banking(), Recorder)
        with pytest.raises(TypeError):
            service.set_core_banking(object())  # type: ignore[arg-type]
    finally:
        service.set_core_banking(None)
    assert type(service.get_core_banking()) is service.LedgerCoreBanking
