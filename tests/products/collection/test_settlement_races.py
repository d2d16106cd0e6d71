"""Money events racing daily settlement, and one tenant's failed settlement among others.

A request reads its tenant's clock when it is authenticated. A refund (or a transfer paying a
virtual-account order) that then waits for a row lock while the clock passes the cut-off and
settlement runs must not take the settled date: it belongs to the next one, and every fen is
counted in exactly one settlement (`service.hold_business_date`). The races need PostgreSQL
(SQLite serialises writers, and a request waiting for its BEGIN cannot be observed here).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import func, select, text

from products.collection import jobs as collection_jobs
from products.collection import settlement
from products.collection.models import (
    CollectionSettings,
    Order,
    Refund,
    Settlement,
    SettlementRun,
    VirtualAccount,
)
from tests.products.collection.support import (
    clearing_invariants,
    money,
    next_cutoff,
    setup_platform,
)
from tests.tools.databases import PG_URL

pg_only = pytest.mark.skipif(not PG_URL, reason="needs concurrent writers (PostgreSQL)")


class RowBlocker:
    """Holds one row FOR UPDATE in a transaction of its own thread until `release()`."""

    def __init__(self, database: Any, model: Any, ident: str) -> None:
        self._locked = threading.Event()
        self._release = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(database, model, ident))
        self._thread.start()
        assert self._locked.wait(10)

    def _run(self, database: Any, model: Any, ident: str) -> None:
        with database.transaction() as s:
            s.execute(select(model.id).where(model.id == ident).with_for_update()).all()
            self._locked.set()
            self._release.wait(30)

    def release(self) -> None:
        self._release.set()
        self._thread.join(10)


def wait_for_lock_waiters(database: Any, count: int) -> None:
    """Until `count` sessions of this database wait for a lock (the requests are queued)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with database.transaction() as s:
            waiting = s.scalar(text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock'"))
        if waiting >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"{count} requests never queued on the lock")


