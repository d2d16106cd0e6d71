"""The park scene (智慧园区): tenants' bills, payment by transfer or mandate, and dunning.

- A park names the sub-merchant paid for its bills (the property company) and its dunning
  rules: reminders some days before the due date, on it and after it, and a late fee of a
  daily rate on the unpaid principal, capped at a fraction of the bill's amount.
- Each park tenant gets a virtual account number. What it transfers in is applied to its open
  bills automatically (products.collection.virtual): the bill named in the memo first, then
  the oldest due first; a bill may be paid in part. Or the tenant pays a bill by mandate.
- Money applied to a bill is a collection order (scene `park`) split entirely to the bill's
  sub-merchant: it goes to the clearing account and is settled like any other. Within a bill,
  money pays the principal first, then the late fee.
- Dunning runs on the tenant's clock (the worker's `collection.dunning` job): late fees accrue
  for each day past the due date (`bill.late_fee_accrued`), the bill turns overdue the day
  after its due date (`bill.overdue`), and reminders go out (`bill.reminder`). After a clock
  jump only the latest reminder that is due is sent, never a stale "due in 3 days" after the
  due date. `bill.paid` when nothing is outstanding.
- A bill payment is refunded like any order (`service.create_refund`: partial, repeated, never
  beyond what it collected, advanced by the bank once settled). The refund reopens what it
  gives back on the bill (`reopen_for_refund`): the payment's late fee part first, then its
  principal (the reverse of how it was applied); a paid bill goes back to open, or overdue
  after its due date; dunning resumes. The days the money was paid cost no late fee: a
  reopened amount accrues from the day after the refund. `bill.payment_refunded`.
- A bill is cancelled while nothing is paid on it, open or overdue (a bill whose payments were
  all refunded is one of these again): its late fee is withdrawn with it, and dunning stops.
  A bill with money paid on it is not cancelled: its payments are refunded first (409
  `bill_partly_paid` names them). A cancelled bill is never paid: not by mandate (409
  `bill_not_payable`), and a transfer naming it is not applied to it; like any transfer
  left unmatched, its money stays the tenant's credit for its other bills.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI
from gateway.db import insert_unique, referenced
from gateway.errors import ValidationFailed
from gateway.events import publish
from gateway.ids import new_id
from gateway.money import Money
from products.collection import ledger, repository, schemas, service, views
from products.collection.errors import (
    BillNotFound,
    BillNotPayable,
    DuplicateReference,
    DuplicateUSCC,
    MandateNotFound,
    ParkNotFound,
    ParkTenantNotFound,
    SubMerchantInactive,
    SubMerchantNotFound,
    VirtualAccountNotFound,
)
from products.collection.models import (
    Bill,
    BillNotice,
    BillPayment,
    CollectionSettings,
    Mandate,
    Order,
    Park,
    ParkTenant,
    SubMerchant,
    VirtualAccount,
)
from products.collection.rules import late_fee_cap, late_fee_for_day, parse_rate
from products.collection.states import BILL_UNPAID, check_bill
from products.collection.virtual import memo_rank, open_virtual_account


def _today(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()


def _active_sub_merchant(session: Session, tenant_id: str, sub_merchant_id: str,
                         field: str) -> SubMerchant:
    row = session.scalars(select(SubMerchant).where(SubMerchant.tenant_id == tenant_id,
                                                    SubMerchant.id == sub_merchant_id)).first()
    if row is None:
        raise SubMerchantNotFound(f"No sub-merchant {sub_merchant_id}.", status=422,
                                  errors=[{"field": f"body.{field}",
                                           "message": "no such sub-merchant"}])
    if row.status != "active":
        raise SubMerchantInactive(f"Sub-merchant {row.id} is {row.status}.")
    return row


def _set_dunning(park: Park, dunning: schemas.DunningIn) -> None:
    park.remind_before_days = sorted(dunning.remind_before_days, reverse=True)
    park.remind_on_due = dunning.remind_on_due
    park.remind_after_days = sorted(dunning.remind_after_days)
    park.late_fee_daily_rate = dunning.late_fee_daily_rate
    park.late_fee_cap_rate = dunning.late_fee_cap_rate


def create_park(session: Session, tenant_id: str, actor: str, body: schemas.ParkCreate) -> Park:
    """A park and its dunning rules."""
    service.ensure_settings(session, tenant_id)
    _active_sub_merchant(session, tenant_id, body.sub_merchant_id, "sub_merchant_id")
    now = service.now_for(session, tenant_id)
    park = Park(id=new_id("cpark"), tenant_id=tenant_id, name=body.name.strip(),
                sub_merchant_id=body.sub_merchant_id, created_by=actor, created_at=now,
                updated_at=now)
    _set_dunning(park, body.dunning)
    session.add(park)
    session.flush()
    publish(session, tenant_id=tenant_id, type="park.created", resource_type="park",
            resource_id=park.id, data=views.data(views.park_out(park)), actor=actor, at=now)
    return park


def update_park(session: Session, tenant_id: str, actor: str, park_id: str,
                body: schemas.ParkUpdate) -> Park:
    """New dunning rules (reminders not yet sent follow the new schedule)."""
    park = repository.get(session, Park, tenant_id, park_id, ParkNotFound, lock=True)
    now = service.now_for(session, tenant_id)
    _set_dunning(park, body.dunning)
    park.updated_at = now
    # Bills re-plan their next dunning date against the new schedule.
    for bill in repository.lock(session, select(Bill).where(Bill.park_id == park.id,
                                                            Bill.status.in_(BILL_UNPAID))):
        # Indexes of the old schedule mean nothing in the new one: what passed before today
        # counts as done, what falls on today or later will be sent.
        bill.last_notice = _last_passed(schedule(park, bill.due_date),
                                        _today(now) - timedelta(days=1), -1)
        bill.dunning_due_on = _next_action(park, bill, _today(now) - timedelta(days=1))
    session.flush()
    publish(session, tenant_id=tenant_id, type="park.updated", resource_type="park",
            resource_id=park.id, data=views.data(views.park_out(park)), actor=actor, at=now)
    return park


def _account_label(name: str, unit: str) -> str:
    """The tenant's virtual account label, "name unit": the name is shortened when both do not
    fit the label's column (the park tenant keeps both whole)."""
    room = VirtualAccount.__table__.c.label.type.length
    if not unit:
        return name[:room]
    return f"{name[:room - len(unit) - 1]} {unit}"


