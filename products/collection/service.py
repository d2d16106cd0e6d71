"""Collection's core rules: settings, sub-merchants, debit mandates, orders and refunds.

The scenes (canteen, park) and the virtual-account matcher live in their own modules and
create orders through `open_order` / `succeed_order` here, so that every collected fen is an
order, split among payees, refunded through `create_refund` and settled by `settlement`.

Money (see products.collection.ledger for the accounts):

    order:   payer (mandate account, virtual account, wallets) -> collection clearing
    refund:  collection clearing -> where the money came from (an order of the same date)
             settlement advances -> where the money came from (an order of an earlier date:
             the bank advances it, see `advanced_by_bank`)
    payout:  collection clearing -> the bank's settlement advances (repaying them first), then
             each payee's account (products.collection.settlement)

Services take a Session, flush and never commit, raise domain errors, and read time from the
tenant's clock. Every action publishes an event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import NamedTuple

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.bulk import session_rows, session_select, session_store
from gateway.clock import SHANGHAI
from gateway.db import insert_unique, referenced
from gateway.errors import ValidationFailed, concurrent_update
from gateway.events import publish
from gateway.ids import new_id
from gateway.pii import mask_name
from gateway.tenancy import Tenant, clock_for, is_sandbox, note_facts
from products.accounts import magic
from products.accounts.errors import PROCESSING_FAILED, NameMismatch, PaymentRefused
from products.accounts.reconciliation import accounting_date, parse_cutoff
from products.collection import ledger, repository, schemas, views
from products.collection.errors import (
    ClearingFundsShort,
    DuplicateReference,
    DuplicateUSCC,
    InvalidSplit,
    MandateLimitExceeded,
    MandateNotActive,
    MandateNotFound,
    OrderNotFound,
    OrderNotRefundable,
    RefundExceedsCollected,
    SplitMismatch,
    SubMerchantInactive,
    SubMerchantNotFound,
    VirtualAccountNotFound,
)
from products.collection.models import (
    CollectionSettings,
    Mandate,
    MandateUsage,
    Order,
    OrderSplit,
    Refund,
    RefundSplit,
    SubMerchant,
    VirtualAccount,
)
from products.collection.rules import FeeRule, allocate, fee_refund, parse_rate
from products.collection.states import check_mandate, check_order

PLATFORM = "platform"


def now_for(session: Session, tenant_id: str) -> datetime:
    """The tenant's now (its sandbox test clock, or real time)."""
    return clock_for(session, tenant_id).now()


def fresh_now(session: Session, tenant_id: str) -> datetime:
    """The tenant's now read afresh from its row: the request's own clock (`now_for`) is the
    one its authentication read, which a test clock moved since (while the request waited for
    a lock) leaves behind. The transaction's later `now_for` calls see it too."""
    tenant = session.get(Tenant, tenant_id, populate_existing=True)
    if tenant is not None:
        note_facts(session, tenant)
    return clock_for(session, tenant_id).now()


def month_of(instant: datetime) -> str:
    return instant.astimezone(SHANGHAI).strftime("%Y-%m")


# --- settings ----------------------------------------------------------------------------------

def ensure_settings(session: Session, tenant_id: str) -> CollectionSettings:
    """The tenant's collection settings, set up on first use (clearing account, wallet pool)."""
    row = session.get(CollectionSettings, tenant_id)
    if row is not None:
        return row
    now = now_for(session, tenant_id)
    try:
        with session.begin_nested():
            clearing = ledger.open_clearing(session, tenant_id, now)
            pool = ledger.open_wallet_pool(session, tenant_id, now)
            row = CollectionSettings(tenant_id=tenant_id, clearing_account_id=clearing[0],
                                     clearing_account_ids=clearing,
                                     wallet_pool_account_id=pool, fee_account_id=None,
                                     cutoff="00:00", order_ttl_seconds=1800, settled_through=None,
                                     created_at=now, updated_at=now)
            session.add(row)
            session.flush()
    except IntegrityError:
        # Another request set the tenant up at the same moment: use its rows.
        row = session.get(CollectionSettings, tenant_id, populate_existing=True)
        if row is None:  # pragma: no cover - the winner committed, so the row exists
            raise
    return row


def lock_settings(session: Session, tenant_id: str) -> CollectionSettings | None:
    """The tenant's settings row, locked and read afresh; None when it is gone since it was
    read (a sandbox reset deletes it)."""
    rows = repository.lock(session, select(CollectionSettings).where(
        CollectionSettings.tenant_id == tenant_id))
    return rows[0] if rows else None


class Held(NamedTuple):
    """The instant and business date of a money event settlement counts (`hold_business_date`)."""

    now: datetime
    day: date


def hold_business_date(session: Session, settings: Settings) -> Held:
    """Date a money event that settlement counts (an order succeeding, a refund).

    Holds the tenant's settings row FOR SHARE until the transaction ends: settlement
    (`settlement.settle_due`) locks it FOR UPDATE before it reads a day's totals and moves
    `settled_through`, so it waits for the events in flight, and they for it. Then reads the
    tenant's clock afresh (`fresh_now`: a request's clock is as of its authentication, and a
    test clock may have moved while it waited for its locks) and dates the event
    max(business date of now, settled_through + 1 day): never a date already settled.

    Lock order: take it after the event's own rows (order, bill, splits, diner, lots) and
    before any account moves (settlement holds this row while it moves the clearing and
    payees' accounts). On SQLite writers are serialised (BEGIN IMMEDIATE), the lock clause is
    left out, and the same fresh read and date rule apply.
    """
    tenant_id = settings.tenant_id
    rows = session_select(session, CollectionSettings.__table__, ("settled_through",),
                          "tenant_id = :tenant", {"tenant": tenant_id}, share_lock=True)
    if not rows:
        raise concurrent_update()  # the settings were deleted (a sandbox reset) meanwhile
    settled_through = rows[0][0]
    now = fresh_now(session, tenant_id)
    day = business_date_of(settings, now)
    if settled_through is not None and day <= settled_through:
        day = settled_through + timedelta(days=1)
    return Held(now, day)