def in_threads(calls: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = calls[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    return [threads, results]


def settle_now(p: Any) -> int:
    """The tenant's settlement, errors raised (the worker would log and retry them)."""
    return collection_jobs.settle_tenant(p.database, p.tenant_id)


def settled_through(p: Any) -> Any:
    with p.database.transaction() as s:
        return s.get(CollectionSettings, p.tenant_id).settled_through  # type: ignore[union-attr]


@pg_only
def test_refunds_queued_on_the_order_lock_across_settlement_take_the_next_date(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 23, 50))
    day = p.today()
    order = p.order("320.00", splits=[(0, "200.00"), (1, "120.00")])
    other = p.order("500.00", splits=[(1, "500.00")])  # the other sub-merchant's money
    refunds = 8

    blocker = RowBlocker(p.database, Order, order["id"])
    threads, statuses = in_threads([
        (lambda i=i: p.post(f"/orders/{order['id']}/refunds",
                            {"amount": money("10.00"), "refund_reference": f"RACE-{i}"},
                            idempotency_key=f"race-refund-{i}").status_code)
        for i in range(refunds)])
    wait_for_lock_waiters(p.database, refunds)  # authenticated on `day`, waiting for the order
    p.advance_to(next_cutoff(p, 0, 5))  # `day` closed while they wait
    settle_now(p)
    assert settled_through(p) == day
    blocker.release()
    for thread in threads:
        thread.join(30)
    assert statuses == [201] * refunds

    with p.database.transaction() as s:
        dates = list(s.scalars(select(Refund.refund_date).where(Refund.order_id == order["id"])))
    assert len(dates) == refunds and all(d > day for d in dates), dates

    p.advance_to(next_cutoff(p, 0, 5))
    settle_now(p)  # raised "cannot fund settlement" when the refunds took the settled date
    with p.database.transaction() as s:
        # The sub-merchants' shares (the platform's rows count commissions given back).
        counted = s.scalar(select(func.sum(Settlement.refunded_fen)).where(
            Settlement.tenant_id == p.tenant_id, Settlement.sub_merchant_id.is_not(None)))
        runs = set(s.scalars(select(SettlementRun.settlement_date).where(
            SettlementRun.tenant_id == p.tenant_id)))
        # Each refund in exactly one settlement: the one of its own date, which ran.
        assert set(dates) <= runs
        gross = s.scalar(select(func.sum(Settlement.gross_fen)).where(
            Settlement.tenant_id == p.tenant_id, Settlement.sub_merchant_id.is_not(None)))
    assert counted == refunds * 1000
    assert gross == 32000 + 50000
    clearing_invariants(p)
    assert other["status"] == "succeeded"


@pg_only
def test_a_transfer_queued_across_settlement_pays_its_order_on_the_next_date(app, http):
    p = setup_platform(app, http)
    p.advance_to(next_cutoff(p, 23, 50))
    day = p.today()
    p.order("50.00", splits=[(0, "50.00")])  # activity of its own on `day`
    va = p.post("/virtual-accounts", {"label": "late payer"}).json()
    orders = 4
    for i in range(orders):
        response = p.post("/orders", {
            "merchant_order_no": f"VA-{i}", "amount": money("25.00"),
            "payer": {"method": "virtual_account", "virtual_account_id": va["id"],
                      "expires_in_seconds": 2 * 86400},
            "splits": [{"sub_merchant_id": p.merchants[1], "amount": money("25.00")}]})
        assert response.status_code == 201, response.text

    blocker = RowBlocker(p.database, VirtualAccount, va["id"])
    threads, statuses = in_threads([
        (lambda i=i: p.post(f"/virtual-accounts/{va['id']}/simulate-incoming",
                            {"amount": money("25.00"), "remitter_name": "张伟", "memo": f"VA-{i}"},
                            idempotency_key=f"race-transfer-{i}").status_code)
        for i in range(orders)])
    wait_for_lock_waiters(p.database, orders)
    p.advance_to(next_cutoff(p, 0, 5))
    settle_now(p)
    assert settled_through(p) == day
    blocker.release()
    for thread in threads:
        thread.join(30)
    assert all(status in (200, 201) for status in statuses), statuses

    with p.database.transaction() as s:
        paid = list(s.execute(select(Order.status, Order.final_date).where(
            Order.virtual_account_id == va["id"])).all())
    assert len(paid) == orders
    assert all(status == "succeeded" and final > day for status, final in paid), paid

    p.advance_to(next_cutoff(p, 0, 5))
    settle_now(p)
    with p.database.transaction() as s:
        gross = s.scalar(select(func.sum(Settlement.gross_fen)).where(
            Settlement.tenant_id == p.tenant_id, Settlement.sub_merchant_id == p.merchants[1]))
    assert gross == orders * 2500  # every order paid out, in exactly one settlement
    clearing_invariants(p)


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_its_settlement_does_not_stop_the_others(app, http, monkeypatch):
    platforms = [setup_platform(app, http) for _ in range(3)]
    for p in platforms:
        p.advance_to(next_cutoff(p, 10))
        p.order("10.00")
        p.advance_to(next_cutoff(p, 0, 5))
    stuck = sorted(p.tenant_id for p in platforms)[0]  # first in the job's order
    real = settlement.settle_due

    def settle_due(session: Any, tenant_id: str, *args: Any, **kwargs: Any) -> int:
        if tenant_id == stuck:
            raise RuntimeError("collection clearing cannot fund settlement")
        return real(session, tenant_id, *args, **kwargs)

    monkeypatch.setattr(settlement, "settle_due", settle_due)
    assert collection_jobs.settle(app.state.database) > 0
    for p in platforms:
        with p.database.transaction() as s:
            ran = s.scalar(select(func.count()).select_from(SettlementRun).where(
                SettlementRun.tenant_id == p.tenant_id))
        assert ran == (0 if p.tenant_id == stuck else 1), p.tenant_id
    monkeypatch.setattr(settlement, "settle_due", real)
    collection_jobs.settle(app.state.database)  # the stuck tenant settles once it can
    for p in platforms:
        clearing_invariants(p)


@pytest.mark.tolerant_jobs
def test_one_tenant_failing_another_collection_job_does_not_stop_the_others(app, http,
                                                                             monkeypatch):
    """Every collection job serves each tenant on its own, as settlement does: here mandate
    expiry, whose tenants are those with an active mandate (each platform has one)."""
    from products.collection import service

    platforms = [setup_platform(app, http) for _ in range(3)]
    served: list[str] = []
    stuck = sorted(p.tenant_id for p in platforms)[0]  # first in the job's order

    def expire_mandates(session: Any, tenant_id: str, *args: Any, **kwargs: Any) -> int:
        served.append(tenant_id)
        if tenant_id == stuck:
            raise RuntimeError("this tenant's run fails")
        return 1

    monkeypatch.setattr(service, "expire_mandates", expire_mandates)
    assert collection_jobs.expire_mandates(app.state.database) == 2
    assert served == sorted(p.tenant_id for p in platforms)
