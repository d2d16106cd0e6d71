"""The canteen scene (智慧食堂): employers' meal subsidies and diners' personal wallets.

- An employer funds a monthly grant batch: the total moves from its funding account into its
  subsidy pool (an escrow account in its name) and each diner gets a *lot* spendable in that
  month only (Asia/Shanghai).
- A diner tops up a personal wallet from their own account into the platform's wallet pool.
- A meal is a collection order (scene `canteen`, payer method `wallet`): the subsidy lots of the
  current month pay first (oldest grant first), the personal wallet pays the rest; the money
  goes from the pools to the clearing account like any order, and is split and settled.
- A refund goes back where the money came from, unwinding the meal: the personal part first
  (the diner's own money), then the subsidy, to the lot it came from, or, if that lot's month
  has already expired, to the employer (an expired subsidy never becomes spendable again).
- When a month ends (on the tenant's clock) the worker expires its grants: what is left of
  each lot goes back from the subsidy pool to the employer's funding account, and the
  subsidy report shows each diner's use.

Per-diner balances (lots, `personal_balance_fen`) are a sub-ledger of the pool accounts:
the subsidy pool's ledger balance always equals its employer's open lots, and the wallet
pool's equals the sum of personal balances (the property tests check both).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI
from gateway.db import insert_unique, referenced
from gateway.events import publish
from gateway.ids import new_id
from gateway.money import Money
from gateway.pii import mask_name, mask_phone
from products.collection import ledger, repository, schemas, service, views
from products.collection.errors import (
    DinerInactive,
    DinerNotFound,
    DuplicateReference,
    DuplicateUSCC,
    EmployerNotFound,
    GrantMonthClosed,
    GrantNotFound,
    InvalidSplit,
    NoFundingAccount,
    SplitMismatch,
    TopUpNotFound,
)
from products.collection.models import (
    CollectionSettings,
    Diner,
    Employer,
    MealAllocation,
    Order,
    Refund,
    SubsidyGrant,
    SubsidyLot,
    TopUp,
)
from products.collection.states import check_grant


def month_start(month: str) -> datetime:
    """The UTC instant a YYYY-MM month begins in Asia/Shanghai."""
    year, mon = int(month[:4]), int(month[5:7])
    return datetime(year, mon, 1, tzinfo=SHANGHAI)


def next_month(month: str) -> str:
    year, mon = int(month[:4]), int(month[5:7])
    return f"{year + (mon == 12)}-{(mon % 12) + 1:02d}"


# --- employers and diners --------------------------------------------------------------------

def create_employer(session: Session, tenant_id: str, actor: str,
                    body: schemas.EmployerCreate) -> Employer:
    """An employer that funds meal subsidies (its subsidy pool is opened with it)."""
    service.ensure_settings(session, tenant_id)
    ledger.usable_account(session, tenant_id, body.funding_account_id, field="funding_account_id")
    if session.scalar(select(Employer.id).where(Employer.tenant_id == tenant_id,
                                                Employer.uscc == body.uscc)):
        raise DuplicateUSCC(f"An employer with USCC {body.uscc} is already registered.")
    now = service.now_for(session, tenant_id)
    employer_id = new_id("cemp")
    pool = ledger.open_subsidy_pool(session, tenant_id, employer_name=body.name.strip(),
                                    employer_uscc=body.uscc, employer_id=employer_id, at=now)
    row = Employer(id=employer_id, tenant_id=tenant_id, name=body.name.strip(), uscc=body.uscc,
                   funding_account_id=body.funding_account_id, subsidy_pool_account_id=pool,
                   created_by=actor, created_at=now)
    session.add(row)
    session.flush()
    publish(session, tenant_id=tenant_id, type="canteen_employer.created",
            resource_type="canteen_employer", resource_id=row.id,
            data=views.data(views.employer_out(row)), actor=actor, at=now)
    return row


def create_diner(session: Session, tenant_id: str, actor: str, employer_id: str,
                 body: schemas.DinerCreate) -> Diner:
    """A diner of an employer, with empty wallets."""
    employer = repository.get(session, Employer, tenant_id, employer_id, EmployerNotFound)
    if body.funding_account_id is not None:
        ledger.usable_account(session, tenant_id, body.funding_account_id,
                              field="funding_account_id")
    if session.scalar(select(Diner.id).where(Diner.employer_id == employer.id,
                                             Diner.employee_no == body.employee_no)):
        raise DuplicateReference(f"Employee number {body.employee_no} is already registered.")
    now = service.now_for(session, tenant_id)
    name = body.name.strip()
    row = Diner(id=new_id("cdin"), tenant_id=tenant_id, employer_id=employer.id,
                employee_no=body.employee_no, name=name, name_masked=mask_name(name),
                phone=body.phone, phone_masked=mask_phone(body.phone) if body.phone else None,
                funding_account_id=body.funding_account_id, personal_balance_fen=0,
                status="active", created_at=now, updated_at=now)
    insert_unique(session, [row], DuplicateReference(
        f"Employee number {body.employee_no} is already registered."))
    publish(session, tenant_id=tenant_id, type="diner.created", resource_type="diner",
            resource_id=row.id, data=views.data(views.diner_out(row, 0)), actor=actor, at=now)
    return row


def subsidy_balance(session: Session, diner_id: str, month: str) -> int:
    """The diner's spendable subsidy in `month` (its open lots of that month)."""
    lots = session.scalars(select(SubsidyLot).where(
        SubsidyLot.diner_id == diner_id, SubsidyLot.month == month, SubsidyLot.status == "open"))
    return sum(lot.balance_fen for lot in lots)


