"""Sample events for `POST /sandbox/v1/events/{type}`: the real event's data, from the tenant's
own seeded data.

Each sample's `data` is made by the very function that makes the real event's data (the
product's view of the resource), called on a seeded row or on an unsaved model instance filled
with seeded values, so a sample cannot drift from the real shape. Only `sample: true` is added
to `data`; the webhook envelope is the real one. Nothing here writes: seeded rows are read, the
unsaved instances are never added to the session, and changes (a status for the event's
action) are made on the view's output, never on a row.

A type without a builder below, or whose resource the tenant's seed lacks, falls back to the
tenant's latest real event of that type, then to `{"id": ...}` (see `FALLBACK_ONLY`).
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
from gateway.event_types import CATALOGUE
from gateway.events import Event
from gateway.ids import new_id


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
    from products.collection.models import Diner

    row = seeded.first(Diner)
    if row is None:
        return None
    diner = views.data(diner_view(seeded.session, row))
    if action == "topped_up":
        return row.id, {"top_up_id": new_id("ctop"), "amount": _money(200_00), "diner": diner}
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
    return row.id, bill


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
            "business_date": seeded.now.date().isoformat(), "unpaid_workers": 3}
    return project.id, wage.project_view(project)


@_builds("wage_worker")
def _wage_worker(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from products.payroll import wage
    from products.payroll.models import WageWorker

    worker = seeded.first(WageWorker)
    return None if worker is None else (worker.id, wage.worker_view(worker))


# --- the partner's webhook configuration -------------------------------------------------


@_builds("webhook_endpoint")
def _webhook_endpoint(seeded: Seeded, action: str) -> tuple[str, dict[str, Any]] | None:
    from partners.webhooks.models import WebhookEndpoint
    from partners.webhooks.service import endpoint_view

    endpoint = seeded.first(WebhookEndpoint)
    if endpoint is None:
        return None
    data = endpoint_view(endpoint)
    if action == "disabled":
        data |= {"status": "disabled", "disabled_reason": "failing",
                 "failing_since": to_rfc3339(seeded.now - timedelta(days=3))}
    return endpoint.id, data


# -----------------------------------------------------------------------------------------

BUILT_RESOURCES = frozenset(_builders)
# Types no builder makes: their samples are the tenant's latest real event of the type, when
# there is one, else `{"id": ...}` only.
FALLBACK_ONLY = frozenset(t for t in CATALOGUE if t.split(".")[0] not in BUILT_RESOURCES)


def _latest_real(seeded: Seeded, type_: str) -> Event | None:
    """The tenant's latest event of the type that is not itself a sample."""
    recent = seeded.session.scalars(
        select(Event).where(Event.tenant_id == seeded.tenant_id, Event.type == type_)
        .order_by(Event.created_at.desc(), Event.id.desc()).limit(20))
    return next((e for e in recent if not e.data.get("sample")), None)


def build_sample(session: Session, tenant_id: str, type_: str, now: datetime) -> Sample:
    """The sample of a catalogued event type for a tenant, marked `sample: true` in its data."""
    seeded = Seeded(session, tenant_id, now)
    resource_type = CATALOGUE[type_].resource_type
    prefix, action = type_.split(".", 1)
    builder = _builders.get(prefix)
    built = builder(seeded, action) if builder is not None else None
    if built is None:
        real = _latest_real(seeded, type_)
        built = (real.resource_id, dict(real.data)) if real is not None else None
    if built is None:
        resource_id = new_id("sample")
        built = (resource_id, {"id": resource_id})
    resource_id, data = built
    return Sample(resource_type, resource_id, {**data, "sample": True})