@dataclass(frozen=True, slots=True)
class SettingsTerms:
    """What moving money needs of a tenant's collection settings, read on the driver: an
    order's path reads them on every call, and the ORM's read costs several times more."""

    tenant_id: str
    clearing_account_ids: list[str]
    cutoff: str
    order_ttl_seconds: int


Settings = CollectionSettings | SettingsTerms
_SETTINGS_TERMS = ("clearing_account_ids", "cutoff", "order_ttl_seconds")


def settings_terms(session: Session, tenant_id: str) -> SettingsTerms:
    """The tenant's collection settings as `SettingsTerms` (set up on first use)."""
    rows = session_select(session, CollectionSettings.__table__, _SETTINGS_TERMS,
                          "tenant_id = :tenant", {"tenant": tenant_id})
    if rows:
        return SettingsTerms(tenant_id, *rows[0])
    row = ensure_settings(session, tenant_id)
    return SettingsTerms(tenant_id, row.clearing_account_ids, row.cutoff, row.order_ttl_seconds)


def clearing_shard(settings: Settings, key: str) -> str:
    """The clearing shard the money of order `key` goes to (see products.collection.ledger)."""
    return ledger.shard_for(settings.clearing_account_ids, key)


def cutoff_of(settings: Settings) -> time:
    return parse_cutoff(settings.cutoff)


def business_date_of(settings: Settings, instant: datetime) -> date:
    """The settlement date money moving at `instant` belongs to."""
    return accounting_date(instant, cutoff_of(settings))


def update_settings(session: Session, tenant_id: str, actor: str,
                    body: schemas.SettingsUpdate) -> CollectionSettings:
    """Change the cut-off (only before the first order), the platform account or the TTL."""
    ensure_settings(session, tenant_id)
    row = lock_settings(session, tenant_id)
    if row is None:
        raise concurrent_update()
    now = now_for(session, tenant_id)
    if body.cutoff is not None and body.cutoff != row.cutoff:
        used = session.scalar(select(Order.id).where(Order.tenant_id == tenant_id).limit(1))
        if used is not None:
            raise ValidationFailed(
                "The cut-off can only change before the first order: business dates already "
                "given to orders, refunds and settlements would no longer match it.",
                code="cutoff_locked", status=409, title="Cut-off locked")
        row.cutoff = body.cutoff
    if body.fee_account_id is not None:
        ledger.usable_account(session, tenant_id, body.fee_account_id, field="fee_account_id")
        row.fee_account_id = body.fee_account_id
    if body.order_ttl_seconds is not None:
        row.order_ttl_seconds = body.order_ttl_seconds
    row.updated_at = now
    session.flush()
    publish(session, tenant_id=tenant_id, type="collection_settings.updated",
            resource_type="collection_settings", resource_id=tenant_id,
            data=views.data(views.settings_out(row)), actor=actor, at=now)
    return row


# --- sub-merchants -----------------------------------------------------------------------------

def _apply_fee_rule(row: SubMerchant, rule: schemas.FeeRuleIn) -> None:
    row.fee_type = rule.type
    row.fee_rate = rule.rate or "0"
    row.fee_fixed_fen = rule.amount.fen if rule.amount else 0
    row.fee_min_fen = rule.minimum.fen if rule.minimum else 0
    row.fee_max_fen = rule.maximum.fen if rule.maximum else None


class MerchantTerms(NamedTuple):
    """A sub-merchant's status and fee rule, as an order reads them (on the driver)."""

    id: str
    status: str
    fee_type: str
    fee_rate: str
    fee_fixed_fen: int
    fee_min_fen: int
    fee_max_fen: int | None


def fee_rule_of(row: SubMerchant | MerchantTerms) -> FeeRule:
    return FeeRule(type=row.fee_type,
                   rate=parse_rate(row.fee_rate, maximum=Decimal(1)) if row.fee_rate else Decimal(0),
                   fixed_fen=row.fee_fixed_fen, min_fen=row.fee_min_fen, max_fen=row.fee_max_fen)


def create_sub_merchant(session: Session, tenant_id: str, actor: str,
                        body: schemas.SubMerchantCreate) -> SubMerchant:
    """Register a sub-merchant (unique by USCC in the tenant)."""
    ensure_settings(session, tenant_id)
    ledger.usable_account(session, tenant_id, body.settlement_account_id,
                          field="settlement_account_id")
    if session.scalar(select(SubMerchant.id).where(SubMerchant.tenant_id == tenant_id,
                                                   SubMerchant.uscc == body.uscc)):
        raise DuplicateUSCC(f"A sub-merchant with USCC {body.uscc} is already registered.")
    now = now_for(session, tenant_id)
    row = SubMerchant(id=new_id("csm"), tenant_id=tenant_id, name=body.name.strip(),
                      uscc=body.uscc, settlement_account_id=body.settlement_account_id,
                      status="active", created_by=actor, created_at=now, updated_at=now)
    _apply_fee_rule(row, body.fee_rule)
    insert_unique(session, [row], DuplicateUSCC(
        f"A sub-merchant with USCC {body.uscc} is already registered."))
    publish(session, tenant_id=tenant_id, type="sub_merchant.created", resource_type="sub_merchant",
            resource_id=row.id, data=views.data(views.sub_merchant_out(row)), actor=actor, at=now)
    return row