def create_park_tenant(session: Session, tenant_id: str, actor: str, park_id: str,
                       body: schemas.ParkTenantCreate) -> tuple[ParkTenant, VirtualAccount]:
    """A tenant of the park, with its own virtual account number to pay bills to."""
    park = repository.get(session, Park, tenant_id, park_id, ParkNotFound)
    if session.scalar(select(ParkTenant.id).where(ParkTenant.park_id == park.id,
                                                  ParkTenant.uscc == body.uscc)):
        raise DuplicateUSCC(f"A tenant with USCC {body.uscc} is already in this park.")
    settings = service.ensure_settings(session, tenant_id)
    now = service.now_for(session, tenant_id)
    occupant_id = new_id("cptn")
    label = _account_label(body.name.strip(), body.unit.strip())
    account = open_virtual_account(session, settings, actor=actor, now=now, label=label,
                                   owner_type="park_tenant", owner_id=occupant_id)
    occupant = ParkTenant(id=occupant_id, tenant_id=tenant_id, park_id=park.id,
                          name=body.name.strip(), uscc=body.uscc, unit=body.unit,
                          virtual_account_id=account.id, created_at=now)
    insert_unique(session, [occupant], DuplicateUSCC(
        f"A tenant with USCC {body.uscc} is already in this park."))
    publish(session, tenant_id=tenant_id, type="park_tenant.created", resource_type="park_tenant",
            resource_id=occupant.id, data=views.data(views.park_tenant_out(occupant, account)),
            actor=actor, at=now)
    return occupant, account


def park_tenant_view(session: Session, occupant: ParkTenant) -> schemas.ParkTenantOut:
    account = referenced(session, VirtualAccount, occupant.virtual_account_id)
    return views.park_tenant_out(occupant, account)


# --- the dunning schedule ---------------------------------------------------------------