def diner_view(session: Session, diner: Diner) -> schemas.DinerOut:
    now = service.now_for(session, diner.tenant_id)
    return views.diner_out(diner, subsidy_balance(session, diner.id, service.month_of(now)))


# --- grants and top-ups ----------------------------------------------------------------------------

def create_grant(session: Session, tenant_id: str, actor: str, employer_id: str,
                 body: schemas.GrantCreate) -> SubsidyGrant:
    """Fund a month's subsidies: one transfer of the total into the employer's subsidy pool."""
    employer = repository.get(session, Employer, tenant_id, employer_id, EmployerNotFound)
    now = service.now_for(session, tenant_id)
    current = service.month_of(now)
    if body.month < current:
        raise GrantMonthClosed(f"{body.month} has ended: a grant is for this month or a later one.")
    if session.scalar(select(SubsidyGrant.id).where(SubsidyGrant.employer_id == employer.id,
                                                    SubsidyGrant.reference == body.reference)):
        raise DuplicateReference(f"A grant with reference {body.reference} exists.")
    wanted = [item.diner_id for item in body.items]
    diners = {d.id: d for d in session.scalars(select(Diner).where(
        Diner.tenant_id == tenant_id, Diner.id.in_(wanted)))}
    errors, seen = [], set()
    for i, item in enumerate(body.items):
        diner = diners.get(item.diner_id)
        if item.diner_id in seen:
            errors.append({"field": f"body.items[{i}].diner_id", "message": "appears twice"})
        elif diner is None or diner.employer_id != employer.id:
            errors.append({"field": f"body.items[{i}].diner_id",
                           "message": "not a diner of this employer"})
        elif diner.status != "active":
            errors.append({"field": f"body.items[{i}].diner_id", "message": "diner is inactive"})
        seen.add(item.diner_id)
    if errors:
        raise InvalidSplit("Some grant items are not valid.", errors=errors,
                           code="invalid_grant_items", title="Invalid grant items")
    total = sum(item.amount.fen for item in body.items)
    grant = SubsidyGrant(id=new_id("cgrt"), tenant_id=tenant_id, employer_id=employer.id,
                         reference=body.reference, month=body.month, diner_count=len(body.items),
                         total_fen=total, expired_fen=0, status="funded", journal_ref="",
                         expires_at=month_start(next_month(body.month)), created_by=actor,
                         created_at=now, expired_at=None)
    grant.journal_ref = f"collection:grant:{grant.id}"
    # The grant first: a concurrent grant with the same reference is refused before money moves.
    insert_unique(session, [grant], DuplicateReference(
        f"A grant with reference {body.reference} exists."))
    ledger.move(session, tenant_id, from_account_id=employer.funding_account_id,
                to_account_id=employer.subsidy_pool_account_id, amount_fen=total,
                journal_ref=grant.journal_ref, reference_type="subsidy_grant",
                reference_id=grant.id, purpose="canteen_subsidy", at=now,
                memo=f"餐补 {body.month}")
    session.add_all([SubsidyLot(id=new_id("clot"), tenant_id=tenant_id, grant_id=grant.id,
                                diner_id=item.diner_id, month=body.month,
                                granted_fen=item.amount.fen, spent_fen=0, refunded_fen=0,
                                refunded_after_expiry_fen=0, expired_fen=0, status="open")
                     for item in body.items])
    session.flush()
    publish(session, tenant_id=tenant_id, type="subsidy_grant.funded", resource_type="subsidy_grant",
            resource_id=grant.id, data=views.data(views.grant_out(grant)), actor=actor, at=now)
    return grant