def update_sub_merchant(session: Session, tenant_id: str, actor: str, sub_merchant_id: str,
                        body: schemas.SubMerchantUpdate) -> SubMerchant:
    """Change a sub-merchant's settlement account, fee rule (for new orders) or status."""
    row = repository.get(session, SubMerchant, tenant_id, sub_merchant_id, SubMerchantNotFound,
                         lock=True)
    if body.settlement_account_id is not None:
        ledger.usable_account(session, tenant_id, body.settlement_account_id,
                              field="settlement_account_id")
        row.settlement_account_id = body.settlement_account_id
    if body.fee_rule is not None:
        _apply_fee_rule(row, body.fee_rule)
    if body.status is not None:
        row.status = body.status
    now = now_for(session, tenant_id)
    row.updated_at = now
    session.flush()
    publish(session, tenant_id=tenant_id, type="sub_merchant.updated", resource_type="sub_merchant",
            resource_id=row.id, data=views.data(views.sub_merchant_out(row)), actor=actor, at=now)
    return row


# --- mandates ----------------------------------------------------------------------------------

def create_mandate(session: Session, tenant_id: str, actor: str,
                   body: schemas.MandateCreate) -> Mandate:
    """Record a payer's debit authorization (the platform holds the signed agreement)."""
    now = now_for(session, tenant_id)
    today = now.astimezone(SHANGHAI).date()
    if body.expires_on < today:
        raise ValidationFailed("expires_on is in the past.", code="mandate_expired",
                               errors=[{"field": "body.expires_on",
                                        "message": "must be today or later"}])
    ledger.usable_account(session, tenant_id, body.payer_account_id, field="payer_account_id")
    if session.scalar(select(Mandate.id).where(Mandate.tenant_id == tenant_id,
                                               Mandate.reference == body.reference)):
        raise DuplicateReference(f"A mandate with reference {body.reference} exists.")
    name = body.payer_name.strip()
    row = Mandate(id=new_id("cmd"), tenant_id=tenant_id, reference=body.reference,
                  payer_name=name, payer_name_masked=mask_name(name),
                  payer_account_id=body.payer_account_id,
                  per_debit_limit_fen=body.per_debit_limit.fen,
                  monthly_limit_fen=body.monthly_limit.fen, expires_on=body.expires_on,
                  status="active", signed_at=now, created_by=actor, created_at=now,
                  updated_at=now)
    insert_unique(session, [row], DuplicateReference(
        f"A mandate with reference {body.reference} exists."))
    publish(session, tenant_id=tenant_id, type="debit_mandate.created", resource_type="debit_mandate",
            resource_id=row.id, data=views.data(views.mandate_out(row, 0)), actor=actor, at=now)
    return row


@dataclass(frozen=True, slots=True)
class MandateTerms:
    """What a debit needs of a mandate, read on the driver (see `mandate_terms`)."""

    id: str
    tenant_id: str
    status: str
    payer_account_id: str
    payer_name: str
    per_debit_limit_fen: int
    monthly_limit_fen: int
    expires_on: date


_MANDATE_TERMS = ("id", "tenant_id", "status", "payer_account_id", "payer_name",
                  "per_debit_limit_fen", "monthly_limit_fen", "expires_on")


def mandate_terms(session: Session, tenant_id: str, mandate_id: object) -> MandateTerms:
    """The tenant's mandate's terms, held FOR SHARE until the transaction ends (a revocation,
    which locks it FOR UPDATE, waits for the debits in flight, and they for it), or
    `MandateNotFound`."""
    if not isinstance(mandate_id, str) or not mandate_id or len(mandate_id) > 60:
        raise MandateNotFound(f"No such resource: {str(mandate_id)[:60]!r}.")
    rows = session_select(session, Mandate.__table__, _MANDATE_TERMS,
                          "id = :id AND tenant_id = :tenant",
                          {"id": mandate_id, "tenant": tenant_id}, share_lock=True)
    if not rows:
        raise MandateNotFound(f"No such resource: {mandate_id}.")
    return MandateTerms(*rows[0])


def mandate_used(session: Session, mandate: Mandate | MandateTerms, month: str) -> int:
    value = session.scalar(select(MandateUsage.debited_fen).where(
        MandateUsage.mandate_id == mandate.id, MandateUsage.month == month))
    return int(value or 0)


def _expire_if_due(session: Session, mandate: Mandate | MandateTerms, now: datetime,
                   actor: str) -> Mandate | MandateTerms:
    """The mandate, expired first if its end date has passed (its row then locked and
    changed)."""
    if mandate.status == "active" and now.astimezone(SHANGHAI).date() > mandate.expires_on:
        if isinstance(mandate, MandateTerms):
            mandate = repository.get(session, Mandate, mandate.tenant_id, mandate.id,
                                     MandateNotFound, lock=True)
            if mandate.status != "active":  # changed since the terms were read
                return mandate
        check_mandate(mandate.status, "expired", action="expired")
        mandate.status = "expired"
        mandate.updated_at = now
        session.flush()
        publish(session, tenant_id=mandate.tenant_id, type="debit_mandate.expired",
                resource_type="debit_mandate", resource_id=mandate.id,
                data=views.data(views.mandate_out(mandate, mandate_used(session, mandate,
                                                                        month_of(now)))),
                actor=actor, at=now)
    return mandate