def schedule(park: Park, due: date) -> list[tuple[date, str, int]]:
    """The park's notices for a bill due on `due`: (date, kind, offset days), by date."""
    notices = [(due - timedelta(days=d), "before_due", d) for d in park.remind_before_days]
    if park.remind_on_due:
        notices.append((due, "due", 0))
    notices += [(due + timedelta(days=d), "after_due", d) for d in park.remind_after_days]
    notices.sort(key=lambda n: (n[0], n[1] != "before_due"))
    return notices


def _last_passed(plan: list[tuple[date, str, int]], today: date, current: int) -> int:
    last = -1
    for i, (day, _, _) in enumerate(plan):
        if day <= today:
            last = i
    return max(current, last)


def _rates(park: Park) -> tuple[Decimal, Decimal]:
    return (parse_rate(park.late_fee_daily_rate, maximum=Decimal(1)),
            parse_rate(park.late_fee_cap_rate, maximum=Decimal(1)))


def _next_action(park: Park, bill: Bill, today: date) -> date | None:
    """The next date after `today` on which dunning has work for the bill."""
    if bill.status not in BILL_UNPAID:
        return None
    candidates = [day for i, (day, _, _) in enumerate(schedule(park, bill.due_date))
                  if i > bill.last_notice and day > today]
    if bill.status == "open":
        candidates.append(bill.due_date + timedelta(days=1))
    rate, cap_rate = _rates(park)
    if rate and bill.late_fee_fen < late_fee_cap(bill.amount_fen, cap_rate) \
            and bill.paid_principal_fen < bill.amount_fen:
        candidates.append(max(today, bill.due_date) + timedelta(days=1))
    later = [day for day in candidates if day > today]
    return min(later) if later else None


def accrue_late_fees(park: Park, bill: Bill, today: date) -> int:
    """Charge the late fee of every overdue day up to `today` not yet charged; returns it.

    A day's fee is the daily rate on the principal unpaid that day, rounded half up; the
    total never exceeds the cap (a fraction of the bill's amount).
    """
    if bill.status not in BILL_UNPAID or today <= bill.due_date:
        return 0
    start = max(bill.late_fee_through or bill.due_date, bill.due_date)
    days = (today - start).days
    if days <= 0:
        return 0
    rate, cap_rate = _rates(park)
    per_day = late_fee_for_day(bill.amount_fen - bill.paid_principal_fen, rate)
    room = max(0, late_fee_cap(bill.amount_fen, cap_rate) - bill.late_fee_fen)
    charged = min(room, per_day * days)
    bill.late_fee_fen += charged
    bill.late_fee_through = today
    return charged


def run_dunning(session: Session, tenant_id: str, now: datetime, actor: str,
                limit: int = 200) -> int:
    """Do the day's dunning for the tenant's bills that have something due (the worker's job)."""
    today = _today(now)
    ids = list(session.scalars(select(Bill.id).where(
        Bill.tenant_id == tenant_id, Bill.status.in_(BILL_UNPAID), Bill.dunning_due_on <= today)
        .order_by(Bill.dunning_due_on, Bill.id).limit(limit)))
    for bill_id in ids:
        bill = repository.get(session, Bill, tenant_id, bill_id, BillNotFound, lock=True)
        if bill.status not in BILL_UNPAID:
            continue
        park = referenced(session, Park, bill.park_id)
        dun_bill(session, park, bill, now, actor)
    return len(ids)


def _turn_overdue(bill: Bill, now: datetime) -> bool:
    """open | paid -> overdue; whether for the first time (`bill.overdue` is sent once a bill,
    when it first falls overdue, not again when a refund reopens it)."""
    check_bill(bill.status, "overdue", action="overdue")
    bill.status = "overdue"
    bill.updated_at = now
    first = bill.overdue_at is None
    if first:
        bill.overdue_at = now
    return first


def _publish_overdue(session: Session, bill: Bill, now: datetime, actor: str) -> None:
    publish(session, tenant_id=bill.tenant_id, type="bill.overdue", resource_type="bill",
            resource_id=bill.id, data=views.data(bill_view(session, bill)), actor=actor, at=now)