def top_up(session: Session, tenant_id: str, actor: str, diner_id: str,
           body: schemas.TopUpCreate) -> TopUp:
    """Move the diner's own money into their personal wallet; the top-up is kept, so that its
    id (the event's `top_up_id`) can be read back."""
    settings = service.ensure_settings(session, tenant_id)
    diner = repository.get(session, Diner, tenant_id, diner_id, DinerNotFound, lock=True)
    if diner.status != "active":
        raise DinerInactive(f"Diner {diner.id} is {diner.status}.")
    if diner.funding_account_id is None:
        raise NoFundingAccount(f"Diner {diner.id} has no funding account to top up from.")
    now = service.now_for(session, tenant_id)
    top_up_id = new_id("ctop")
    journal_ref = f"collection:top-up:{top_up_id}"
    entry = ledger.move(session, tenant_id, from_account_id=diner.funding_account_id,
                        to_account_id=settings.wallet_pool_account_id, amount_fen=body.amount.fen,
                        journal_ref=journal_ref, reference_type="diner_top_up",
                        reference_id=top_up_id, purpose="wallet_top_up", at=now, memo="餐卡充值")
    diner.personal_balance_fen += body.amount.fen
    diner.updated_at = now
    row = TopUp(id=top_up_id, tenant_id=tenant_id, diner_id=diner.id,
                from_account_id=diner.funding_account_id, amount_fen=body.amount.fen,
                personal_balance_fen=diner.personal_balance_fen, journal_ref=journal_ref,
                journal_entry_id=entry.id, created_by=actor, created_at=now)
    session.add(row)
    session.flush()
    publish(session, tenant_id=tenant_id, type="diner_wallet.topped_up", resource_type="diner",
            resource_id=diner.id,
            data={"top_up_id": top_up_id, "amount": Money.of(body.amount.fen).model_dump(),
                  "diner": views.data(diner_view(session, diner))}, actor=actor, at=now)
    return row


def list_top_ups(session: Session, tenant_id: str, diner_id: str, *, limit: int,
                 cursor: str | None) -> tuple[list[TopUp], str | None]:
    """A page of one of the tenant's diners' top-ups, newest first."""
    diner = repository.get(session, Diner, tenant_id, diner_id, DinerNotFound)
    return repository.page(session, select(TopUp).where(
        TopUp.tenant_id == tenant_id, TopUp.diner_id == diner.id), TopUp.id, limit=limit,
        cursor=cursor)


def get_top_up(session: Session, tenant_id: str, diner_id: str, top_up_id: str) -> TopUp:
    """One top-up of one of the tenant's diners."""
    diner = repository.get(session, Diner, tenant_id, diner_id, DinerNotFound)
    row = session.scalar(select(TopUp).where(TopUp.tenant_id == tenant_id,
                                             TopUp.diner_id == diner.id, TopUp.id == top_up_id))
    if row is None:
        raise TopUpNotFound(f"Diner {diner.id} has no top-up {top_up_id}.")
    return row


# --- meals and their refunds -----------------------------------------------------------------------