def revoke_mandate(session: Session, tenant_id: str, actor: str, mandate_id: str,
                   body: schemas.MandateRevoke) -> Mandate:
    """End a mandate at once: the payer may always withdraw it; no debit succeeds after."""
    mandate = repository.get(session, Mandate, tenant_id, mandate_id, MandateNotFound, lock=True)
    now = now_for(session, tenant_id)
    _expire_if_due(session, mandate, now, actor)
    check_mandate(mandate.status, "revoked", action="revoked")
    mandate.status = "revoked"
    mandate.revoked_at = now
    mandate.revoked_by = body.requested_by
    mandate.revocation_reason = body.reason or None
    mandate.updated_at = now
    session.flush()
    publish(session, tenant_id=tenant_id, type="debit_mandate.revoked", resource_type="debit_mandate",
            resource_id=mandate.id,
            data=views.data(views.mandate_out(mandate, mandate_used(session, mandate,
                                                                    month_of(now)))),
            actor=actor, at=now)
    return mandate


def expire_mandates(session: Session, tenant_id: str, now: datetime, actor: str,
                    limit: int = 200) -> int:
    """Mark the tenant's active mandates whose expiry date has passed (the worker's job)."""
    today = now.astimezone(SHANGHAI).date()
    ids = list(session.scalars(select(Mandate.id).where(
        Mandate.tenant_id == tenant_id, Mandate.status == "active", Mandate.expires_on < today)
        .limit(limit)))
    for mandate_id in ids:
        mandate = repository.get(session, Mandate, tenant_id, mandate_id, MandateNotFound, lock=True)
        _expire_if_due(session, mandate, now, actor)
    return len(ids)


# Adds a debit to the month's usage only if it stays within the monthly limit: RETURNING
# gives no row when the limit would be passed. The row's lock serializes concurrent debits of
# one mandate.
_RESERVE = (
    "INSERT INTO collection_mandate_usage (mandate_id, month, tenant_id, debited_fen, debit_count)"
    " VALUES (:mandate, :month, :tenant, :amount, 1)"
    " ON CONFLICT (mandate_id, month) DO UPDATE SET"
    " debited_fen = collection_mandate_usage.debited_fen + :amount,"
    " debit_count = collection_mandate_usage.debit_count + 1"
    " WHERE collection_mandate_usage.debited_fen + :amount <= :limit"
    " RETURNING debited_fen")


def _reserve_mandate(session: Session, mandate: Mandate | MandateTerms, amount_fen: int,
                     now: datetime, actor: str) -> str:
    """Check the mandate can pay `amount_fen` now and count it against this month's limit.

    One statement adds the amount to the month's usage only if it stays within the limit; a
    debit that then fails gives it back with `_release_mandate`. Returns the month.
    """
    mandate = _expire_if_due(session, mandate, now, actor)
    if mandate.status != "active":
        raise MandateNotActive(f"Mandate {mandate.id} is {mandate.status}: it cannot be debited.",
                               extra={"mandate_status": mandate.status})
    if amount_fen > mandate.per_debit_limit_fen:
        raise MandateLimitExceeded(
            f"The amount exceeds the mandate's per-debit limit of "
            f"{views.Money.of(mandate.per_debit_limit_fen).amount} CNY.",
            extra={"limit": "per_debit"})
    month = month_of(now)
    if not session_rows(session, _RESERVE, {
            "mandate": mandate.id, "month": month, "tenant": mandate.tenant_id,
            "amount": amount_fen, "limit": mandate.monthly_limit_fen}):
        left = max(0, mandate.monthly_limit_fen - mandate_used(session, mandate, month))
        raise MandateLimitExceeded(
            f"The debit would exceed the mandate's monthly limit; "
            f"{views.Money.of(left).amount} CNY is left this month.",
            extra={"limit": "monthly"})
    return month


def _release_mandate(session: Session, mandate: Mandate | MandateTerms, month: str,
                     amount_fen: int) -> None:
    """Give back a reserved amount whose debit failed."""
    session.execute(update(MandateUsage).where(
        MandateUsage.mandate_id == mandate.id, MandateUsage.month == month).values(
        debited_fen=MandateUsage.debited_fen - amount_fen,
        debit_count=MandateUsage.debit_count - 1))


# --- orders ---------------------------------------------------------------------------------------

@dataclass
class SplitPlan:
    sub_merchant_id: str | None
    amount_fen: int
    rule: FeeRule | None = None


