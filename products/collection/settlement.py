"""Daily settlement (日终结算): pay each payee its net share of a business date.

For a tenant and a business date D (its window closed at the cut-off on the tenant's clock),
per payee:

    sub-merchant: gross = its shares of orders that succeeded on D
                  fees  = the platform's commission on them, minus commission given back
                  refunded = its shares of refunds made on D (whatever day the order was)
                  net   = gross - fees - refunded + carried in
    platform:     gross = its own shares + all commissions; refunded = its shares of refunds
                  + commissions given back; net = gross - refunded + carried in

The bank advanced the refunds of orders from earlier dates (`service.advanced_by_bank`), so
the payee owes it `advanced` (its part of those refunds: a sub-merchant its share less the
commission given back, the platform that commission and its own share) plus any advance it
could not repay before (a negative carry). The rest of the payee's day is its money in the
clearing account (`held = net + owed`, never negative: a same-date refund is at most the
share it gives back). The run repays the bank first, from `held` (clearing -> settlement
advances, its own journal entry and statement line), then pays what is left, which is the
positive net, from the clearing account to the payee's account (the sub-merchant's settlement
account, the platform's fee account) and publishes `settlement.paid`. What the payee still
owes the bank is carried as a negative net into its next settlement; a positive net that
cannot be paid (no fee account yet, the payee's account refused the credit) is carried too
(`settlement.carried_forward`), and paid on the next run even without activity of its own.
So every payee is paid its own net in full, and never with another's money. Totals come from
indexed GROUP BY queries over the day's rows, so a day of 100,000 orders settles in a few
queries.

Orders and refunds take their date under a share lock of the settings row, with the tenant's
clock read then, and never a settled date (`service.hold_business_date`); `settle_due` locks
the row FOR UPDATE before it reads a day's totals and moves `settled_through`, so it waits for
the events in flight and they for it: each is counted by exactly one settlement. So a day is
settled the moment its cut-off passes: no grace period is needed for transactions still
committing (there was a minute's, from before that lock; in the sandbox it held a settlement
back for up to a minute of real time after the test clock was moved past the cut-off).

Dates without any order or refund are skipped (nothing to pay; carried balances wait for the
payee's next active day). Each (tenant, date) runs once: the settings row is locked while it
runs, the run is recorded, and each payout has its own journal reference, so a crash and re-run
pays exactly once.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.events import publish
from gateway.ids import new_id
from products.accounts.errors import PaymentRefused
from products.collection import ledger, repository, views
from products.collection.models import (
    CollectionSettings,
    Order,
    OrderSplit,
    PayeeBalance,
    Refund,
    RefundSplit,
    Settlement,
    SettlementRun,
    SubMerchant,
)
from products.collection.service import PLATFORM, business_date_of, lock_settings


def last_closed_date(settings: CollectionSettings, now: datetime) -> date:
    """The latest business date whose window has closed at `now` (see the module docstring:
    money still in flight for it holds the settings row, which settlement waits for)."""
    return business_date_of(settings, now) - timedelta(days=1)


def _next_activity(session: Session, tenant_id: str, after: date | None, until: date) -> date | None:
    """The first business date in (after, until] with a succeeded order or a refund."""
    orders = select(func.min(Order.final_date)).where(
        Order.tenant_id == tenant_id, Order.status == "succeeded", Order.final_date <= until)
    refunds = select(func.min(Refund.refund_date)).where(Refund.tenant_id == tenant_id,
                                                        Refund.refund_date <= until)
    if after is not None:
        orders = orders.where(Order.final_date > after)
        refunds = refunds.where(Refund.refund_date > after)
    found = [d for d in (session.scalar(orders), session.scalar(refunds)) if d is not None]
    return min(found) if found else None


def due_date(session: Session, settings: CollectionSettings, now: datetime) -> date | None:
    """The next business date the tenant should settle now, if any."""
    until = last_closed_date(settings, now)
    if settings.settled_through is not None and settings.settled_through >= until:
        return None
    return _next_activity(session, settings.tenant_id, settings.settled_through, until)


class _Payee:
    __slots__ = ("key", "sub_merchant_id", "orders", "refunds", "gross", "fees", "refunded",
                 "advanced")

    def __init__(self, key: str, sub_merchant_id: str | None) -> None:
        self.key = key
        self.sub_merchant_id = sub_merchant_id
        self.orders = self.refunds = 0
        self.gross = self.fees = self.refunded = self.advanced = 0


def _totals(session: Session, tenant_id: str, day: date) -> dict[str, _Payee]:
    payees: dict[str, _Payee] = {}

    def payee(sub_merchant_id: str | None) -> _Payee:
        key = sub_merchant_id or PLATFORM
        if key not in payees:
            payees[key] = _Payee(key, sub_merchant_id)
        return payees[key]

    shares = session.execute(
        select(OrderSplit.sub_merchant_id, func.count(), func.sum(OrderSplit.amount_fen),
               func.sum(OrderSplit.fee_fen))
        .join(Order, Order.id == OrderSplit.order_id)
        .where(Order.tenant_id == tenant_id, Order.final_date == day,
               Order.status == "succeeded")
        .group_by(OrderSplit.sub_merchant_id)).all()
    for sub_merchant_id, count, amount, fee in shares:
        p = payee(sub_merchant_id)
        p.orders += int(count)
        p.gross += int(amount or 0)
        if sub_merchant_id is not None and fee:
            p.fees += int(fee)
            payee(None).gross += int(fee)
    advanced = (Refund.advanced_fen > 0).label("advanced")
    backs = session.execute(
        select(RefundSplit.sub_merchant_id, advanced, func.count(),
               func.sum(RefundSplit.amount_fen), func.sum(RefundSplit.fee_refund_fen))
        .join(Refund, Refund.id == RefundSplit.refund_id)
        .where(Refund.tenant_id == tenant_id, Refund.refund_date == day)
        .group_by(RefundSplit.sub_merchant_id, advanced)).all()
    for sub_merchant_id, by_bank, count, amount, fee_back in backs:
        p = payee(sub_merchant_id)
        p.refunds += int(count)
        p.refunded += int(amount or 0)
        back = int(fee_back or 0) if sub_merchant_id is not None else 0
        if back:
            p.fees -= back
            payee(None).refunded += back
        if by_bank:
            # Each payee owes the bank what the refund took from its net.
            p.advanced += int(amount or 0) - back
            payee(None).advanced += back
    return payees


def _repay_and_pay(session: Session, settings: CollectionSettings, record: Settlement,
                   owed: int, destination: str | None, shards: dict[str, int],
                   now: datetime) -> None:
    """Move the payee's money held in the clearing account (`record.net_fen + owed`): first
    what it owes the bank back to the settlement advances, then the rest to `destination`.
    Sets the record's repaid, paid, carried-out, status and failure fields."""
    tenant_id, day, key = settings.tenant_id, record.settlement_date, record.payee_key
    net = record.net_fen
    repay = min(owed, net + owed)
    if repay > 0:
        advances = ledger.open_advances(session, tenant_id, now)
        _from_clearing(session, settings, record, {advances: repay},
                       f"collection:advance_repayment:{day.isoformat()}:{key}",
                       "advance_repayment", f"垫付偿还 {day.isoformat()}", shards, now)
        record.repaid_fen = repay
        record.paid_date = business_date_of(settings, now)
    record.carried_out_fen = net
    if net <= 0:
        record.status = "nothing" if net == 0 else "carried"
        return
    if destination is None:
        record.failure_code = "no_fee_account"
        return
    journal_ref = f"collection:settlement:{day.isoformat()}:{key}"
    try:
        with session.begin_nested():
            _from_clearing(session, settings, record, {destination: net}, journal_ref,
                           "settlement", f"结算 {day.isoformat()}", shards, now)
    except PaymentRefused as exc:
        record.failure_code = exc.code
        return
    record.status = "paid"
    record.paid_fen = net
    record.carried_out_fen = 0
    record.journal_ref = journal_ref
    record.paid_at = now
    record.paid_date = business_date_of(settings, now)


