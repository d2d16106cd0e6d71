"""Chain credit tables: chain members, credit facilities, payables certificates (one row per node
of a certificate's tree), financing quotes, factoring / order-financing applications, and risk events.

Money is integer fen. Rates are decimal strings (never floats) read through `DecimalString`.
A certificate's tree is kept by `root_id` / `parent_id` on every node; splitting or transferring
ends a node and creates its children, so the leaves of a root always sum to the root's face.
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base


class DecimalString(TypeDecorator[Decimal]):
    """A Decimal stored as its canonical string: exact on every database, no float on the way."""

    impl = String(24)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Any) -> str | None:
        if value is None:
            return None
        return format(Decimal(value).normalize(), "f")

    def process_result_value(self, value: str | None, dialect: Any) -> Decimal | None:
        return None if value is None else Decimal(value)


class ChainMember(Base):
    """A core enterprise (tier 0, the root of its chain) or a supplier / distributor under it."""

    __tablename__ = "chain_members"
    __table_args__ = (UniqueConstraint("tenant_id", "uscc"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    # The core enterprise whose chain this member belongs to (a core enterprise's own id).
    chain_id: Mapped[str] = mapped_column(String(40), index=True)
    role: Mapped[str] = mapped_column(String(20))
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18))
    settlement_account_id: Mapped[str] = mapped_column(String(60))
    tier: Mapped[int]
    # One tier closer to the core enterprise (credit flows down from it); None for the core.
    upstream_member_id: Mapped[str | None] = mapped_column(ForeignKey("chain_members.id"))
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CreditFacility(Base):
    """The bank's credit facility (授信额度) for one core enterprise."""

    __tablename__ = "chain_credit_facilities"
    __table_args__ = (UniqueConstraint("tenant_id", "core_enterprise_id"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    core_enterprise_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"))
    limit_fen: Mapped[int]
    # Face of certificates the core enterprise issued and has not paid, plus the principal of its
    # chain's factoring and order financing not yet repaid (kept under the row lock).
    outstanding_fen: Mapped[int] = mapped_column(default=0)
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    expires_on: Mapped[date] = mapped_column(Date)
    guarantee_circle: Mapped[str] = mapped_column(String(64), index=True)
    discount_rate: Mapped[Decimal] = mapped_column(DecimalString())
    status: Mapped[str] = mapped_column(String(12), index=True)
    frozen_reason: Mapped[str | None] = mapped_column(String(500))
    frozen_at: Mapped[datetime | None]
    granted_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PayablesCertificate(Base):
    """One node of a digital payables certificate's tree (电子债权凭证)."""

    __tablename__ = "payables_certificates"
    __table_args__ = (
        Index("ix_payables_certificates_tenant_status_maturity", "tenant_id", "status",
              "maturity_date"),
        Index("ix_payables_certificates_holder", "tenant_id", "holder_member_id", "status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    facility_id: Mapped[str] = mapped_column(ForeignKey("chain_credit_facilities.id"), index=True)
    chain_id: Mapped[str] = mapped_column(String(40))
    issuer_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"))
    root_id: Mapped[str] = mapped_column(String(40), index=True)
    parent_id: Mapped[str | None] = mapped_column(String(40), index=True)
    depth: Mapped[int] = mapped_column(default=0)
    # "member" (holder_member_id set) or "bank" (after financing, the bank holds it).
    holder_type: Mapped[str] = mapped_column(String(8))
    holder_member_id: Mapped[str | None] = mapped_column(ForeignKey("chain_members.id"))
    face_fen: Mapped[int]
    maturity_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))
    invoice_numbers: Mapped[list[str]] = mapped_column(JSON)
    contract_number: Mapped[str] = mapped_column(String(64))
    # Every holder from issuance to now, the ancestors' included: [{holder_type, member_id, via, at}].
    holder_history: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    financed_at: Mapped[datetime | None]
    settled_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]


class FinancingQuote(Base):
    """The bank's price for financing (discounting) one certificate before maturity."""

    __tablename__ = "payables_financing_quotes"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    certificate_id: Mapped[str] = mapped_column(ForeignKey("payables_certificates.id"), index=True)
    holder_member_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"))
    face_fen: Mapped[int]
    annual_rate: Mapped[Decimal] = mapped_column(DecimalString())
    days: Mapped[int]
    discount_fen: Mapped[int]
    net_fen: Mapped[int]
    valid_until: Mapped[datetime] = mapped_column(index=True)
    status: Mapped[str] = mapped_column(String(12), index=True)
    journal_ref: Mapped[str | None] = mapped_column(String(80))
    created_at: Mapped[datetime]
    accepted_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class FinancingApplication(Base):
    """Receivables factoring (应收账款保理) or order financing (订单融资) for one member."""

    __tablename__ = "chain_financing_applications"
    __table_args__ = (
        Index("ix_chain_financing_applications_due", "status", "due_date"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    applicant_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"), index=True)
    chain_id: Mapped[str] = mapped_column(String(40))
    # Invoice numbers (factoring) or purchase-order numbers (order financing).
    references: Mapped[list[str]] = mapped_column(JSON)
    counterparty_id: Mapped[str | None] = mapped_column(ForeignKey("chain_members.id"))
    requested_fen: Mapped[int]
    approved_fen: Mapped[int | None]
    annual_rate: Mapped[Decimal | None] = mapped_column(DecimalString())
    due_date: Mapped[date | None] = mapped_column(Date)
    interest_fen: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(12))
    decline_reason: Mapped[str | None] = mapped_column(String(500))
    decided_by: Mapped[str | None] = mapped_column(String(60))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    disbursed_at: Mapped[datetime | None]
    repaid_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]


class RiskEvent(Base):
    """Something that changes the bank's view of a core enterprise (or of one of its members)."""

    __tablename__ = "chain_risk_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    core_enterprise_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"), index=True)
    member_id: Mapped[str | None] = mapped_column(ForeignKey("chain_members.id"))
    facility_id: Mapped[str | None] = mapped_column(String(40))
    type: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(12))
    description: Mapped[str] = mapped_column(String(1000))
    related_resource_id: Mapped[str | None] = mapped_column(String(40))
    froze_facility: Mapped[bool] = mapped_column(default=False)
    recorded_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]


class CertificateInvoice(Base):
    """An invoice backing a certificate: one invoice backs one certificate of its issuer, so a
    trade cannot be turned into payables twice (released if the certificate is rejected or
    cancelled)."""

    __tablename__ = "payables_certificate_invoices"
    __table_args__ = (UniqueConstraint("tenant_id", "issuer_id", "invoice_number"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    issuer_id: Mapped[str] = mapped_column(ForeignKey("chain_members.id"))
    invoice_number: Mapped[str] = mapped_column(String(64))
    certificate_id: Mapped[str] = mapped_column(ForeignKey("payables_certificates.id"), index=True)
    created_at: Mapped[datetime]