def plan_splits(session: Session, tenant_id: str, amount_fen: int, splits: list[schemas.SplitIn],
                platform_fee_fen: int) -> list[SplitPlan]:
    """Check the splits: known, active, distinct sub-merchants whose shares plus the platform's
    fee sum exactly to the amount. Each plan carries the sub-merchant's fee rule."""
    seen: set[str] = set()
    errors = []
    for i, split in enumerate(splits):
        if split.sub_merchant_id in seen:
            errors.append({"field": f"body.splits[{i}].sub_merchant_id",
                           "message": "a sub-merchant appears once per order"})
        seen.add(split.sub_merchant_id)
    if errors:
        raise InvalidSplit("A sub-merchant appears twice in the splits.", errors=errors)
    wanted = sorted(seen)
    where = f"tenant_id = :tenant AND id IN ({', '.join(f':m{i}' for i in range(len(wanted)))})"
    rows = {row.id: row for row in map(MerchantTerms._make, session_select(
        session, SubMerchant.__table__, MerchantTerms._fields, where,
        {"tenant": tenant_id, **{f"m{i}": ident for i, ident in enumerate(wanted)}}))}
    for i, split in enumerate(splits):
        row = rows.get(split.sub_merchant_id)
        if row is None:
            raise SubMerchantNotFound(f"No sub-merchant {split.sub_merchant_id}.",
                                      status=422, errors=[{
                                          "field": f"body.splits[{i}].sub_merchant_id",
                                          "message": "no such sub-merchant"}])
        if row.status != "active":
            raise SubMerchantInactive(f"Sub-merchant {row.id} is {row.status}.")
    total = sum(s.amount.fen for s in splits) + platform_fee_fen
    if total != amount_fen:
        raise SplitMismatch(
            f"The splits ({views.Money.of(total - platform_fee_fen).amount}) and the platform fee "
            f"({views.Money.of(platform_fee_fen).amount}) sum to {views.Money.of(total).amount}, "
            f"not the amount {views.Money.of(amount_fen).amount}.",
            errors=[{"field": "body.splits", "message": "must sum, with platform_fee, to amount"}])
    plan = [SplitPlan(s.sub_merchant_id, s.amount.fen, fee_rule_of(rows[s.sub_merchant_id]))
            for s in splits]
    if platform_fee_fen:
        plan.append(SplitPlan(None, platform_fee_fen))
    return plan


def new_order(settings: Settings, *, actor: str, now: datetime,
              merchant_order_no: str, amount_fen: int, scene: str, payer_method: str,
              plan: list[SplitPlan], description: str = "", mandate_id: str | None = None,
              virtual_account_id: str | None = None, diner_id: str | None = None,
              bill_id: str | None = None, expires_at: datetime | None = None
              ) -> tuple[Order, list[OrderSplit]]:
    """A pending order and its splits, not yet added to the session."""
    tenant_id = settings.tenant_id
    order_id = new_id("cord")
    order = Order(id=order_id, tenant_id=tenant_id, merchant_order_no=merchant_order_no,
                  scene=scene, payer_method=payer_method, mandate_id=mandate_id,
                  virtual_account_id=virtual_account_id, diner_id=diner_id, bill_id=bill_id,
                  description=description, amount_fen=amount_fen,
                  platform_share_fen=sum(p.amount_fen for p in plan if p.sub_merchant_id is None),
                  commission_fen=0, refunded_fen=0, refund_count=0, subsidy_fen=0,
                  personal_fen=0, status="pending", journal_ref=f"collection:order:{order_id}",
                  created_by=actor, created_at=now, created_date=business_date_of(settings, now),
                  expires_at=expires_at, finalized_at=None, final_date=None)
    splits = [OrderSplit(order_id=order_id, seq=i, tenant_id=tenant_id,
                         sub_merchant_id=p.sub_merchant_id, amount_fen=p.amount_fen, fee_fen=0,
                         fee_rule=p.rule.as_stored() if p.rule else None,
                         refunded_fen=0, fee_refunded_fen=0)
              for i, p in enumerate(plan)]
    return order, splits


def save_order(session: Session, order: Order, splits: list[OrderSplit]) -> None:
    """Insert an order and its splits (on the driver); a merchant_order_no taken meanwhile is a
    409."""
    try:
        session_store(session, [order])
    except IntegrityError as exc:
        # A concurrent request took the number; the request rolls back as this propagates.
        if "merchant_order_no" not in str(exc.orig):
            raise
        raise DuplicateReference(
            f"An order with merchant_order_no {order.merchant_order_no} exists.",
            extra={"merchant_order_no": order.merchant_order_no}) from None
    # The splits refer to the order just stored; nothing reads their INSERT's outcome, so it
    # goes with the transaction's next statement (`gateway.deferred`).
    session_store(session, splits, flush=False, later=True)


def open_order(session: Session, settings: Settings, **kwargs: object
               ) -> tuple[Order, list[OrderSplit]]:
    """Write a pending order and its splits (the caller moves the money and finalizes it)."""
    order, splits = new_order(settings, **kwargs)  # type: ignore[arg-type]
    save_order(session, order, splits)
    return order, splits


def _split_rules(session: Session, splits: list[OrderSplit]) -> dict[str, FeeRule]:
    """Each sub-merchant's fee rule for an order's splits: the one kept on the split when the
    order was created (a later rule change applies only to later orders), else the rule in
    force now (see `OrderSplit.fee_rule`)."""
    rules = {s.sub_merchant_id: FeeRule.from_stored(s.fee_rule)
             for s in splits if s.sub_merchant_id and s.fee_rule is not None}
    missing = [s.sub_merchant_id for s in splits if s.sub_merchant_id and s.fee_rule is None]
    if missing:
        rules.update({row.id: fee_rule_of(row) for row in session.scalars(
            select(SubMerchant).where(SubMerchant.id.in_(missing)))})
    return rules


def succeed_order(session: Session, settings: Settings, order: Order,
                  splits: list[OrderSplit], held: Held) -> None:
    """pending -> succeeded: fix the commissions by each sub-merchant's fee rule of the
    order's creation (`_split_rules`). `held` is the business time the caller took with
    `hold_business_date` before it moved the money."""
    now = held.now
    check_order(order.status, "succeeded", action="paid")
    rules = _split_rules(session, splits)
    commission = 0
    for split in splits:
        if split.sub_merchant_id:
            split.fee_fen = rules[split.sub_merchant_id].fee_for(split.amount_fen)
            commission += split.fee_fen
    order.commission_fen = commission
    order.status = "succeeded"
    order.finalized_at = now
    order.final_date = held.day
    order.failure_code = order.failure_message = None