def dun_bill(session: Session, park: Park, bill: Bill, now: datetime, actor: str) -> None:
    """Bring one unpaid bill up to date: late fees, overdue, the latest reminder due."""
    today = _today(now)
    charged = accrue_late_fees(park, bill, today)
    if bill.status == "open" and today > bill.due_date and _turn_overdue(bill, now):
        session.flush()
        _publish_overdue(session, bill, now, actor)
    if charged:
        bill.updated_at = now
        session.flush()
        publish(session, tenant_id=bill.tenant_id, type="bill.late_fee_accrued",
                resource_type="bill", resource_id=bill.id,
                data={"charged": Money.of(charged).model_dump(), "through": today.isoformat(),
                      "bill": views.data(bill_view(session, bill))}, actor=actor, at=now)
    plan = schedule(park, bill.due_date)
    latest = _last_passed(plan, today, -1)
    if latest > bill.last_notice:
        day, kind, offset = plan[latest]
        stale = (kind == "before_due" and today >= bill.due_date) or (
            kind == "due" and today > bill.due_date)
        bill.last_notice = latest
        if not stale:
            notice = BillNotice(id=new_id("cntc"), tenant_id=bill.tenant_id, bill_id=bill.id,
                                kind=kind, offset_days=offset, notice_date=today,
                                outstanding_fen=bill.outstanding_fen, sent_at=now)
            session.add(notice)
            session.flush()
            publish(session, tenant_id=bill.tenant_id, type="bill.reminder", resource_type="bill",
                    resource_id=bill.id,
                    data={"kind": kind, "offset_days": offset, "scheduled_for": day.isoformat(),
                          "bill": views.data(bill_view(session, bill))}, actor=actor, at=now)
    bill.dunning_due_on = _next_action(park, bill, today)
    session.flush()


# --- bills ----------------------------------------------------------------------------------

def create_bill(session: Session, tenant_id: str, actor: str, park_id: str,
                body: schemas.BillCreate) -> Bill:
    """Bill a park tenant; any credit on its virtual account pays it at once."""
    park = repository.get(session, Park, tenant_id, park_id, ParkNotFound)
    occupant = session.scalars(select(ParkTenant).where(
        ParkTenant.tenant_id == tenant_id, ParkTenant.id == body.park_tenant_id)).first()
    if occupant is None or occupant.park_id != park.id:
        raise ParkTenantNotFound(f"No tenant {body.park_tenant_id} in park {park.id}.", status=422,
                                 errors=[{"field": "body.park_tenant_id",
                                          "message": "no such tenant in this park"}])
    sub_merchant_id = body.sub_merchant_id or park.sub_merchant_id
    _active_sub_merchant(session, tenant_id, sub_merchant_id, "sub_merchant_id")
    if session.scalar(select(Bill.id).where(Bill.tenant_id == tenant_id,
                                            Bill.reference == body.reference)):
        raise DuplicateReference(f"A bill with reference {body.reference} exists.")
    settings = service.ensure_settings(session, tenant_id)
    now = service.now_for(session, tenant_id)
    today = _today(now)
    if body.due_date < today:
        raise ValidationFailed("due_date is in the past.", code="due_date_in_past",
                               errors=[{"field": "body.due_date",
                                        "message": "must be today or later"}])
    bill = Bill(id=new_id("cbill"), tenant_id=tenant_id, park_id=park.id,
                park_tenant_id=occupant.id, sub_merchant_id=sub_merchant_id,
                reference=body.reference, item=body.item, period=body.period,
                description=body.description, amount_fen=body.amount.fen, paid_principal_fen=0,
                late_fee_fen=0, paid_late_fee_fen=0, late_fee_through=None,
                due_date=body.due_date, status="open", created_by=actor, created_at=now,
                updated_at=now, overdue_at=None, paid_at=None, cancelled_at=None)
    # Reminders whose day has passed already are not sent for a new bill.
    bill.last_notice = _last_passed(schedule(park, bill.due_date), today - timedelta(days=1), -1)
    bill.dunning_due_on = _next_action(park, bill, today - timedelta(days=1))
    insert_unique(session, [bill], DuplicateReference(
        f"A bill with reference {body.reference} exists."))
    publish(session, tenant_id=tenant_id, type="bill.created", resource_type="bill",
            resource_id=bill.id, data=views.data(bill_view(session, bill)), actor=actor, at=now)
    account = repository.get(session, VirtualAccount, tenant_id, occupant.virtual_account_id,
                             VirtualAccountNotFound, lock=True)
    from products.collection.virtual import apply_credit

    apply_credit(session, settings, account, now, actor)
    return bill


