"""Payroll tables: batches and their items, validation findings, supervised wage projects with
their real-name registered workers, fundings, arrears checks, and regulators' region grants.

Personal data (names, ID numbers, card numbers) is stored encrypted, with a keyed digest for
look-ups and the masked form beside it, so that no response or listing ever decrypts.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.pii import EncryptedString


class PayrollBatch(Base):
    __tablename__ = "payroll_batches"
    __table_args__ = (
        # A live batch's external reference is unique in its tenant; rejected and cancelled
        # batches give theirs back (active_reference becomes NULL) so the partner can resubmit.
        UniqueConstraint("tenant_id", "active_reference"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(40))
    payer_account_id: Mapped[str] = mapped_column(String(40), index=True)
    wage_project_id: Mapped[str | None] = mapped_column(ForeignKey("wage_projects.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(20))
    value_date: Mapped[date] = mapped_column(Date)
    wage_month: Mapped[str | None] = mapped_column(String(7))
    external_reference: Mapped[str] = mapped_column(String(64))
    active_reference: Mapped[str | None] = mapped_column(String(64))
    declared_count: Mapped[int]
    declared_total_fen: Mapped[int]
    item_count: Mapped[int] = mapped_column(default=0)
    total_fen: Mapped[int] = mapped_column(default=0)
    source: Mapped[str] = mapped_column(String(8))
    charset: Mapped[str] = mapped_column(String(8), default="utf-8")
    status: Mapped[str] = mapped_column(String(24), index=True)
    hold_id: Mapped[str | None] = mapped_column(String(60))
    held_fen: Mapped[int] = mapped_column(default=0)
    processed: Mapped[int] = mapped_column(default=0)
    succeeded: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    returned: Mapped[int] = mapped_column(default=0)
    succeeded_fen: Mapped[int] = mapped_column(default=0)
    failed_fen: Mapped[int] = mapped_column(default=0)
    returned_fen: Mapped[int] = mapped_column(default=0)
    error_count: Mapped[int] = mapped_column(default=0)
    warning_count: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime]
    validated_at: Mapped[datetime | None]
    confirmed_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]
    updated_at: Mapped[datetime]


class PayrollItem(Base):
    __tablename__ = "payroll_items"
    __table_args__ = (
        UniqueConstraint("batch_id", "seq"),
        UniqueConstraint("batch_id", "item_reference"),
        # The worker's chunk query and the status filter of the item list.
        Index("ix_payroll_items_batch_status_seq", "batch_id", "status", "seq"),
        # Announced returns only (almost every row has none): the returns job's look-up.
        Index("ix_payroll_items_return_due_at", "return_due_at",
              postgresql_where=text("return_due_at IS NOT NULL"),
              sqlite_where=text("return_due_at IS NOT NULL")),
    )
    # Few indexes on purpose: 100,000 rows arrive at once. Items are always reached through
    # their batch (which carries the tenant), never by tenant or by digest alone.

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    batch_id: Mapped[str] = mapped_column(ForeignKey("payroll_batches.id"))
    seq: Mapped[int]
    line: Mapped[int]
    item_reference: Mapped[str] = mapped_column(String(64))
    employee_name: Mapped[str] = mapped_column(EncryptedString())
    name_masked: Mapped[str] = mapped_column(String(80))
    id_number: Mapped[str] = mapped_column(EncryptedString())
    id_digest: Mapped[str] = mapped_column(String(64))
    id_masked: Mapped[str] = mapped_column(String(24))
    account_number: Mapped[str] = mapped_column(EncryptedString())
    account_digest: Mapped[str] = mapped_column(String(64))
    account_masked: Mapped[str] = mapped_column(String(32))
    amount_fen: Mapped[int]
    memo: Mapped[str] = mapped_column(String(140), default="")
    worker_id: Mapped[str | None] = mapped_column(String(40))
    precheck_code: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(12))
    reason_code: Mapped[str | None] = mapped_column(String(40))
    reason: Mapped[str | None] = mapped_column(String(200))
    journal_ref: Mapped[str | None] = mapped_column(String(80))
    entry_id: Mapped[str | None] = mapped_column(String(60))
    # The account at this bank credited; NULL: another bank's card, through the clearing account.
    payee_account_id: Mapped[str | None] = mapped_column(String(40))
    return_journal_ref: Mapped[str | None] = mapped_column(String(80))
    # A return (退票) announced for later (sandbox): when, and with which reason code.
    return_due_at: Mapped[datetime | None]
    return_code: Mapped[str | None] = mapped_column(String(40))
    settled_at: Mapped[datetime | None]
    returned_at: Mapped[datetime | None]


class PayrollFinding(Base):
    """What validation found: errors reject the batch, warnings predict an item failure."""

    __tablename__ = "payroll_findings"

    batch_id: Mapped[str] = mapped_column(ForeignKey("payroll_batches.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    severity: Mapped[str] = mapped_column(String(8))
    line: Mapped[int]
    item_reference: Mapped[str | None] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(40))
    code: Mapped[str] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(String(300))


class WageProject(Base):
    """A construction project's supervised wage account (农民工工资专户) and its rules."""

    __tablename__ = "wage_projects"
    __table_args__ = (UniqueConstraint("tenant_id", "project_code"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_code: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(200))
    region_code: Mapped[str] = mapped_column(String(6), index=True)
    contractor_name: Mapped[str] = mapped_column(String(200))
    contractor_uscc: Mapped[str] = mapped_column(String(18))
    developer_name: Mapped[str] = mapped_column(String(200))
    developer_uscc: Mapped[str] = mapped_column(String(18))
    developer_account_id: Mapped[str | None] = mapped_column(String(40))
    wage_account_id: Mapped[str] = mapped_column(String(40), unique=True)
    payday: Mapped[int]
    arrears_grace_days: Mapped[int]
    balance_check_days: Mapped[int]
    status: Mapped[str] = mapped_column(String(12), default="active")
    first_cycle: Mapped[str] = mapped_column(String(7))
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class WageWorker(Base):
    """A real-name registered worker (实名制) of one project, paid only to the registered card."""

    __tablename__ = "wage_workers"
    __table_args__ = (UniqueConstraint("project_id", "id_digest"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("wage_projects.id"), index=True)
    name: Mapped[str] = mapped_column(EncryptedString())
    name_masked: Mapped[str] = mapped_column(String(80))
    name_digest: Mapped[str] = mapped_column(String(64))
    id_number: Mapped[str] = mapped_column(EncryptedString())
    id_digest: Mapped[str] = mapped_column(String(64))
    id_masked: Mapped[str] = mapped_column(String(24))
    card_number: Mapped[str] = mapped_column(EncryptedString())
    card_digest: Mapped[str] = mapped_column(String(64))
    card_masked: Mapped[str] = mapped_column(String(32))
    team: Mapped[str] = mapped_column(String(60))
    contract_start: Mapped[date] = mapped_column(Date)
    contract_end: Mapped[date | None] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12), default="active")
    # The business date the worker left (status `left`), kept because wages owed for the
    # months before it stay owed: the arrears check and the regulator need the date, not
    # only today's status. NULL while active.
    left_on: Mapped[date | None] = mapped_column(Date)
    # The agreed monthly wage in fen (NULL: none agreed). When set, a pay month counts as paid
    # only once its successful payments (returned ones excluded) reach it (`wage.pay_state`).
    monthly_wage_fen: Mapped[int | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class WageFunding(Base):
    """The developer's transfer of labour costs into the wage account (人工费用拨付)."""

    __tablename__ = "wage_fundings"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("wage_projects.id"), index=True)
    from_account_id: Mapped[str] = mapped_column(String(40))
    amount_fen: Mapped[int]
    journal_ref: Mapped[str] = mapped_column(String(80))
    entry_id: Mapped[str | None] = mapped_column(String(60))
    memo: Mapped[str] = mapped_column(String(140), default="")
    created_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]


class WageCheck(Base):
    """One arrears check of one project for one pay cycle: done once, warned or clear."""

    __tablename__ = "wage_checks"
    __table_args__ = (UniqueConstraint("project_id", "cycle", "kind"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    project_id: Mapped[str] = mapped_column(ForeignKey("wage_projects.id"), index=True)
    cycle: Mapped[str] = mapped_column(String(7))
    kind: Mapped[str] = mapped_column(String(24))
    warned: Mapped[bool]
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    business_date: Mapped[date] = mapped_column(Date)
    checked_at: Mapped[datetime]


class RegulatorRegion(Base):
    """A labour regulator's supervision grant: which administrative regions it may see.

    Bank configuration about a partner rather than a tenant's business data, so keyed by the
    partner (the grant holds in both of its environments; each sees only its own environment).
    """

    __tablename__ = "payroll_regulator_regions"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    region_code: Mapped[str] = mapped_column(String(6), primary_key=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    granted_by: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime]
