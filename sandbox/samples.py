"""Sample events for `POST /sandbox/v1/events/{type}`: the real event's data, from the tenant's
own seeded data.

Each sample's `data` is made by the very function that makes the real event's data (the
product's view of the resource), called on a seeded row or on an unsaved model instance filled
with seeded values, so a sample cannot drift from the real shape. Only `sample: true` is added
to `data`; the webhook envelope is the real one. Nothing here writes: seeded rows are read, the
unsaved instances are never added to the session, and changes (a status for the event's
action) are made on the view's output, never on a row.

Every partner-facing type has a builder. The e-government and escrow products seed nothing, so
their samples are unsaved rows around the seeded accounts. Only a tenant whose seed lacks the
resource (a product not installed) gets a sample carrying just `{"id": ...}`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.clock import to_rfc3339
from gateway.event_types import CATALOGUE, PARTNER_EVENT_TYPES
from gateway.events import Event
from gateway.ids import new_id
from gateway.settings import get_settings


@dataclass(frozen=True)
class Sample:
    resource_type: str
    resource_id: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Seeded:
    """What a builder reads: the tenant's seeded rows, and its clock's now."""

    session: Session
    tenant_id: str
    now: datetime
    issuer: str  # the public base URL, for the links some views carry

    @property
    def partner_id(self) -> str:
        from gateway.tenancy import Tenant

        return self.session.get(Tenant, self.tenant_id).partner_id

    def first(self, model: Any, *where: Any) -> Any:
        """The tenant's earliest row of `model` (matching `where`), or None."""
        key = model.__mapper__.primary_key[0]
        return self.session.scalars(select(model).where(model.tenant_id == self.tenant_id, *where)
                                    .order_by(key).limit(1)).first()


# A builder gets the action (`completed` of `transfer.completed`) and returns the resource's id
# and the event's data, or None when the tenant's seed has nothing to build it from.
Builder = Callable[[Seeded, str], tuple[str, dict[str, Any]] | None]
_builders: dict[str, Builder] = {}


def _builds(*prefixes: str) -> Callable[[Builder], Builder]:
    def register(fn: Builder) -> Builder:
        for prefix in prefixes:
            _builders[prefix] = fn
        return fn
    return register


def _money(fen: int) -> dict[str, str]:
    from gateway.money import Money

    return Money.of(fen).model_dump(mode="json")


# --- accounts ----------------------------------------------------------------------------