def pay_meal(session: Session, tenant_id: str, actor: str, body: schemas.MealCreate) -> Order:
    """A meal: subsidy first, then the personal wallet; an order like any other.

    When the wallets together hold too little, the order is recorded as failed
    (`insufficient_wallet_balance`) and nothing moves.
    """
    settings = service.ensure_settings(session, tenant_id)
    now = service.now_for(session, tenant_id)
    amount = body.amount.fen
    fee = body.platform_fee.fen if body.platform_fee else 0
    if fee >= amount:
        raise SplitMismatch("The platform fee must be less than the meal's amount.",
                            errors=[{"field": "body.platform_fee", "message": "must be less "
                                                                               "than amount"}])
    plan = service.plan_splits(session, tenant_id, amount,
                               [schemas.SplitIn(sub_merchant_id=body.sub_merchant_id,
                                                amount=schemas.MoneyIn(
                                                    amount=Money.of(amount - fee).amount,
                                                    currency="CNY"))], fee)
    diner = repository.get(session, Diner, tenant_id, body.diner_id, DinerNotFound, lock=True)
    if diner.status != "active":
        raise DinerInactive(f"Diner {diner.id} is {diner.status}.")
    employer = referenced(session, Employer, diner.employer_id)
    month = service.month_of(now)
    lots = repository.lock(session, select(SubsidyLot)
                           .join(SubsidyGrant, SubsidyGrant.id == SubsidyLot.grant_id)
                           .where(SubsidyLot.diner_id == diner.id, SubsidyLot.month == month,
                                  SubsidyLot.status == "open")
                           .order_by(SubsidyGrant.created_at, SubsidyGrant.id))
    order, splits = service.open_order(session, settings, actor=actor, now=now,
                                       merchant_order_no=body.merchant_order_no,
                                       amount_fen=amount, scene="canteen", payer_method="wallet",
                                       plan=plan, description=body.description,
                                       diner_id=diner.id)
    subsidy_available = sum(lot.balance_fen for lot in lots)
    from_subsidy = min(amount, subsidy_available)
    from_personal = amount - from_subsidy
    if from_personal > diner.personal_balance_fen:
        service.fail_order(session, settings, order, now, status="failed",
                           code="insufficient_wallet_balance",
                           message=f"Subsidy {Money.of(subsidy_available).amount} and personal "
                                   f"wallet {Money.of(diner.personal_balance_fen).amount} cannot "
                                   f"pay {Money.of(amount).amount}.")
        service.publish_order(session, order, splits, actor, now)
        return order
    left = from_subsidy
    for lot in lots:
        take = min(left, lot.balance_fen)
        if take <= 0:
            continue
        lot.spent_fen += take
        left -= take
        session.add(MealAllocation(order_id=order.id, lot_id=lot.id, tenant_id=tenant_id,
                                   amount_fen=take, refunded_fen=0))
    diner.personal_balance_fen -= from_personal
    diner.updated_at = now
    order.subsidy_fen = from_subsidy
    order.personal_fen = from_personal
    held = service.hold_business_date(session, settings)  # before any account moves
    ledger.post(session, tenant_id, legs={
        employer.subsidy_pool_account_id: -from_subsidy,
        settings.wallet_pool_account_id: -from_personal,
        service.clearing_shard(settings, order.id): amount,
    }, journal_ref=order.journal_ref, reference_type="collection_order", reference_id=order.id,
        purpose="collection", at=now, memo=f"餐费 {order.merchant_order_no}")
    service.succeed_order(session, settings, order, splits, held)
    service.publish_order(session, order, splits, actor, now)
    return order


def refund_meal(session: Session, settings: CollectionSettings, order: Order, refund: Refund,
                now: datetime) -> dict[str, int]:
    """Put a meal refund back where the meal's money came from; returns the ledger credits
    (account -> fen). Personal money first, then each subsidy lot, the last spent first."""
    diner = repository.get(session, Diner, order.tenant_id, order.diner_id or "", DinerNotFound,
                           lock=True)
    employer = referenced(session, Employer, diner.employer_id)
    refunded_personal = int(session.scalar(select(func.coalesce(func.sum(Refund.personal_fen), 0))
                                           .where(Refund.order_id == order.id)) or 0)
    amount = refund.amount_fen
    personal = min(amount, order.personal_fen - refunded_personal)
    diner.personal_balance_fen += personal
    diner.updated_at = now
    rest = amount - personal
    to_pool = to_employer = 0
    # Unwind: the lot spent last (the latest grant) is given back first.
    allocations = repository.lock(session, select(MealAllocation)
                                  .join(SubsidyLot, SubsidyLot.id == MealAllocation.lot_id)
                                  .join(SubsidyGrant, SubsidyGrant.id == SubsidyLot.grant_id)
                                  .where(MealAllocation.order_id == order.id)
                                  .order_by(SubsidyGrant.created_at.desc(),
                                            SubsidyGrant.id.desc()))
    lots = {lot.id: lot for lot in repository.lock(session, select(SubsidyLot).where(
        SubsidyLot.id.in_([a.lot_id for a in allocations])))} if allocations else {}
    for allocation in allocations:
        if rest <= 0:
            break
        back = min(rest, allocation.amount_fen - allocation.refunded_fen)
        if back <= 0:
            continue
        allocation.refunded_fen += back
        lot = lots[allocation.lot_id]
        if lot.status == "open":
            lot.refunded_fen += back
            to_pool += back
        else:
            lot.refunded_after_expiry_fen += back
            to_employer += back
        rest -= back
    if rest:  # pragma: no cover - the order's breakdown always covers its refundable amount
        raise AssertionError("meal refund exceeds the meal's sources")
    refund.personal_fen, refund.subsidy_fen, refund.employer_fen = personal, to_pool, to_employer
    return {settings.wallet_pool_account_id: personal,
            employer.subsidy_pool_account_id: to_pool,
            employer.funding_account_id: to_employer}


# --- the month's end --------------------------------------------------------------------------------