def _refuse_if_money_paid(session: Session, bill: Bill) -> None:
    """A bill keeps the payments on it: cancelling it would leave money collected for
    nothing. The problem names the orders to refund first (what is left of each)."""
    if not (bill.paid_principal_fen or bill.paid_late_fee_fen):
        return
    orders = session.execute(select(Order.id, Order.amount_fen - Order.refunded_fen).where(
        Order.tenant_id == bill.tenant_id, Order.bill_id == bill.id,
        Order.status == "succeeded", Order.amount_fen > Order.refunded_fen)
        .order_by(Order.created_at, Order.id)).all()
    raise BillNotPayable(
        f"{Money.of(bill.paid_principal_fen + bill.paid_late_fee_fen).amount} CNY has been "
        "paid on this bill: refund its payments first (POST /v1/collection/orders/{order_id}"
        "/refunds), then cancel it.",
        code="bill_partly_paid", title="Money has been paid on the bill",
        extra={"payments_to_refund": [{"order_id": order_id,
                                       "refundable": Money.of(left).model_dump()}
                                      for order_id, left in orders]})


def cancel_bill(session: Session, tenant_id: str, actor: str, bill_id: str) -> Bill:
    """Withdraw a bill nothing is paid on, open or overdue (refund its payments first).

    Dunning stops; the late fee charged so far stays on the bill for the record, owed no more
    (a cancelled bill's outstanding is nothing)."""
    bill = repository.get(session, Bill, tenant_id, bill_id, BillNotFound, lock=True)
    # Money paid is the problem to report first, even on a paid bill (which could not be
    # cancelled anyway): it says what to do about it.
    _refuse_if_money_paid(session, bill)
    check_bill(bill.status, "cancelled", action="cancelled")
    now = service.now_for(session, tenant_id)
    bill.status = "cancelled"
    bill.cancelled_at = now
    bill.updated_at = now
    bill.dunning_due_on = None
    session.flush()
    publish(session, tenant_id=tenant_id, type="bill.cancelled", resource_type="bill",
            resource_id=bill.id, data=views.data(bill_view(session, bill)), actor=actor, at=now)
    return bill


def _record_payment(session: Session, park: Park, bill: Bill, order: Order, source: str,
                    now: datetime, actor: str) -> BillPayment:
    """Apply a succeeded order to the bill: principal first, then the late fee."""
    amount = order.amount_fen
    principal = min(amount, bill.amount_fen - bill.paid_principal_fen)
    late = amount - principal
    payment = BillPayment(id=order.merchant_order_no, tenant_id=bill.tenant_id, bill_id=bill.id,
                          order_id=order.id, incoming_transfer_id=None, source=source,
                          principal_fen=principal, late_fee_fen=late, created_at=now)
    bill.paid_principal_fen += principal
    bill.paid_late_fee_fen += late
    bill.updated_at = now
    session.add(payment)
    paid = bill.outstanding_fen == 0
    if paid:
        check_bill(bill.status, "paid", action="paid")
        bill.status = "paid"
        bill.paid_at = now
        bill.dunning_due_on = None
    else:
        bill.dunning_due_on = _next_action(park, bill, _today(now) - timedelta(days=1))
    session.flush()
    publish(session, tenant_id=bill.tenant_id, type="bill.paid" if paid else "bill.partially_paid",
            resource_type="bill", resource_id=bill.id,
            data={"payment": {"id": payment.id, "order_id": order.id, "source": source,
                              "principal": Money.of(principal).model_dump(),
                              "late_fee": Money.of(late).model_dump()},
                  "bill": views.data(bill_view(session, bill))}, actor=actor, at=now)
    return payment


# --- refunds of bill payments ----------------------------------------------------------------

def lock_bill_of(session: Session, order: Order) -> Bill:
    """The bill a payment order paid, locked. A refund takes it before any ledger account, as
    a payment does (bill, then accounts), so the two never wait on each other in a cycle."""
    return repository.get(session, Bill, order.tenant_id, order.bill_id, BillNotFound, lock=True)


def refunded_parts(payment: BillPayment, refunded_before: int, amount: int) -> tuple[int, int]:
    """(principal, late fee) that a refund of `amount` gives back of a payment already
    refunded `refunded_before`: the reverse of how the payment was applied (principal first,
    then the late fee), so its late fee part first, then its principal; repeated refunds
    retrace the payment in that order."""
    late = (min(refunded_before + amount, payment.late_fee_fen)
            - min(refunded_before, payment.late_fee_fen))
    return amount - late, late


