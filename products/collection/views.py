"""Public representations of collection rows: API responses and events' data.

One function per resource, used by the routers and by `gateway.events.publish`, so a webhook
carries exactly what a GET returns. Personal data leaves only masked.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from gateway.clock import to_rfc3339
from gateway.money import Money
from products.collection import schemas
from products.collection.models import (
    Bill,
    BillNotice,
    BillPayment,
    CollectionSettings,
    Diner,
    Employer,
    IncomingTransfer,
    Mandate,
    Order,
    OrderSplit,
    Park,
    ParkTenant,
    Refund,
    RefundSplit,
    Settlement,
    SubMerchant,
    SubsidyGrant,
    TopUp,
    VirtualAccount,
)
from products.collection.rules import format_rate


def _ts(value: datetime | None) -> str | None:
    return to_rfc3339(value) if value is not None else None


def settings_out(row: CollectionSettings) -> schemas.SettingsOut:
    return schemas.SettingsOut(
        clearing_account_id=row.clearing_account_id,
        clearing_account_ids=list(row.clearing_account_ids),
        wallet_pool_account_id=row.wallet_pool_account_id, fee_account_id=row.fee_account_id,
        cutoff=row.cutoff, order_ttl_seconds=row.order_ttl_seconds,
        settled_through=row.settled_through, updated_at=to_rfc3339(row.updated_at))


def fee_rule_out(row: SubMerchant) -> schemas.FeeRuleOut:
    if row.fee_type == "percentage":
        return schemas.FeeRuleOut(type="percentage", rate=format_rate(Decimal(row.fee_rate)),
                                  minimum=Money.of(row.fee_min_fen),
                                  maximum=Money.of(row.fee_max_fen)
                                  if row.fee_max_fen is not None else None)
    if row.fee_type == "fixed":
        return schemas.FeeRuleOut(type="fixed", amount=Money.of(row.fee_fixed_fen))
    return schemas.FeeRuleOut(type="none")


def sub_merchant_out(row: SubMerchant) -> schemas.SubMerchantOut:
    return schemas.SubMerchantOut(
        id=row.id, name=row.name, uscc=row.uscc, settlement_account_id=row.settlement_account_id,
        fee_rule=fee_rule_out(row), status=row.status, created_at=to_rfc3339(row.created_at),
        updated_at=to_rfc3339(row.updated_at))


def mandate_out(row: Mandate, debited_this_month_fen: int) -> schemas.MandateOut:
    return schemas.MandateOut(
        id=row.id, reference=row.reference, payer_name=row.payer_name_masked,
        payer_account_id=row.payer_account_id, per_debit_limit=Money.of(row.per_debit_limit_fen),
        monthly_limit=Money.of(row.monthly_limit_fen),
        debited_this_month=Money.of(debited_this_month_fen),
        remaining_this_month=Money.of(max(0, row.monthly_limit_fen - debited_this_month_fen)),
        expires_on=row.expires_on, status=row.status, signed_at=to_rfc3339(row.signed_at),
        revoked_at=_ts(row.revoked_at), revoked_by=row.revoked_by,
        revocation_reason=row.revocation_reason)


def virtual_account_out(row: VirtualAccount) -> schemas.VirtualAccountOut:
    return schemas.VirtualAccountOut(
        id=row.id, account_number=row.account_number, ledger_account_id=row.ledger_account_id,
        label=row.label, owner_type=row.owner_type, owner_id=row.owner_id,
        unapplied=Money.of(row.unapplied_fen), status=row.status,
        created_at=to_rfc3339(row.created_at))


def incoming_out(row: IncomingTransfer,
                 applications: list[schemas.Application] | None = None) -> schemas.IncomingTransferOut:
    return schemas.IncomingTransferOut(
        id=row.id, virtual_account_id=row.virtual_account_id, amount=Money.of(row.amount_fen),
        applied=Money.of(row.applied_fen), status=row.status,
        remitter_name=row.remitter_name_masked, remitter_account=row.remitter_account_masked,
        memo=row.memo, received_at=to_rfc3339(row.received_at), applications=applications or [])


def split_out(row: OrderSplit) -> schemas.SplitOut:
    return schemas.SplitOut(sub_merchant_id=row.sub_merchant_id, amount=Money.of(row.amount_fen),
                            fee=Money.of(row.fee_fen), refunded=Money.of(row.refunded_fen))


def order_out(row: Order, splits: list[OrderSplit],
              virtual_account_number: str | None = None) -> schemas.OrderOut:
    canteen = row.scene == "canteen"
    return schemas.OrderOut(
        id=row.id, merchant_order_no=row.merchant_order_no, scene=row.scene, status=row.status,
        amount=Money.of(row.amount_fen), refunded=Money.of(row.refunded_fen),
        refundable=Money.of(row.amount_fen - row.refunded_fen
                            if row.status == "succeeded" else 0),
        payer_method=row.payer_method, mandate_id=row.mandate_id,
        virtual_account_id=row.virtual_account_id, virtual_account_number=virtual_account_number,
        diner_id=row.diner_id, bill_id=row.bill_id,
        subsidy_paid=Money.of(row.subsidy_fen) if canteen else None,
        personal_paid=Money.of(row.personal_fen) if canteen else None,
        splits=[split_out(s) for s in sorted(splits, key=lambda s: s.seq)],
        description=row.description, failure_code=row.failure_code,
        failure_message=row.failure_message, created_at=to_rfc3339(row.created_at),
        expires_at=_ts(row.expires_at), finalized_at=_ts(row.finalized_at),
        business_date=row.final_date if row.status == "succeeded" else None)


def refund_out(row: Refund, splits: list[RefundSplit], scene: str) -> schemas.RefundOut:
    canteen = scene == "canteen"
    return schemas.RefundOut(
        id=row.id, order_id=row.order_id, refund_reference=row.refund_reference,
        status=row.status, amount=Money.of(row.amount_fen),
        advanced=Money.of(row.advanced_fen), reason=row.reason,
        splits=[schemas.RefundSplitOut(sub_merchant_id=s.sub_merchant_id,
                                       amount=Money.of(s.amount_fen),
                                       fee_refund=Money.of(s.fee_refund_fen))
                for s in sorted(splits, key=lambda s: s.seq)],
        to_subsidy=Money.of(row.subsidy_fen) if canteen else None,
        to_personal_wallet=Money.of(row.personal_fen) if canteen else None,
        to_employer=Money.of(row.employer_fen) if canteen else None,
        created_at=to_rfc3339(row.created_at), business_date=row.refund_date)


def settlement_out(row: Settlement) -> schemas.SettlementOut:
    return schemas.SettlementOut(
        id=row.id, settlement_date=row.settlement_date, payee_type=row.payee_type,
        sub_merchant_id=row.sub_merchant_id, order_count=row.order_count,
        refund_count=row.refund_count, gross=Money.of(row.gross_fen), fees=Money.of(row.fee_fen),
        refunded=Money.of(row.refunded_fen), advanced=Money.of(row.advanced_fen),
        carried_in=Money.of(row.carried_in_fen), net=Money.of(row.net_fen),
        advance_repaid=Money.of(row.repaid_fen), paid=Money.of(row.paid_fen),
        carried_out=Money.of(row.carried_out_fen), status=row.status,
        destination_account_id=row.destination_account_id,
        created_at=to_rfc3339(row.created_at), paid_at=_ts(row.paid_at))


def employer_out(row: Employer) -> schemas.EmployerOut:
    return schemas.EmployerOut(
        id=row.id, name=row.name, uscc=row.uscc, funding_account_id=row.funding_account_id,
        subsidy_pool_account_id=row.subsidy_pool_account_id, created_at=to_rfc3339(row.created_at))


def diner_out(row: Diner, subsidy_balance_fen: int) -> schemas.DinerOut:
    return schemas.DinerOut(
        id=row.id, employer_id=row.employer_id, employee_no=row.employee_no,
        name=row.name_masked, phone=row.phone_masked, funding_account_id=row.funding_account_id,
        subsidy_balance=Money.of(subsidy_balance_fen),
        personal_balance=Money.of(row.personal_balance_fen), status=row.status,
        created_at=to_rfc3339(row.created_at))


def top_up_out(row: TopUp) -> schemas.TopUpOut:
    return schemas.TopUpOut(
        id=row.id, diner_id=row.diner_id, from_account_id=row.from_account_id,
        amount=Money.of(row.amount_fen), personal_balance=Money.of(row.personal_balance_fen),
        journal_entry_id=row.journal_entry_id, created_at=to_rfc3339(row.created_at))


def grant_out(row: SubsidyGrant) -> schemas.GrantOut:
    return schemas.GrantOut(
        id=row.id, employer_id=row.employer_id, reference=row.reference, month=row.month,
        diner_count=row.diner_count, total=Money.of(row.total_fen),
        expired=Money.of(row.expired_fen), status=row.status, expires_at=to_rfc3339(row.expires_at),
        created_at=to_rfc3339(row.created_at), expired_at=_ts(row.expired_at))


def park_out(row: Park) -> schemas.ParkOut:
    return schemas.ParkOut(
        id=row.id, name=row.name, sub_merchant_id=row.sub_merchant_id,
        dunning=schemas.DunningOut(
            remind_before_days=list(row.remind_before_days), remind_on_due=row.remind_on_due,
            remind_after_days=list(row.remind_after_days),
            late_fee_daily_rate=row.late_fee_daily_rate, late_fee_cap_rate=row.late_fee_cap_rate),
        created_at=to_rfc3339(row.created_at), updated_at=to_rfc3339(row.updated_at))


def park_tenant_out(row: ParkTenant, account: VirtualAccount) -> schemas.ParkTenantOut:
    return schemas.ParkTenantOut(
        id=row.id, park_id=row.park_id, name=row.name, uscc=row.uscc, unit=row.unit,
        virtual_account_id=account.id, virtual_account_number=account.account_number,
        credit=Money.of(account.unapplied_fen), created_at=to_rfc3339(row.created_at))


def bill_out(row: Bill, payments: list[BillPayment] | None = None,
             notices: list[BillNotice] | None = None,
             refunded: dict[str, int] | None = None) -> schemas.BillOut:
    """`refunded`: what has been refunded of each payment, by its order id."""
    refunded = refunded or {}
    return schemas.BillOut(
        id=row.id, park_id=row.park_id, park_tenant_id=row.park_tenant_id,
        sub_merchant_id=row.sub_merchant_id, reference=row.reference, item=row.item,
        period=row.period, description=row.description, amount=Money.of(row.amount_fen),
        late_fee=Money.of(row.late_fee_fen),
        paid=Money.of(row.paid_principal_fen + row.paid_late_fee_fen),
        outstanding=Money.of(row.outstanding_fen if row.status != "cancelled" else 0),
        due_date=row.due_date, status=row.status, created_at=to_rfc3339(row.created_at),
        overdue_at=_ts(row.overdue_at), paid_at=_ts(row.paid_at),
        cancelled_at=_ts(row.cancelled_at),
        payments=[schemas.BillPaymentOut(id=p.id, order_id=p.order_id, source=p.source,
                                         principal=Money.of(p.principal_fen),
                                         late_fee=Money.of(p.late_fee_fen),
                                         refunded=Money.of(refunded.get(p.order_id, 0)),
                                         created_at=to_rfc3339(p.created_at))
                  for p in (payments or [])],
        notices=[schemas.BillNoticeOut(kind=n.kind, offset_days=n.offset_days,
                                       notice_date=n.notice_date,
                                       outstanding=Money.of(n.outstanding_fen),
                                       sent_at=to_rfc3339(n.sent_at))
                 for n in (notices or [])])


def data(model: Any) -> dict[str, Any]:
    """An event's data: the resource's public representation as JSON-ready values."""
    return model.model_dump(mode="json")