def fail_order(session: Session, settings: Settings, order: Order, now: datetime, *,
               status: str, code: str, message: str) -> None:
    """pending -> failed | expired (nothing moved)."""
    check_order(order.status, status, action=status)
    order.status = status
    order.failure_code = code[:40]
    order.failure_message = message[:200]
    order.finalized_at = now
    order.final_date = business_date_of(settings, now)


def order_splits(session: Session, order_id: str) -> list[OrderSplit]:
    return list(session.scalars(select(OrderSplit).where(OrderSplit.order_id == order_id)
                                .order_by(OrderSplit.seq)))


def order_view(session: Session, order: Order, splits: list[OrderSplit] | None = None
               ) -> schemas.OrderOut:
    number = None
    if order.virtual_account_id:
        number = session.scalar(select(VirtualAccount.account_number).where(
            VirtualAccount.id == order.virtual_account_id))
    return views.order_out(order, splits if splits is not None else order_splits(session, order.id),
                           number)


def order_views(session: Session, orders: list[Order]) -> list[schemas.OrderOut]:
    """Views of a page of orders with two queries (splits, virtual account numbers)."""
    ids = [o.id for o in orders]
    splits: dict[str, list[OrderSplit]] = {i: [] for i in ids}
    if ids:
        for split in session.scalars(select(OrderSplit).where(OrderSplit.order_id.in_(ids))):
            splits[split.order_id].append(split)
    accounts = {o.virtual_account_id for o in orders if o.virtual_account_id}
    numbers = dict(session.execute(select(VirtualAccount.id, VirtualAccount.account_number)
                                   .where(VirtualAccount.id.in_(accounts))).all()) if accounts else {}
    return [views.order_out(o, splits[o.id], numbers.get(o.virtual_account_id or ""))
            for o in orders]


def publish_order(session: Session, order: Order, splits: list[OrderSplit], actor: str,
                  now: datetime) -> None:
    kind = {"pending": "created"}.get(order.status, order.status)
    publish(session, tenant_id=order.tenant_id, type=f"collection_order.{kind}",
            resource_type="collection_order", resource_id=order.id,
            data=views.data(order_view(session, order, splits)), actor=actor, at=now)


def create_order(session: Session, tenant_id: str, actor: str,
                 body: schemas.OrderCreate) -> tuple[Order, list[OrderSplit]]:
    """Collect money from a payer into the clearing account, split among sub-merchants.

    By mandate: debited at once (succeeded, or failed when the payer's bank refuses). By
    virtual account: pending until the payer's transfer arrives (or its credit pays it), then
    succeeded; expired after `expires_at`. Rule violations (unknown sub-merchant, splits that
    do not sum, a revoked mandate, a limit) are problems and create nothing.
    """
    settings = settings_terms(session, tenant_id)
    now = now_for(session, tenant_id)
    amount = body.amount.fen
    plan = plan_splits(session, tenant_id, amount, body.splits,
                       body.platform_fee.fen if body.platform_fee else 0)
    payer = body.payer
    if isinstance(payer, schemas.MandatePayer):
        mandate = mandate_terms(session, tenant_id, payer.mandate_id)
        month = _reserve_mandate(session, mandate, amount, now, actor)
        # Written once, after the money moved (or was refused): one INSERT, no UPDATE.
        order, splits = new_order(settings, actor=actor, now=now,
                                  merchant_order_no=body.merchant_order_no, amount_fen=amount,
                                  scene="general", payer_method="mandate", plan=plan,
                                  description=body.description, mandate_id=mandate.id)
        debit_by_mandate(session, settings, order, splits, mandate, month, now)
        save_order(session, order, splits)
        publish_order(session, order, splits, actor, now)
        return order, splits
    from products.collection import virtual

    account = repository.get(session, VirtualAccount, tenant_id, payer.virtual_account_id,
                             VirtualAccountNotFound, lock=True)
    virtual.check_payer_account(account)
    ttl = payer.expires_in_seconds or settings.order_ttl_seconds
    order, splits = open_order(session, settings, actor=actor, now=now,
                               merchant_order_no=body.merchant_order_no, amount_fen=amount,
                               scene="general", payer_method="virtual_account", plan=plan,
                               description=body.description, virtual_account_id=account.id,
                               expires_at=now + timedelta(seconds=ttl))
    publish_order(session, order, splits, actor, now)
    virtual.apply_credit(session, settings, account, now, actor)
    return order, splits