def _stop_late_fees_while_paid(park: Park, bill: Bill, today: date) -> None:
    """Late fees are charged up to today on what was owed before the refund; what the refund
    reopens accrues from tomorrow. A paid bill accrued nothing while paid, and does not now
    for those days: the tenant had paid them (the fair reading of a mistaken payment)."""
    accrue_late_fees(park, bill, today)
    if today > bill.due_date:
        # Never backwards: a day the dunning job already charged is not charged again.
        bill.late_fee_through = max(today, bill.late_fee_through or today)


def _reopen(bill: Bill, now: datetime) -> bool:
    """A paid bill owing again goes back to what its due date says: open up to it, overdue
    after it. Returns whether it fell overdue for the first time (an open or overdue bill
    keeps its status: dunning turns it overdue on its day)."""
    if bill.status != "paid":
        return False
    bill.paid_at = None
    if _today(now) > bill.due_date:
        return _turn_overdue(bill, now)
    check_bill(bill.status, "open", action="reopened")
    bill.status = "open"
    return False


def reopen_for_refund(session: Session, bill: Bill, order: Order, refund_id: str,
                      amount_fen: int, refunded_before: int, now: datetime, actor: str) -> None:
    """A refund of `amount_fen` of bill payment `order` (refunded `refunded_before` until now)
    reopens that amount on the bill (locked by `lock_bill_of`), with `bill.payment_refunded`.
    """
    payment = session.scalars(select(BillPayment).where(BillPayment.order_id == order.id)).one()
    park = referenced(session, Park, bill.park_id)
    today = _today(now)
    _stop_late_fees_while_paid(park, bill, today)
    principal, late = refunded_parts(payment, refunded_before, amount_fen)
    bill.paid_principal_fen -= principal
    bill.paid_late_fee_fen -= late
    bill.updated_at = now
    first_overdue = _reopen(bill, now)
    # Reminders and late fees resume from today, as for a bill paid in part.
    bill.dunning_due_on = _next_action(park, bill, today - timedelta(days=1))
    session.flush()
    publish(session, tenant_id=bill.tenant_id, type="bill.payment_refunded",
            resource_type="bill", resource_id=bill.id,
            data={"refund": {"id": refund_id, "payment_id": payment.id, "order_id": order.id,
                             "amount": Money.of(amount_fen).model_dump(),
                             "principal": Money.of(principal).model_dump(),
                             "late_fee": Money.of(late).model_dump()},
                  "bill": views.data(bill_view(session, bill))}, actor=actor, at=now)
    if first_overdue:
        _publish_overdue(session, bill, now, actor)


def _bill_order(session: Session, settings: CollectionSettings, bill: Bill, amount_fen: int, *,
                actor: str, now: datetime, payer_method: str, mandate_id: str | None = None,
                virtual_account_id: str | None = None) -> tuple[Order, list]:
    payment_id = new_id("cbpay")
    plan = [service.SplitPlan(bill.sub_merchant_id, amount_fen)]
    return service.open_order(session, settings, actor=actor, now=now,
                              merchant_order_no=payment_id, amount_fen=amount_fen, scene="park",
                              payer_method=payer_method, plan=plan,
                              description=f"{bill.item} {bill.period} {bill.reference}"[:140],
                              mandate_id=mandate_id, virtual_account_id=virtual_account_id,
                              bill_id=bill.id)