def expire_grants(session: Session, tenant_id: str, now: datetime, actor: str,
                  limit: int = 50) -> int:
    """Expire the tenant's grants whose month has ended: the rest goes back to the employer."""
    ids = list(session.scalars(select(SubsidyGrant.id).where(
        SubsidyGrant.tenant_id == tenant_id, SubsidyGrant.status == "funded",
        SubsidyGrant.expires_at <= now).order_by(SubsidyGrant.expires_at).limit(limit)))
    for grant_id in ids:
        grant = repository.get(session, SubsidyGrant, tenant_id, grant_id, GrantNotFound, lock=True)
        if grant.status != "funded":
            continue
        employer = referenced(session, Employer, grant.employer_id)
        lots = repository.lock(session, select(SubsidyLot).where(SubsidyLot.grant_id == grant.id)
                               .order_by(SubsidyLot.id))
        total = 0
        for lot in lots:
            left = lot.balance_fen
            lot.expired_fen += left
            lot.status = "expired"
            total += left
        if total:
            ledger.move(session, tenant_id, from_account_id=employer.subsidy_pool_account_id,
                        to_account_id=employer.funding_account_id, amount_fen=total,
                        journal_ref=f"collection:grant-expiry:{grant.id}",
                        reference_type="subsidy_grant", reference_id=grant.id,
                        purpose="canteen_subsidy_expiry", at=now, memo=f"餐补到期 {grant.month}")
        check_grant(grant.status, "expired", action="expired")
        grant.status = "expired"
        grant.expired_fen = total
        grant.expired_at = now
        session.flush()
        report = subsidy_report(session, tenant_id, employer.id, grant.month)
        publish(session, tenant_id=tenant_id, type="subsidy_grant.expired",
                resource_type="subsidy_grant", resource_id=grant.id,
                data={"grant": views.data(views.grant_out(grant)),
                      "returned_to_employer": Money.of(total).model_dump(),
                      "report": views.data(report)}, actor=actor, at=now)
    return len(ids)


def subsidy_report(session: Session, tenant_id: str, employer_id: str,
                   month: str) -> schemas.SubsidyReport:
    """Each diner's use of a month's subsidies: granted, spent, refunded, expired."""
    employer = repository.get(session, Employer, tenant_id, employer_id, EmployerNotFound)
    rows = session.execute(
        select(SubsidyLot, Diner.employee_no, Diner.name_masked, SubsidyGrant.status)
        .join(Diner, Diner.id == SubsidyLot.diner_id)
        .join(SubsidyGrant, SubsidyGrant.id == SubsidyLot.grant_id)
        .where(SubsidyGrant.employer_id == employer.id, SubsidyGrant.tenant_id == tenant_id,
               SubsidyLot.month == month)
        .order_by(Diner.employee_no, SubsidyLot.id)).all()
    meals = dict(session.execute(
        select(SubsidyLot.diner_id, func.count(func.distinct(MealAllocation.order_id)))
        .join(MealAllocation, MealAllocation.lot_id == SubsidyLot.id)
        .join(SubsidyGrant, SubsidyGrant.id == SubsidyLot.grant_id)
        .where(SubsidyGrant.employer_id == employer.id, SubsidyLot.month == month)
        .group_by(SubsidyLot.diner_id)).all())
    per: dict[str, _Use] = {}
    statuses = set()
    for lot, employee_no, name, grant_status in rows:
        statuses.add(grant_status)
        use = per.setdefault(lot.diner_id, _Use(employee_no, name))
        use.granted += lot.granted_fen
        use.spent += lot.spent_fen
        use.refunded += lot.refunded_fen
        use.expired += lot.expired_fen
        use.after += lot.refunded_after_expiry_fen
    diners = [schemas.SubsidyReportRow(
        diner_id=diner_id, employee_no=use.employee_no, name=use.name,
        granted=Money.of(use.granted), spent=Money.of(use.spent),
        refunded=Money.of(use.refunded), expired=Money.of(use.expired),
        returned_after_expiry=Money.of(use.after), meal_count=int(meals.get(diner_id, 0)))
        for diner_id, use in per.items()]
    uses = list(per.values())
    return schemas.SubsidyReport(
        employer_id=employer.id, month=month,
        status="expired" if statuses == {"expired"} else "open",
        granted=Money.of(sum(u.granted for u in uses)), spent=Money.of(sum(u.spent for u in uses)),
        refunded=Money.of(sum(u.refunded for u in uses)),
        expired=Money.of(sum(u.expired for u in uses)),
        returned_after_expiry=Money.of(sum(u.after for u in uses)), diners=diners)


@dataclass
class _Use:
    employee_no: str
    name: str
    granted: int = 0
    spent: int = 0
    refunded: int = 0
    expired: int = 0
    after: int = 0


def today_of(now: datetime) -> date:
    return now.astimezone(SHANGHAI).date()