def debit_by_mandate(session: Session, settings: Settings, order: Order,
                     splits: list[OrderSplit], mandate: Mandate | MandateTerms, month: str,
                     now: datetime) -> None:
    """Debit the payer's account for a pending order under a reserved mandate.

    In the sandbox the magic values apply as they do to a transfer (`products.accounts.magic`,
    in the same order): a refusing magic amount fails the order; then a mandate whose payer
    name is the magic name (户名不符, or containing MISMATCH) fails the bank's name check
    (`name_mismatch`); then 4040.05 leaves the order pending, and `expire_orders` fails it
    `magic.PENDING_FAILS_AFTER` later with the code its amount names (`pending_failure_code`).
    A pending order shows no failure code until it has failed."""
    tenant_id = order.tenant_id
    if is_sandbox(session, tenant_id):
        forced = magic.magic_amount(order.amount_fen)
        if forced is not None and forced.outcome == "failed":
            _release_mandate(session, mandate, month, order.amount_fen)
            fail_order(session, settings, order, now, status="failed", code=forced.failure_code,
                       message=f"Sandbox magic amount {forced.amount}: {forced.description}")
            return
        if magic.forces_name_mismatch(mandate.payer_name):
            _release_mandate(session, mandate, month, order.amount_fen)
            fail_order(session, settings, order, now, status="failed", code=NameMismatch.code,
                       message="The payer's name does not match the account (sandbox magic "
                               "name).")
            return
        if forced is not None:
            _release_mandate(session, mandate, month, order.amount_fen)
            order.expires_at = now + magic.PENDING_FAILS_AFTER
            return
    held = hold_business_date(session, settings)
    try:
        ledger.move(session, tenant_id, from_account_id=mandate.payer_account_id,
                    to_account_id=clearing_shard(settings, order.id),
                    amount_fen=order.amount_fen, journal_ref=order.journal_ref,
                    reference_type="collection_order", reference_id=order.id,
                    purpose="collection", at=now, memo=f"代扣 {order.merchant_order_no}")
    except PaymentRefused as exc:
        _release_mandate(session, mandate, month, order.amount_fen)
        fail_order(session, settings, order, now, status="failed", code=exc.code,
                   message=exc.detail or exc.title)
        return
    succeed_order(session, settings, order, splits, held)


def pending_failure_code(order: Order) -> str:
    """What a sandbox mandate debit held pending fails with: the code its magic amount names
    (kept by the amount itself, as a pending transfer's is), so the order shows none while it
    is pending."""
    forced = magic.magic_amount(order.amount_fen)
    return forced.failure_code if forced is not None else PROCESSING_FAILED


def expire_orders(session: Session, tenant_id: str, now: datetime, actor: str,
                  limit: int = 200) -> int:
    """Pending orders past `expires_at`: virtual-account orders expire; a sandbox mandate
    debit held pending by the magic amount fails."""
    settings = ensure_settings(session, tenant_id)
    ids = list(session.scalars(select(Order.id).where(
        Order.tenant_id == tenant_id, Order.status == "pending", Order.expires_at <= now)
        .order_by(Order.expires_at).limit(limit)))
    for order_id in ids:
        order = repository.get(session, Order, tenant_id, order_id, OrderNotFound, lock=True)
        if order.status != "pending" or order.expires_at is None or order.expires_at > now:
            continue
        if order.payer_method == "mandate":
            fail_order(session, settings, order, now, status="failed",
                       code=pending_failure_code(order),
                       message="The payer's bank did not complete the debit.")
        else:
            # It closed when it expired, whenever the job noticed.
            fail_order(session, settings, order, order.expires_at, status="expired",
                       code="expired", message="No transfer paid the order before it expired.")
        publish_order(session, order, order_splits(session, order.id), actor, now)
    return len(ids)


# --- refunds ------------------------------------------------------------------------------------------

def _refund_plan(order: Order, splits: list[OrderSplit], body: schemas.RefundCreate
                 ) -> list[int]:
    """How much of the refund each split gives back (same order as `splits`)."""
    remaining = [s.amount_fen - s.refunded_fen for s in splits]
    amount = body.amount.fen
    if body.splits is None:
        return allocate(amount, remaining)
    parts = [0] * len(splits)
    index = {s.sub_merchant_id: i for i, s in enumerate(splits)}
    errors = []
    for i, wanted in enumerate(body.splits):
        j = index.get(wanted.sub_merchant_id)
        if j is None:
            errors.append({"field": f"body.splits[{i}].sub_merchant_id",
                           "message": "not a payee of this order"})
            continue
        if parts[j]:
            errors.append({"field": f"body.splits[{i}].sub_merchant_id",
                           "message": "appears twice"})
            continue
        if wanted.amount.fen > remaining[j]:
            errors.append({"field": f"body.splits[{i}].amount",
                           "message": f"only {views.Money.of(remaining[j]).amount} is left to "
                                      "refund from this share"})
            continue
        parts[j] = wanted.amount.fen
    if errors:
        raise InvalidSplit("The refund's splits do not fit the order.", errors=errors)
    if sum(parts) != amount:
        raise SplitMismatch("The refund's splits must sum to its amount.",
                            errors=[{"field": "body.splits", "message": "must sum to amount"}])
    return parts


def advanced_by_bank(order: Order, refund_date: date) -> bool:
    """Whether the bank advances a refund of `order` made on `refund_date`.

    A refund counts in the settlement of its own date, the order in its own date's: for an
    order of an earlier date, that settlement pays (or has paid) its shares out before the
    refund's date settles, so its money is not the clearing account's to give back, and
    taking it from there would pay the refund with other payees' money.
    """
    return order.final_date is not None and order.final_date < refund_date


def _pay_refund(session: Session, settings: CollectionSettings, order: Order, refund: Refund,
                credits: dict[str, int], now: datetime) -> None:
    """Pay the refund's `credits` (account -> fen) from the clearing account, or from the
    bank's settlement advances (`refund.advanced_fen`, repaid by the payees' settlement)."""
    memo = f"退款 {order.merchant_order_no}"
    if advanced_by_bank(order, refund.refund_date):
        advances = ledger.open_advances(session, order.tenant_id, now)
        ledger.post(session, order.tenant_id, legs={advances: -refund.amount_fen, **credits},
                    journal_ref=refund.journal_ref, reference_type="collection_refund",
                    reference_id=refund.id, purpose="collection_refund", at=now, memo=memo)
        refund.advanced_fen = refund.amount_fen
        return
    paid = ledger.pay_from_clearing(
        session, order.tenant_id, settings.clearing_account_ids, credits=credits,
        journal_ref=refund.journal_ref, reference_type="collection_refund",
        reference_id=refund.id, purpose="collection_refund", at=now, memo=memo,
        prefer=clearing_shard(settings, order.id))
    if paid is None:  # pragma: no cover - an order of this date's money is still there
        raise ClearingFundsShort(
            "The clearing account holds too little right now to pay this refund. Try again "
            "later.")


