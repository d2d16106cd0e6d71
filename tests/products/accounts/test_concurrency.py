"""Concurrent sessions against the same accounts: no lost update, no overdraft, no double
payment, no deadlock (SQLite serializes writers; PostgreSQL relies on the ledger's row locks)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from gateway.db import Database
from products.accounts import service
from products.accounts.errors import InsufficientFunds
from products.accounts.models import JournalEntry
from tests.products.accounts.factories import enterprise_account, funded_account, new_tenant

THREADS = 16


def _run(worker: Callable[[int], None]) -> None:
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            worker(i)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker hung (deadlock?)"
    assert errors == [], errors


@pytest.mark.timeout(240)
def test_sixteen_sessions_draining_one_account(database: Database) -> None:
    start, amount, attempts = 1_000, 7, 12  # 16 * 12 * 7 = 1344 fen asked of 1000
    with database.transaction() as s:
        tenant = new_tenant(s)
        source = funded_account(s, tenant, start).id
        sinks = [enterprise_account(s, tenant).id for _ in range(4)]
    outcomes: list[tuple[str, int]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        for n in range(attempts):
            ref = f"drain-{i}-{n}"
            try:
                with database.transaction() as s:
                    if n % 3 == 2:
                        service.place_hold(s, tenant, account_id=source, amount_fen=amount,
                                           hold_ref=ref, reference_type="test", reference_id=ref)
                        kind = "hold"
                    else:
                        service.transfer(s, tenant, from_account_id=source,
                                         to_account_id=sinks[(i + n) % 4], amount_fen=amount,
                                         journal_ref=ref, reference_type="test", reference_id=ref)
                        kind = "transfer"
            except InsufficientFunds:
                kind = "refused"
            with lock:
                outcomes.append((kind, amount))

    _run(worker)
    transferred = sum(a for k, a in outcomes if k == "transfer")
    held = sum(a for k, a in outcomes if k == "hold")
    succeeded = sum(1 for k, _ in outcomes if k != "refused")
    assert succeeded == start // amount  # every fen that could be spent was, no more
    with database.transaction() as s:
        bal = service.balance(s, tenant, source)
        assert bal.ledger_fen == start - transferred
        assert bal.held_fen == held
        assert bal.available_fen == start % amount  # exact, and never below zero
        received = sum(service.balance(s, tenant, sink).ledger_fen for sink in sinks)
        assert received == transferred
        assert service.audit(s, tenant) == []


@pytest.mark.timeout(240)
def test_the_same_journal_ref_from_sixteen_sessions_pays_once(database: Database) -> None:
    with database.transaction() as s:
        tenant = new_tenant(s)
        source = funded_account(s, tenant, 100_000).id
        sink = enterprise_account(s, tenant).id
    replays: list[bool] = []

    def worker(i: int) -> None:
        with database.transaction() as s:
            entry = service.transfer(s, tenant, from_account_id=source, to_account_id=sink,
                                     amount_fen=2_500, journal_ref="payroll:item:7",
                                     reference_type="payroll_item", reference_id="pitem_7")
        replays.append(entry.replayed)

    _run(worker)
    assert sorted(replays) == [False] + [True] * (THREADS - 1)
    with database.transaction() as s:
        assert service.balance(s, tenant, sink).ledger_fen == 2_500
        assert s.scalar(select(func.count()).select_from(JournalEntry).where(
            JournalEntry.tenant_id == tenant, JournalEntry.journal_ref == "payroll:item:7")) == 1
        assert service.audit(s, tenant) == []


@pytest.mark.timeout(240)
def test_crossing_transfers_never_deadlock_and_conserve_money(database: Database) -> None:
    with database.transaction() as s:
        tenant = new_tenant(s)
        accounts = [funded_account(s, tenant, 5_000).id for _ in range(3)]

    def worker(i: int) -> None:
        for n in range(10):
            src, dst = accounts[(i + n) % 3], accounts[(i + n + 1 + i % 2) % 3]
            ref = f"cross-{i}-{n}"
            try:
                with database.transaction() as s:
                    service.transfer(s, tenant, from_account_id=src, to_account_id=dst,
                                     amount_fen=37 + i, journal_ref=ref, reference_type="test",
                                     reference_id=ref)
            except InsufficientFunds:
                pass

    _run(worker)
    with database.transaction() as s:
        total = sum(service.balance(s, tenant, a).ledger_fen for a in accounts)
        assert total == 15_000
        assert all(service.balance(s, tenant, a).available_fen >= 0 for a in accounts)
        assert service.audit(s, tenant) == []


@pytest.mark.timeout(240)
def test_concurrent_transfer_orders_from_one_account_never_deadlock(database: Database) -> None:
    """`create_transfer` writes its transfer row (whose foreign keys share-lock both accounts)
    before the ledger locks the accounts: those locks must not wait for each other."""
    with database.transaction() as s:
        tenant = new_tenant(s)
        payer = funded_account(s, tenant, 1_000_000).id
        payee = enterprise_account(s, tenant).id

    def worker(_: int) -> None:
        for _ in range(10):
            with database.transaction() as s:
                made = service.create_transfer(s, tenant, from_account_id=payer,
                                               to_account_id=payee, amount_fen=100, actor="t")
                assert made.status == "completed"

    _run(worker)
    with database.transaction() as s:
        assert service.get_account(s, tenant, payer).ledger_fen == 1_000_000 - THREADS * 10 * 100
        assert service.get_account(s, tenant, payee).ledger_fen == THREADS * 10 * 100
        assert service.audit(s, tenant) == []