def _from_clearing(session: Session, settings: CollectionSettings, record: Settlement,
                   credits: dict[str, int], journal_ref: str, purpose: str, memo: str,
                   shards: dict[str, int], now: datetime) -> None:
    entry = ledger.pay_from_clearing(
        session, settings.tenant_id, settings.clearing_account_ids, credits=credits,
        journal_ref=journal_ref, reference_type="collection_settlement", reference_id=record.id,
        purpose=purpose, at=now, memo=memo, balances=shards)
    if entry is None:
        # Every payee's share of the day is in the clearing account (refunds of earlier
        # dates' orders are the bank's), so this is a broken invariant: stop the run (it
        # rolls back and is retried) rather than pay one payee with another's money.
        raise RuntimeError(f"collection clearing of tenant {settings.tenant_id} cannot fund "
                           f"{purpose} {journal_ref}")


def settle_day(session: Session, settings: CollectionSettings, day: date, now: datetime,
               actor: str = "system:collection") -> list[Settlement]:
    """Settle one business date for one tenant (the caller holds the settings row lock)."""
    tenant_id = settings.tenant_id
    if session.get(SettlementRun, (tenant_id, day)) is not None:
        return []
    payees = _totals(session, tenant_id, day)
    # Payees still owed money from an earlier day are paid on the next run, active or not.
    for key in session.scalars(select(PayeeBalance.payee_key).where(
            PayeeBalance.tenant_id == tenant_id, PayeeBalance.carried_fen > 0)):
        if key not in payees:
            payees[key] = _Payee(key, None if key == PLATFORM else key)
    balances = {b.payee_key: b for b in repository.lock(session, select(PayeeBalance).where(
        PayeeBalance.tenant_id == tenant_id, PayeeBalance.payee_key.in_(list(payees))))}
    shards = ledger.shard_balances(session, tenant_id, settings.clearing_account_ids)
    merchants = {m.id: m for m in session.scalars(select(SubMerchant).where(
        SubMerchant.tenant_id == tenant_id,
        SubMerchant.id.in_([p.sub_merchant_id for p in payees.values() if p.sub_merchant_id])))}
    records: list[Settlement] = []
    paid_total = carried_total = 0
    for key in sorted(payees):
        p = payees[key]
        balance = balances.get(key)
        if balance is None:
            balance = PayeeBalance(tenant_id=tenant_id, payee_key=key, carried_fen=0,
                                   updated_at=now)
            session.add(balance)
        carried_in = balance.carried_fen
        net = p.gross - p.fees - p.refunded + carried_in
        if p.sub_merchant_id is not None:
            destination: str | None = merchants[p.sub_merchant_id].settlement_account_id
        else:
            destination = settings.fee_account_id
        record = Settlement(
            id=new_id("cstl"), tenant_id=tenant_id, settlement_date=day,
            payee_type="merchant" if p.sub_merchant_id else "platform",
            sub_merchant_id=p.sub_merchant_id, payee_key=key, order_count=p.orders,
            refund_count=p.refunds, gross_fen=p.gross, fee_fen=p.fees, refunded_fen=p.refunded,
            advanced_fen=p.advanced, repaid_fen=0, carried_in_fen=carried_in, net_fen=net,
            paid_fen=0, carried_out_fen=net, status="carried", failure_code=None,
            destination_account_id=destination, journal_ref=None, created_at=now, paid_at=None,
            paid_date=None)
        # A negative carry is an advance the payee has not repaid yet.
        owed = p.advanced + max(0, -carried_in)
        _repay_and_pay(session, settings, record, owed, destination, shards, now)
        balance.carried_fen = record.carried_out_fen
        balance.updated_at = now
        paid_total += record.paid_fen
        carried_total += record.carried_out_fen
        session.add(record)
        records.append(record)
    session.add(SettlementRun(tenant_id=tenant_id, settlement_date=day, payee_count=len(records),
                              paid_fen=paid_total, carried_fen=carried_total, ran_at=now))
    session.flush()
    for record in records:
        if record.status == "nothing":
            continue
        publish(session, tenant_id=tenant_id,
                type="settlement.paid" if record.paid_fen else "settlement.carried_forward",
                resource_type="settlement", resource_id=record.id,
                data=views.data(views.settlement_out(record)), actor=actor, at=now)
    return records


def settle_due(session: Session, tenant_id: str, now: datetime,
               actor: str = "system:collection") -> int:
    """Settle the tenant's next due business date, if any; returns the payees settled.

    Takes the settings row lock, so two workers never settle the same tenant at once.
    """
    current = session.get(CollectionSettings, tenant_id)
    if current is None or (current.settled_through is not None
                           and current.settled_through >= last_closed_date(current, now)):
        return 0  # the common case, decided without a lock or a write
    settings = lock_settings(session, tenant_id)
    if settings is None:
        return 0  # deleted since it was read (a sandbox reset)
    until = last_closed_date(settings, now)
    day = due_date(session, settings, now)
    if day is None:
        if settings.settled_through is None or settings.settled_through < until:
            settings.settled_through = until
            session.flush()
        return 0
    records = settle_day(session, settings, day, now, actor)
    settings.settled_through = day
    session.flush()
    return max(1, len(records))