def create_refund(session: Session, tenant_id: str, actor: str, order_id: str,
                  body: schemas.RefundCreate) -> Refund:
    """Give back part or all of what is left of a succeeded order, at once.

    The money goes back where it came from (the mandate's account; the remitter's bank for a
    virtual-account payment; the diner's wallets for a meal), paid from the clearing account,
    or advanced by the bank for an order of an earlier date (`advanced_by_bank`): the payees
    repay the advance from their next settlement (their balance may go negative and is
    carried until they do). Refunds never exceed what was collected (checked under the
    order's row lock). A bill payment's refund reopens its amount on the bill
    (`park.reopen_for_refund`).
    """
    settings = ensure_settings(session, tenant_id)
    order = repository.get(session, Order, tenant_id, order_id, OrderNotFound, lock=True)
    now = now_for(session, tenant_id)
    if order.status != "succeeded":
        raise OrderNotRefundable(f"Order {order.id} is {order.status}: only a succeeded order "
                                 "can be refunded.", extra={"order_status": order.status})
    amount = body.amount.fen
    refunded_before = order.refunded_fen
    left = order.amount_fen - refunded_before
    if amount > left:
        raise RefundExceedsCollected(
            f"Only {views.Money.of(left).amount} CNY of order {order.id} is left to refund.",
            extra={"refundable": views.Money.of(left).model_dump()})
    bill = None
    if order.bill_id is not None:
        from products.collection import park

        bill = park.lock_bill_of(session, order)
    refund_id = new_id("crf")
    reference = body.refund_reference or refund_id
    if session.scalar(select(Refund.id).where(Refund.tenant_id == tenant_id,
                                              Refund.refund_reference == reference)):
        raise DuplicateReference(f"A refund with reference {reference} exists.")
    splits = repository.lock(session, select(OrderSplit).where(OrderSplit.order_id == order.id)
                             .order_by(OrderSplit.seq))
    parts = _refund_plan(order, splits, body)
    # Dated under the settings row's share lock with the clock read now, not as of the
    # request's arrival: a refund that waited for the order's lock while its date settled
    # belongs to the next date (`hold_business_date`).
    held = hold_business_date(session, settings)
    now = held.now
    refund = Refund(id=refund_id, tenant_id=tenant_id, order_id=order.id,
                    refund_reference=reference, amount_fen=amount, reason=body.reason,
                    status="succeeded", subsidy_fen=0, personal_fen=0, employer_fen=0,
                    advanced_fen=0, destination_account_id="", journal_ref=f"collection:refund:{refund_id}",
                    created_by=actor, created_at=now,
                    refund_date=held.day)
    legs: dict[str, int] = {}
    if order.payer_method == "mandate":
        mandate = referenced(session, Mandate, order.mandate_id)
        legs[mandate.payer_account_id] = amount
        refund.destination_account_id = mandate.payer_account_id
    elif order.payer_method == "virtual_account":
        destination = ledger.bank_clearing(session, tenant_id)
        legs[destination] = amount
        refund.destination_account_id = destination
    else:
        from products.collection import canteen

        for account_id, fen in canteen.refund_meal(session, settings, order, refund, now).items():
            legs[account_id] = legs.get(account_id, 0) + fen
        refund.destination_account_id = settings.wallet_pool_account_id
    _pay_refund(session, settings, order, refund,
                {account_id: fen for account_id, fen in legs.items() if fen}, now)
    refund_splits = []
    for i, (split, part) in enumerate(zip(splits, parts, strict=True)):
        if not part:
            continue
        back = fee_refund(split.fee_fen, split.amount_fen, split.refunded_fen, part,
                          split.fee_refunded_fen)
        split.refunded_fen += part
        split.fee_refunded_fen += back
        refund_splits.append(RefundSplit(refund_id=refund.id, seq=i, tenant_id=tenant_id,
                                         sub_merchant_id=split.sub_merchant_id, amount_fen=part,
                                         fee_refund_fen=back))
    order.refunded_fen += amount
    order.refund_count += 1
    insert_unique(session, [refund, *refund_splits], DuplicateReference(
        f"A refund with reference {reference} exists."))
    publish(session, tenant_id=tenant_id, type="collection_refund.succeeded",
            resource_type="collection_refund", resource_id=refund.id,
            data=views.data(views.refund_out(refund, refund_splits, order.scene)), actor=actor,
            at=now)
    if bill is not None:
        park.reopen_for_refund(session, bill, order, refund.id, amount, refunded_before, now,
                               actor)
    return refund


def refund_splits_of(session: Session, refund_id: str) -> list[RefundSplit]:
    return list(session.scalars(select(RefundSplit).where(RefundSplit.refund_id == refund_id)
                                .order_by(RefundSplit.seq)))


def refund_view(session: Session, refund: Refund) -> schemas.RefundOut:
    scene = session.scalar(select(Order.scene).where(Order.id == refund.order_id)) or "general"
    return views.refund_out(refund, refund_splits_of(session, refund.id), scene)


def order_count(session: Session, tenant_id: str) -> int:
    return int(session.scalar(select(func.count()).select_from(Order)
                              .where(Order.tenant_id == tenant_id)) or 0)