@_builds("account")
def _account(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.accounts.models import Account
    from products.accounts.schemas import AccountOut

    # The seed's magic accounts are already frozen and closed: the sample is the real thing.
    label = {"frozen": "frozen", "closed": "closed"}.get(action, "operating")
    account = seeded.first(Account, Account.label == label)
    if account is None:
        return None
    data = AccountOut.from_model(account).model_dump(mode="json")
    if action == "frozen":
        data["reason"] = "Sample: frozen at the court's request"
    return account.id, data


@_builds("transfer")
def _transfer(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.accounts.models import Account, Transfer
    from products.accounts.schemas import TransferOut

    source = seeded.first(Account, Account.label == "operating")
    target = seeded.first(Account, Account.label == "supplier")
    if source is None or target is None:
        return None
    failed = action == "failed"
    transfer = Transfer(
        id=new_id("trf"), tenant_id=seeded.tenant_id, from_account_id=source.id,
        to_account_id=target.id, amount_fen=1_234_56, memo="Invoice INV-2026-0042",
        status=action, failure_code="insufficient_funds" if failed else None,
        failure_message="The source account's available balance is too low." if failed else None,
        journal_entry_id=new_id("jnl") if action == "completed" else None,
        created_by="sandbox", created_at=seeded.now,
        resolved_at=None if action == "pending" else seeded.now)
    return transfer.id, TransferOut.from_model(transfer).model_dump(mode="json")


# --- chain credit ------------------------------------------------------------------------


def _chain(seeded: Seeded) -> tuple[Any, Any, Any] | None:
    """The seeded facility, its core enterprise and a tier-1 supplier."""
    from products.chain_credit.models import ChainMember, CreditFacility

    facility = seeded.first(CreditFacility)
    if facility is None:
        return None
    core = seeded.session.get(ChainMember, facility.core_enterprise_id)
    supplier = seeded.first(ChainMember, ChainMember.chain_id == core.chain_id,
                            ChainMember.tier == 1)
    return (facility, core, supplier) if supplier is not None else None


def _certificate(seeded: Seeded, status: str) -> Any:
    from products.chain_credit.models import PayablesCertificate

    chain = _chain(seeded)
    if chain is None:
        return None
    facility, core, supplier = chain
    cert_id = new_id("pcert")
    history = [{"holder_type": "member", "member_id": supplier.id, "via": "issued",
                "certificate_id": cert_id, "at": to_rfc3339(seeded.now)}]
    return PayablesCertificate(
        id=cert_id, tenant_id=seeded.tenant_id, facility_id=facility.id, chain_id=core.chain_id,
        issuer_id=core.id, root_id=cert_id, parent_id=None, depth=0, holder_type="member",
        holder_member_id=supplier.id, face_fen=200_000_00,
        maturity_date=(seeded.now + timedelta(days=90)).date(), status=status,
        invoice_numbers=["04400211", "04400212"], contract_number="PO-2026-0815",
        holder_history=history, created_by=core.id, created_at=seeded.now,
        updated_at=seeded.now,
        accepted_at=None if status in ("issued", "rejected", "cancelled") else seeded.now,
        financed_at=seeded.now if status == "financed" else None,
        settled_at=seeded.now if status == "settled" else None)


@_builds("chain_member")
def _chain_member(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views

    chain = _chain(seeded)
    return None if chain is None else (chain[2].id, views.data(views.member_out(chain[2])))


@_builds("credit_facility")
def _credit_facility(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views

    chain = _chain(seeded)
    if chain is None:
        return None
    data = views.data(views.facility_out(chain[0]))
    data["status"] = {"frozen": "frozen", "expired": "expired"}.get(action, "active")
    if action == "frozen":
        data["frozen_reason"] = "Sample: the core enterprise's rating was downgraded"
    return chain[0].id, data


@_builds("payables_certificate")
def _payables_certificate(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views

    cert = _certificate(seeded, action)
    if cert is None:
        return None
    data = views.data(views.certificate_out(cert))
    # The extras the real events add (service._cert_event's callers).
    if action in ("split", "transferred"):
        data["children"] = [new_id("pcert")]
    if action == "transferred":
        data["to_member_id"] = cert.holder_member_id
    if action == "financed":
        data["quote_id"] = new_id("fquote")
        data["net_amount"] = _money(198_356_16)
    if action in ("rejected", "cancelled"):
        data["reason"] = "Sample: the invoices do not match the delivery"
    return cert.id, data


@_builds("financing_quote")
def _financing_quote(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views
    from products.chain_credit.models import FinancingQuote

    cert = _certificate(seeded, "accepted")
    if cert is None:
        return None
    quote = FinancingQuote(
        id=new_id("fquote"), tenant_id=seeded.tenant_id, certificate_id=cert.id,
        holder_member_id=cert.holder_member_id, face_fen=cert.face_fen,
        annual_rate=Decimal("0.0365"), days=90, discount_fen=1_800_00, net_fen=198_200_00,
        valid_until=seeded.now + timedelta(minutes=15),
        status="open" if action == "created" else action, created_at=seeded.now,
        accepted_at=seeded.now if action == "accepted" else None)
    return quote.id, views.data(views.quote_out(quote))


@_builds("financing_application")
def _financing_application(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views
    from products.chain_credit.models import FinancingApplication

    chain = _chain(seeded)
    if chain is None:
        return None
    _, core, supplier = chain
    decided = action != "submitted"
    approved = decided and action != "declined"
    app = FinancingApplication(
        id=new_id("cfapp"), tenant_id=seeded.tenant_id, kind="factoring",
        applicant_id=supplier.id, chain_id=core.chain_id, references=["04400213"],
        counterparty_id=core.id, requested_fen=80_000_00,
        approved_fen=80_000_00 if approved else None,
        annual_rate=Decimal("0.045") if approved else None,
        due_date=(seeded.now + timedelta(days=60)).date() if approved else None,
        interest_fen=591_78 if approved else None, status=action,
        decline_reason="Sample: the receivable is already pledged" if action == "declined"
        else None,
        created_by=supplier.id, created_at=seeded.now, updated_at=seeded.now,
        disbursed_at=seeded.now if approved else None,
        repaid_at=seeded.now if action == "repaid" else None,
        overdue_at=seeded.now if action == "overdue" else None)
    return app.id, views.data(views.application_out(app))


@_builds("chain_risk_event")
def _chain_risk_event(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.chain_credit import views
    from products.chain_credit.models import RiskEvent

    chain = _chain(seeded)
    if chain is None:
        return None
    facility, core, supplier = chain
    event = RiskEvent(
        id=new_id("crisk"), tenant_id=seeded.tenant_id, core_enterprise_id=core.id,
        member_id=supplier.id, facility_id=facility.id, type="overdue", source="rule",
        description="Sample: a payables certificate matured and could not be paid.",
        related_resource_id=None, froze_facility=False, recorded_by="system",
        created_at=seeded.now)
    return event.id, views.data(views.risk_event_out(event))


# --- collection (seeded: settings, sub-merchants, a mandate, a virtual account, a canteen,
# a park with tenants and bills) ------------------------------------------------------------


@_builds("collection_settings")
def _collection_settings(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import CollectionSettings

    row = seeded.first(CollectionSettings)
    return None if row is None else (row.tenant_id, views.data(views.settings_out(row)))


@_builds("sub_merchant")
def _sub_merchant(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import SubMerchant

    row = seeded.first(SubMerchant)
    return None if row is None else (row.id, views.data(views.sub_merchant_out(row)))


@_builds("debit_mandate")
def _debit_mandate(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import Mandate

    row = seeded.first(Mandate)
    if row is None:
        return None
    data = views.data(views.mandate_out(row, 0))
    data["status"] = "active" if action == "created" else action
    return row.id, data


@_builds("virtual_account")
def _virtual_account(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import IncomingTransfer, VirtualAccount

    row = seeded.first(VirtualAccount)
    if row is None:
        return None
    if action == "created":
        return row.id, views.data(views.virtual_account_out(row))
    incoming = IncomingTransfer(
        id=new_id("cin"), tenant_id=seeded.tenant_id, virtual_account_id=row.id,
        amount_fen=3_000_00, applied_fen=0, status="unapplied",
        remitter_name_masked="*明", remitter_account_masked="6222 **** **** 0188",
        memo="房租", received_at=seeded.now)
    return row.id, views.data(views.incoming_out(incoming, []))


@_builds("canteen_employer")
def _canteen_employer(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import Employer

    row = seeded.first(Employer)
    return None if row is None else (row.id, views.data(views.employer_out(row)))


@_builds("diner", "diner_wallet")
def _diner(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.canteen import diner_view
    from products.collection.models import Diner, TopUp

    row = seeded.first(Diner)
    if row is None:
        return None
    diner = views.data(diner_view(seeded.session, row))
    if action == "topped_up":
        # The seeded diner's seeded top-up, so `top_up_id` resolves at its GET.
        top_up = seeded.first(TopUp, TopUp.diner_id == row.id)
        if top_up is None:
            return row.id, {"top_up_id": new_id("ctop"), "amount": _money(200_00), "diner": diner}
        return row.id, {"top_up_id": top_up.id, "amount": _money(top_up.amount_fen),
                        "diner": diner}
    return row.id, diner


@_builds("subsidy_grant")
def _subsidy_grant(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.canteen import subsidy_report
    from products.collection.models import SubsidyGrant

    row = seeded.first(SubsidyGrant)
    if row is None:
        return None
    grant = views.data(views.grant_out(row))
    if action == "funded":
        return row.id, grant
    grant["status"] = "expired"
    report = subsidy_report(seeded.session, seeded.tenant_id, row.employer_id, row.month)
    return row.id, {"grant": grant, "returned_to_employer": _money(1_250_00),
                    "report": views.data(report)}


@_builds("park")
def _park(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import Park

    row = seeded.first(Park)
    return None if row is None else (row.id, views.data(views.park_out(row)))


@_builds("park_tenant")
def _park_tenant(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import ParkTenant
    from products.collection.park import park_tenant_view

    row = seeded.first(ParkTenant)
    return None if row is None else (row.id, views.data(park_tenant_view(seeded.session, row)))


@_builds("bill")
def _bill(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import views
    from products.collection.models import Bill

    row = seeded.first(Bill)
    if row is None:
        return None
    bill = views.data(views.bill_out(row))
    if action in ("cancelled", "overdue"):
        bill["status"] = action
        return row.id, bill
    if action == "late_fee_accrued":
        return row.id, {"charged": _money(12_50), "through": seeded.now.date().isoformat(),
                        "bill": bill | {"status": "overdue"}}
    if action == "reminder":
        return row.id, {"kind": "before_due", "offset_days": 3,
                        "scheduled_for": seeded.now.date().isoformat(), "bill": bill}
    if action in ("paid", "partially_paid"):
        return row.id, {"payment": {"id": new_id("cbpay"), "order_id": new_id("cord"),
                                    "source": "order", "principal": bill["outstanding"],
                                    "late_fee": _money(0)},
                        "bill": bill | {"status": action}}
    if action == "payment_refunded":  # the shape of park.reopen_for_refund's data
        return row.id, {"refund": {"id": new_id("crf"), "payment_id": new_id("cbpay"),
                                   "order_id": new_id("cord"), "amount": _money(100_00),
                                   "principal": _money(100_00), "late_fee": _money(0)},
                        "bill": bill}
    return row.id, bill


def _order(seeded: Seeded, status: str) -> tuple[Any, list[Any]] | None:
    """An unsaved order of 120.00 from the seeded payer to the first sub-merchant, with its
    split: a pending or expired order waits for a transfer to the seeded virtual account (only
    those wait), a decided one is a mandate debit."""
    from gateway.clock import business_date
    from products.collection.models import Mandate, Order, OrderSplit, SubMerchant, VirtualAccount

    merchant, mandate = seeded.first(SubMerchant), seeded.first(Mandate)
    account = seeded.first(VirtualAccount)
    if merchant is None or mandate is None or account is None:
        return None
    waits = status in ("pending", "expired")
    failed = status == "failed"
    order = Order(
        id=new_id("cord"), tenant_id=seeded.tenant_id, merchant_order_no="ORD-2026-000123",
        scene="general", payer_method="virtual_account" if waits else "mandate",
        mandate_id=None if waits else mandate.id,
        virtual_account_id=account.id if waits else None, diner_id=None, bill_id=None,
        description="物业费 2026-12", amount_fen=120_00, refunded_fen=0, subsidy_fen=0,
        personal_fen=0, status=status,
        failure_code="insufficient_funds" if failed else None,
        failure_message="The payer's account could not fund the debit." if failed else None,
        created_at=seeded.now, expires_at=seeded.now + timedelta(hours=2) if waits else None,
        finalized_at=None if status == "pending" else seeded.now,
        final_date=business_date(seeded.now) if status == "succeeded" else None)
    split = OrderSplit(order_id=order.id, seq=0, tenant_id=seeded.tenant_id,
                       sub_merchant_id=merchant.id, amount_fen=120_00, fee_fen=72,
                       refunded_fen=0)
    return order, [split]


@_builds("collection_order")
def _collection_order(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.collection import service, views

    made = _order(seeded, {"created": "pending"}.get(action, action))
    if made is None:
        return None
    order, splits = made
    return order.id, views.data(service.order_view(seeded.session, order, splits))


@_builds("collection_refund")
def _collection_refund(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from gateway.clock import business_date
    from products.collection import views
    from products.collection.models import Mandate, Refund, RefundSplit

    made = _order(seeded, "succeeded")
    if made is None:
        return None
    order, splits = made
    mandate = seeded.session.get(Mandate, order.mandate_id)
    refund = Refund(
        id=new_id("crf"), tenant_id=seeded.tenant_id, order_id=order.id,
        refund_reference="RFD-2026-000045", amount_fen=20_00, reason="Sample: overcharged",
        status="succeeded", subsidy_fen=0, personal_fen=0, employer_fen=0,
        destination_account_id=mandate.payer_account_id, advanced_fen=0,
        created_at=seeded.now, refund_date=business_date(seeded.now))
    part = RefundSplit(refund_id=refund.id, seq=0, tenant_id=seeded.tenant_id,
                       sub_merchant_id=splits[0].sub_merchant_id, amount_fen=20_00,
                       fee_refund_fen=12)
    return refund.id, views.data(views.refund_out(refund, [part], order.scene))


@_builds("settlement")
def _settlement(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from gateway.clock import business_date
    from products.collection import views
    from products.collection.models import Settlement, SubMerchant

    merchant = seeded.first(SubMerchant)
    if merchant is None:
        return None
    # Paid: yesterday's net share. Carried forward: a refund advanced that day, more than
    # the payee collected, so it owes the difference to its next settlements.
    paid = action == "paid"
    gross, fees, refunded = (1_200_00, 7_20, 0) if paid else (50_00, 30, 120_00)
    net = gross - fees - refunded
    row = Settlement(
        id=new_id("cstl"), tenant_id=seeded.tenant_id,
        settlement_date=business_date(seeded.now) - timedelta(days=1), payee_type="merchant",
        sub_merchant_id=merchant.id, payee_key=merchant.id, order_count=10,
        refund_count=0 if paid else 1, gross_fen=gross, fee_fen=fees, refunded_fen=refunded,
        advanced_fen=refunded, repaid_fen=0, carried_in_fen=0, net_fen=net,
        paid_fen=net if paid else 0, carried_out_fen=0 if paid else net,
        status="paid" if paid else "carried",
        destination_account_id=merchant.settlement_account_id, created_at=seeded.now,
        paid_at=seeded.now if paid else None)
    return row.id, views.data(views.settlement_out(row))


@_builds("reconciliation")
def _reconciliation(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    """No view makes this event's data (statements.compare writes it out, counts only): the
    same keys, counted from the product's own `Differences` of a comparison of yesterday."""
    from gateway.clock import business_date
    from products.accounts.reconciliation import Differences

    missing = {"kind": "order", "id": new_id("cord"), "reference": "ORD-2026-000124",
               "amount": _money(80_00), "status": "succeeded"}
    differences = Differences(matched=41, missing_at_bank=[missing])
    comparison_id = new_id("crec")
    return comparison_id, {
        "id": comparison_id,
        "business_date": (business_date(seeded.now) - timedelta(days=1)).isoformat(),
        "record_count": 42, "agrees": differences.agrees, "matched": differences.matched,
        **{key: len(getattr(differences, key)) for key in (
            "missing_at_platform", "missing_at_bank", "amount_mismatches",
            "status_mismatches")}}


# --- payroll (seeded: a supervised wage project, its funding and workers) ------------------


@_builds("wage_project")
def _wage_project(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll import wage
    from products.payroll.models import WageFunding, WageProject

    project = seeded.first(WageProject)
    if project is None:
        return None
    if action == "funded":
        funding = seeded.first(WageFunding, WageFunding.project_id == project.id)
        return None if funding is None else (project.id, wage.funding_view(funding))
    if action == "arrears_warning":  # the shape of wage._warn's data
        return project.id, {
            "project_id": project.id, "project_code": project.project_code,
            "project_name": project.name, "region_code": project.region_code,
            "contractor_name": project.contractor_name,
            "contractor_uscc": project.contractor_uscc,
            "wage_account_id": project.wage_account_id, "check_id": new_id("wcheck"),
            "cycle": seeded.now.strftime("%Y-%m"), "kind": "unpaid_wages",
            "business_date": seeded.now.date().isoformat(), "unpaid_workers": 3,
            "underpaid_workers": 0, "owed_workers": 3}
    return project.id, wage.project_view(project)


@_builds("wage_worker")
def _wage_worker(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll import wage
    from products.payroll.models import WageWorker

    worker = seeded.first(WageWorker)
    return None if worker is None else (worker.id, wage.worker_view(worker))


# Batch statuses by event action: a confirmed batch waits, held, for its value date.
_BATCH_STATUS = {"confirmed": "scheduled"}
_ITEM_REASON = {"failed": "account_frozen", "returned": "account_closed"}
WAGE_FEN = 8_600_00


def _wage_batch(seeded: Seeded, project: Any, workers: int, status: str) -> Any:
    """An unsaved wage batch of the seeded project's workers, from its wage account."""
    from products.payroll.models import PayrollBatch

    done = status == "completed"
    rejected = status == "rejected"
    now = seeded.now
    confirmed = status in ("scheduled", "processing", "completed")
    total = workers * WAGE_FEN
    return PayrollBatch(
        id=new_id("pbatch"), tenant_id=seeded.tenant_id, payer_account_id=project.wage_account_id,
        wage_project_id=project.id, purpose="wages", value_date=now.date(),
        wage_month=now.strftime("%Y-%m"), external_reference="WAGES-" + now.strftime("%Y-%m"),
        declared_count=workers, declared_total_fen=total, source="json", charset="utf-8",
        item_count=0 if rejected else workers, total_fen=0 if rejected else total,
        held_fen=total if status in ("scheduled", "processing") else 0,
        processed=workers if done else 0, succeeded=workers if done else 0, failed=0, returned=0,
        succeeded_fen=total if done else 0, failed_fen=0, returned_fen=0,
        error_count=1 if rejected else 0, warning_count=0, status=status, created_at=now,
        validated_at=None if rejected else now, confirmed_at=now if confirmed else None,
        started_at=now if status in ("processing", "completed") else None,
        finished_at=now if done or rejected else None,
        cancelled_at=now if status == "cancelled" else None)


@_builds("payroll_batch")
def _payroll_batch(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll.models import WageProject, WageWorker
    from products.payroll.service import batch_view

    project = seeded.first(WageProject)
    if project is None:
        return None
    workers = len(seeded.session.scalars(select(WageWorker.id).where(
        WageWorker.project_id == project.id)).all())
    batch = _wage_batch(seeded, project, workers, _BATCH_STATUS.get(action, action))
    return batch.id, batch_view(seeded.session, batch)


@_builds("payroll_item")
def _payroll_item(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll import receiving
    from products.payroll.models import PayrollItem, WageWorker

    # processing._item_event is the one function that makes both events' data.
    from products.payroll.processing import _item_event

    worker = seeded.first(WageWorker)
    if worker is None:
        return None
    item = PayrollItem(
        id=new_id("pitem"), tenant_id=seeded.tenant_id, batch_id=new_id("pbatch"), seq=0,
        line=2, item_reference="WAGES-0001", name_masked=worker.name_masked,
        id_masked=worker.id_masked, account_masked=worker.card_masked, amount_fen=WAGE_FEN)
    code = _ITEM_REASON[action]
    return item.id, _item_event(item, item.batch_id, status=action, reason_code=code,
                                reason=receiving.reason_text(code))


@_builds("payroll_regulator")
def _payroll_regulator(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll import wage
    from products.payroll.models import RegulatorRegion, WageProject

    # The grant is the partner's own (a regulator's events go to its tenants), for the region
    # of the seeded project, so the sample is what that regulator would then supervise.
    project = seeded.first(WageProject)
    if project is None:
        return None
    grant = RegulatorRegion(partner_id=seeded.partner_id, region_code=project.region_code,
                            name="浦东新区人力资源和社会保障局", granted_by="operator",
                            created_at=seeded.now)
    return grant.partner_id, wage.grant_view(grant)


# --- e-government payments and escrow (nothing seeded: unsaved rows paying the seeded
# operating account, from the seeded person and supplier) -----------------------------------


def _operating(seeded: Seeded) -> Any:
    from products.accounts.models import Account

    return seeded.first(Account, Account.label == "operating")


@_builds("egov_portal")
def _egov_portal(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.models import EgovPortal
    from products.egov.service import portal_view

    payee = _operating(seeded)
    if payee is None:
        return None
    portal = EgovPortal(tenant_id=seeded.tenant_id, name="一网通办", payee_name=payee.owner_display_name,
                        payee_account_id=payee.id, origins=["https://portal.example.gov.cn"],
                        created_at=seeded.now, updated_at=seeded.now)
    return seeded.tenant_id, portal_view(portal)


# Order statuses by event action; an attempt that failed leaves the order open.
_EGOV_STATUS = {"created": "open", "attempt_failed": "open", "succeeded": "paid"}


@_builds("egov_payment")
def _egov_payment(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.accounts.models import Account
    from products.egov import service
    from products.egov.models import PaymentOrder

    payee = _operating(seeded)
    payer = seeded.first(Account, Account.label == "person")
    if payee is None or payer is None:
        return None
    status = _EGOV_STATUS.get(action, action)
    paid = status == "paid"
    tries = {"attempt_failed": 1, "failed": service.MAX_FAILED_ATTEMPTS}.get(action, 0)
    order = PaymentOrder(
        id=new_id("egpo"), tenant_id=seeded.tenant_id, portal_reference="GOV-2026-000318",
        item_code="103001", item_name="机动车驾驶证工本费", payer_name_masked=payer.owner_display_name,
        payer_id_type="resident_id", payer_id_masked=payer.owner_id_number_masked,
        amount_fen=10_00, description="Sample: driving licence fee",
        return_url="https://portal.example.gov.cn/pay/done", payee_name=payee.owner_display_name,
        payee_account_id=payee.id, payment_code=service._payment_code(),
        checkout_token=new_id("sample"), status=status,
        expires_at=seeded.now + service.DEFAULT_TTL, failed_attempts=tries,
        last_failure_code="insufficient_funds" if tries else None,
        payment_method="bank_account" if paid or tries else None,
        payer_account_masked=payer.account_number_masked if paid or tries else None,
        receipt_number=service._receipt_number(seeded.now) if paid else None,
        created_at=seeded.now, updated_at=seeded.now, paid_at=seeded.now if paid else None)
    return order.id, service.order_view(order, seeded.issuer)


@_builds("egov_regulator")
def _egov_regulator(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.escrow import regulator_view
    from products.egov.models import EscrowRegulator

    row = EscrowRegulator(partner_id=seeded.partner_id, name="示例市住房和城乡建设局",
                          kinds=["bid_deposit", "presale_housing"], granted_by="operator",
                          created_at=seeded.now)
    return row.partner_id, regulator_view(row)


@dataclass(frozen=True)
class _Tender:
    """An unsaved bid-deposit scheme (the operating account's tender, supervised by the
    partner itself) and the seeded supplier's bid in it."""

    scheme: Any
    bid: Any
    bidder: Any


DEPOSIT_FEN = 50_000_00


def _tender(seeded: Seeded, bid_status: str) -> _Tender | None:
    from products.accounts.models import Account
    from products.egov.models import EscrowScheme, EscrowSubAccount

    owner, bidder = _operating(seeded), seeded.first(Account, Account.label == "supplier")
    if owner is None or bidder is None:
        return None
    won = bid_status in ("awarded", "completed")
    scheme = EscrowScheme(
        id=new_id("escrow"), tenant_id=seeded.tenant_id, kind="bid_deposit",
        reference="ZB-2026-0042", name="示例学校食堂改造工程招标", regulator_partner_id=seeded.partner_id,
        holder_name=owner.owner_display_name, beneficiary_account_id=owner.id,
        escrow_account_id=new_id("acct"),
        policy={"kind": "bid_deposit", "required_approvals": 1, "deposit_fen": DEPOSIT_FEN,
                "refund_days": 5},
        status="active", created_at=seeded.now)
    gone = {"completed": "released_fen", "refunded": "refunded_fen",
            "withdrawn": "refunded_fen"}.get(bid_status)
    bid = EscrowSubAccount(
        id=new_id("esub"), tenant_id=seeded.tenant_id, scheme_id=scheme.id, reference="BIDDER-01",
        holder_name_masked=bidder.owner_display_name, ledger_account_id=new_id("acct"), terms={},
        status=bid_status, deposited_fen=0 if bid_status == "open" else DEPOSIT_FEN,
        released_fen=0, refunded_fen=0, consumed_classes=0, created_at=seeded.now)
    if gone is not None:
        setattr(bid, gone, DEPOSIT_FEN)
    if won:
        scheme.awarded_sub_account_id, scheme.awarded_at = bid.id, seeded.now
    return _Tender(scheme, bid, bidder)


@_builds("escrow_scheme")
def _escrow_scheme(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.escrow import scheme_view

    tender = _tender(seeded, "awarded" if action == "awarded" else "open")
    if tender is None:
        return None
    return tender.scheme.id, scheme_view(seeded.session, tender.scheme)


@_builds("escrow_deposit")
def _escrow_deposit(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.escrow import deposit_view
    from products.egov.models import EscrowDeposit

    tender = _tender(seeded, "open")
    if tender is None:
        return None
    deposit = EscrowDeposit(
        id=new_id("edep"), tenant_id=seeded.tenant_id, scheme_id=tender.scheme.id,
        sub_account_id=tender.bid.id, from_account_id=tender.bidder.id, amount_fen=DEPOSIT_FEN,
        journal_entry_id=new_id("jnl"), created_at=seeded.now)
    return deposit.id, deposit_view(deposit)


@_builds("escrow_sub_account")
def _escrow_sub_account(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.escrow import sub_account_view

    tender = _tender(seeded, "open" if action == "opened" else action)
    return None if tender is None else (tender.bid.id, sub_account_view(tender.bid))


# Instruction statuses by event action: a decision short of the approvals required leaves
# the instruction pending.
_INSTRUCTION_STATUS = {"created": "pending_approval", "decision_recorded": "pending_approval"}


@_builds("release_instruction")
def _release_instruction(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.egov.escrow import instruction_view
    from products.egov.models import ReleaseInstruction

    tender = _tender(seeded, "awarded")
    if tender is None:
        return None
    status = _INSTRUCTION_STATUS.get(action, action)
    # The winner's deposit released to the tenderer after the award (escrow._plan_release).
    ins = ReleaseInstruction(
        id=new_id("erel"), tenant_id=seeded.tenant_id, scheme_id=tender.scheme.id,
        sub_account_id=tender.bid.id, kind="release", amount_fen=DEPOSIT_FEN,
        destination_account_id=tender.scheme.beneficiary_account_id,
        basis={"award": tender.bid.id}, reason="中标保证金转履约保证金", status=status,
        required_approvals=2 if action == "decision_recorded" else 1, approved_by_policy=False,
        due_by=None, journal_entry_id=new_id("jnl") if status == "executed" else None,
        failure="Sample: the ledger refused the transfer" if status == "failed" else None,
        created_at=seeded.now, executed_at=seeded.now if status == "executed" else None)
    return ins.id, instruction_view(seeded.session, ins)


# --- the partner's webhook configuration -------------------------------------------------


def _endpoint(seeded: Seeded) -> Any:
    """The tenant's first webhook endpoint, or (none registered yet: the seed makes none) an
    unsaved one listening to every type."""
    from partners.webhooks.models import WebhookEndpoint

    endpoint = seeded.first(WebhookEndpoint)
    if endpoint is not None:
        return endpoint
    return WebhookEndpoint(
        id=new_id("we"), tenant_id=seeded.tenant_id, partner_id=seeded.partner_id,
        environment="sandbox", url="https://partner.example.com/quanlian/webhooks",
        description="Sample endpoint", event_types=["*"], status="enabled",
        disabled_reason=None, created_at=seeded.now, updated_at=seeded.now)


@_builds("webhook_endpoint")
def _webhook_endpoint(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from partners.webhooks.service import endpoint_view

    endpoint = _endpoint(seeded)
    data = endpoint_view(endpoint)
    if action == "disabled":  # disabled for failing, as delivery._disable_failing says it
        data |= {"status": "disabled", "disabled_reason": "failing",
                 "failing_since": to_rfc3339(seeded.now - timedelta(days=3))}
    return endpoint.id, data


@_builds("webhook_delivery")
def _webhook_delivery(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    """No view makes this event's data (service.retry_delivery writes its three ids out): the
    tenant's latest delivery, or one of its latest event to its endpoint."""
    from partners.webhooks.models import WebhookDelivery

    delivery = seeded.session.scalars(
        select(WebhookDelivery).where(WebhookDelivery.tenant_id == seeded.tenant_id)
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc()).limit(1)).first()
    if delivery is None:
        event_id = seeded.session.scalars(
            select(Event.id).where(Event.tenant_id == seeded.tenant_id)
            .order_by(Event.created_at.desc(), Event.id.desc()).limit(1)).first()
        delivery = WebhookDelivery(id=new_id("msg"), endpoint_id=_endpoint(seeded).id,
                                   event_id=event_id or new_id("evt"))
    return delivery.id, {"id": delivery.id, "endpoint_id": delivery.endpoint_id,
                         "event_id": delivery.event_id}


# -----------------------------------------------------------------------------------------

BUILT_RESOURCES = frozenset(_builders)
# Partner-facing types no builder makes (none: a test keeps it so); their samples carry only
# `{"id": ...}`, as does the sample of a type whose resource the tenant's seed lacks.
FALLBACK_ONLY = frozenset(t for t in PARTNER_EVENT_TYPES
                          if t.split(".")[0] not in BUILT_RESOURCES)


def build_data(seeded: Seeded, type_: str) -> tuple[str, dict[str, Any]] | None:
    """The resource id and data its builder makes for a type, or None (no builder, or nothing
    in the seed to build it from)."""
    prefix, action = type_.split(".", 1)
    builder = _builders.get(prefix)
    return builder(seeded, action) if builder is not None else None


def build_sample(session: Session, tenant_id: str, type_: str, now: datetime,
                 issuer: str | None = None) -> Sample:
    """The sample of a catalogued event type for a tenant, marked `sample: true` in its data.
    `issuer`: the public base URL the real event's links start with (the app's setting)."""
    seeded = Seeded(session, tenant_id, now, issuer or get_settings().issuer)
    built = build_data(seeded, type_)
    if built is None:
        resource_id = new_id("sample")
        built = (resource_id, {"id": resource_id})
    resource_id, data = built
    return Sample(CATALOGUE[type_].resource_type, resource_id, {**data, "sample": True})