def apply_to_bills(session: Session, settings: CollectionSettings, account: VirtualAccount,
                   now: datetime, actor: str, *, memo: str | None = None
                   ) -> list[schemas.Application]:
    """Apply a park tenant's credit to its unpaid bills (memo-named first, then oldest due)."""
    applications: list[schemas.Application] = []
    candidates = list(session.scalars(select(Bill).where(
        Bill.tenant_id == account.tenant_id, Bill.park_tenant_id == account.owner_id,
        Bill.status.in_(BILL_UNPAID)).order_by(Bill.due_date, Bill.created_at, Bill.id)))
    candidates.sort(key=lambda b: memo_rank(memo, b.reference, b.id), reverse=True)
    for candidate in candidates:
        if account.unapplied_fen <= 0:
            break
        bill = repository.get(session, Bill, account.tenant_id, candidate.id, BillNotFound,
                              lock=True)
        if bill.status not in BILL_UNPAID:
            continue
        # The bill's late fees and the payment's date by the clock read now, under the
        # settings row's share lock (the dunning job may have moved the bill on meanwhile).
        held = service.hold_business_date(session, settings)
        park = referenced(session, Park, bill.park_id)
        accrue_late_fees(park, bill, _today(held.now))
        pay = min(account.unapplied_fen, bill.outstanding_fen)
        if pay <= 0:
            continue
        order, splits = _bill_order(session, settings, bill, pay, actor=actor, now=now,
                                    payer_method="virtual_account",
                                    virtual_account_id=account.id)
        ledger.move(session, account.tenant_id, from_account_id=account.ledger_account_id,
                    to_account_id=service.clearing_shard(settings, order.id), amount_fen=pay,
                    journal_ref=order.journal_ref, reference_type="collection_order",
                    reference_id=order.id, purpose="collection", at=now,
                    memo=f"园区缴费 {bill.reference}")
        account.unapplied_fen -= pay
        service.succeed_order(session, settings, order, splits, held)
        service.publish_order(session, order, splits, actor, now)
        _record_payment(session, park, bill, order, "virtual_account", now, actor)
        applications.append(schemas.Application(kind="bill", id=bill.id, order_id=order.id,
                                                amount=Money.of(pay)))
    return applications


def pay_bill_by_mandate(session: Session, tenant_id: str, actor: str, bill_id: str,
                        body: schemas.BillPay) -> Order:
    """Pay everything outstanding on a bill (late fee included) by debit mandate."""
    settings = service.ensure_settings(session, tenant_id)
    bill = repository.get(session, Bill, tenant_id, bill_id, BillNotFound, lock=True)
    if bill.status not in BILL_UNPAID:
        raise BillNotPayable(f"Bill {bill.id} is {bill.status}.",
                             extra={"bill_status": bill.status})
    # Read afresh under the bill's lock: the dunning job may have charged later days meanwhile.
    now = service.fresh_now(session, tenant_id)
    park = referenced(session, Park, bill.park_id)
    accrue_late_fees(park, bill, _today(now))
    amount = bill.outstanding_fen
    mandate = repository.get(session, Mandate, tenant_id, body.mandate_id, MandateNotFound,
                             lock=True)
    month = service._reserve_mandate(session, mandate, amount, now, actor)
    order, splits = _bill_order(session, settings, bill, amount, actor=actor, now=now,
                                payer_method="mandate", mandate_id=mandate.id)
    service.debit_by_mandate(session, settings, order, splits, mandate, month, now)
    service.publish_order(session, order, splits, actor, now)
    if order.status == "succeeded":
        _record_payment(session, park, bill, order, "mandate", now, actor)
    return order


def bill_view(session: Session, bill: Bill) -> schemas.BillOut:
    """A bill with its payments and notices, as its GET, its list and its events show it."""
    return bill_views(session, [bill])[0]


def bill_views(session: Session, bills: list[Bill]) -> list[schemas.BillOut]:
    """`bill_view` of each bill, in three statements whatever their number."""
    if not bills:
        return []
    session.flush()  # a payment or notice just added is part of the view
    ids = [b.id for b in bills]
    payments: dict[str, list[BillPayment]] = {i: [] for i in ids}
    for p in session.scalars(select(BillPayment).where(BillPayment.bill_id.in_(ids))
                             .order_by(BillPayment.created_at, BillPayment.id)):
        payments[p.bill_id].append(p)
    notices: dict[str, list[BillNotice]] = {i: [] for i in ids}
    for n in session.scalars(select(BillNotice).where(BillNotice.bill_id.in_(ids))
                             .order_by(BillNotice.sent_at, BillNotice.id)):
        notices[n.bill_id].append(n)
    refunded = dict(session.execute(select(Order.id, Order.refunded_fen).where(
        Order.tenant_id == bills[0].tenant_id, Order.bill_id.in_(ids))).all())
    return [views.bill_out(b, payments[b.id], notices[b.id], refunded) for b in bills]
