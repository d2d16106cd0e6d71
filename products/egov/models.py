"""E-government tables: portal profiles, payment orders and their attempts, and supervised
escrow (regulators, schemes, sub-accounts, deposits, release instructions and approvals).

Money is integer fen; the ledger (products.accounts) holds the balances, these tables hold the
business facts and the counters that the release policies are checked against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.pii import EncryptedString


class EgovPortal(Base):
    """A government portal's profile: who is paid, and which web origins may embed checkout."""

    __tablename__ = "egov_portals"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    payee_name: Mapped[str] = mapped_column(String(120))
    payee_account_id: Mapped[str] = mapped_column(String(40))
    origins: Mapped[list[str]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class PaymentOrder(Base):
    """A fee, fine or non-tax revenue item (非税收入) one payer owes, and how it was paid."""

    __tablename__ = "egov_payment_orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "portal_reference"),
        Index("ix_egov_payment_orders_due", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    portal_reference: Mapped[str] = mapped_column(String(64))
    item_code: Mapped[str] = mapped_column(String(32))
    item_name: Mapped[str] = mapped_column(String(120))
    payer_name: Mapped[str] = mapped_column(EncryptedString())
    payer_name_masked: Mapped[str] = mapped_column(String(80))
    payer_id_type: Mapped[str] = mapped_column(String(16))
    payer_id_number: Mapped[str] = mapped_column(EncryptedString())
    payer_id_masked: Mapped[str] = mapped_column(String(32))
    payer_id_digest: Mapped[str] = mapped_column(String(64), index=True)
    amount_fen: Mapped[int]
    description: Mapped[str] = mapped_column(String(300))
    return_url: Mapped[str] = mapped_column(String(2000))
    payee_name: Mapped[str] = mapped_column(String(120))
    payee_account_id: Mapped[str] = mapped_column(String(40))
    payment_code: Mapped[str] = mapped_column(String(20), unique=True)
    checkout_token: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(12))
    expires_at: Mapped[datetime]
    failed_attempts: Mapped[int] = mapped_column(default=0)
    # The failure code of the latest refused attempt (`PaymentAttempt.failure_code`), kept on
    # the order so that its view needs no query of the attempts; None until one is refused.
    last_failure_code: Mapped[str | None] = mapped_column(String(40))
    # Why the portal cancelled the order, as its cancel call said; None otherwise.
    cancel_reason: Mapped[str | None] = mapped_column(String(300))
    payment_method: Mapped[str | None] = mapped_column(String(16))
    payer_account_masked: Mapped[str | None] = mapped_column(String(40))
    # The ledger journal entry (`jnl_…`) that paid the order. The column keeps its first name,
    # `transfer_id`, as renaming it would need a migration; it never held a transfer's id.
    journal_entry_id: Mapped[str | None] = mapped_column("transfer_id", String(60))
    journal_ref: Mapped[str | None] = mapped_column(String(80))
    receipt_number: Mapped[str | None] = mapped_column(String(24), unique=True)
    verification_code: Mapped[str | None] = mapped_column(String(40), unique=True)
    succeeded_event_id: Mapped[str | None] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]


class PaymentAttempt(Base):
    """One try to pay an order at checkout: succeeded, or refused with a reason."""

    __tablename__ = "egov_payment_attempts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("egov_payment_orders.id"), index=True)
    method: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(12))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    payer_account_masked: Mapped[str | None] = mapped_column(String(40))
    created_at: Mapped[datetime]


class EscrowRegulator(Base):
    """A government partner the bank recognises as a fund supervisor (监管部门).

    Bank configuration about a partner, not tenant data: keyed by partner, valid in both of its
    environments (each environment sees only its own schemes).
    """

    __tablename__ = "egov_regulators"

    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    kinds: Mapped[list[str]] = mapped_column(JSON)
    granted_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]


class EscrowScheme(Base):
    """A supervised escrow account (资金监管账户) with its release policy."""

    __tablename__ = "egov_escrow_schemes"
    __table_args__ = (UniqueConstraint("tenant_id", "reference"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    environment: Mapped[str] = mapped_column(String(12))
    kind: Mapped[str] = mapped_column(String(20))
    reference: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(120))
    regulator_partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    holder_name: Mapped[str] = mapped_column(String(120))
    beneficiary_account_id: Mapped[str | None] = mapped_column(String(40))
    escrow_account_id: Mapped[str] = mapped_column(String(40), unique=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    awarded_sub_account_id: Mapped[str | None] = mapped_column(String(40))
    awarded_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EscrowSubAccount(Base):
    """A virtual sub-account of a scheme: a student's prepaid tuition, a pre-sale building, a
    bidder's deposit, a court case. Its money sits in its own guarded ledger account."""

    __tablename__ = "egov_escrow_sub_accounts"
    __table_args__ = (UniqueConstraint("scheme_id", "reference"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    scheme_id: Mapped[str] = mapped_column(ForeignKey("egov_escrow_schemes.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64))
    holder_name: Mapped[str] = mapped_column(EncryptedString())
    holder_name_masked: Mapped[str] = mapped_column(String(120))
    ledger_account_id: Mapped[str] = mapped_column(String(40), unique=True)
    terms: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(12))
    deposited_fen: Mapped[int] = mapped_column(default=0)
    released_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    # Tuition: classes already paid out to the institution.
    consumed_classes: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class EscrowDeposit(Base):
    """Money paid into a sub-account."""

    __tablename__ = "egov_escrow_deposits"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    scheme_id: Mapped[str] = mapped_column(ForeignKey("egov_escrow_schemes.id"), index=True)
    sub_account_id: Mapped[str] = mapped_column(ForeignKey("egov_escrow_sub_accounts.id"), index=True)
    from_account_id: Mapped[str] = mapped_column(String(40))
    amount_fen: Mapped[int]
    journal_ref: Mapped[str] = mapped_column(String(80))
    # The ledger journal entry (`jnl_…`) of the deposit; column named as first released.
    journal_entry_id: Mapped[str] = mapped_column("transfer_id", String(60))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]


class ReleaseInstruction(Base):
    """A request to move money out of a sub-account: a release to the beneficiary or a refund.

    Executed (the ledger transfer made with its own journal reference) only once approved."""

    __tablename__ = "egov_release_instructions"
    __table_args__ = (Index("ix_egov_release_due", "status", "due_by"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    scheme_id: Mapped[str] = mapped_column(ForeignKey("egov_escrow_schemes.id"), index=True)
    sub_account_id: Mapped[str] = mapped_column(ForeignKey("egov_escrow_sub_accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))
    amount_fen: Mapped[int]
    destination_account_id: Mapped[str] = mapped_column(String(40))
    basis: Mapped[dict[str, Any]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(String(300))
    status: Mapped[str] = mapped_column(String(20))
    required_approvals: Mapped[int]
    approved_by_policy: Mapped[bool] = mapped_column(default=False)
    due_by: Mapped[datetime | None]
    journal_ref: Mapped[str] = mapped_column(String(80), unique=True)
    # The ledger journal entry (`jnl_…`) that executed it; column named as first released.
    journal_entry_id: Mapped[str | None] = mapped_column("transfer_id", String(60))
    failure: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    executed_at: Mapped[datetime | None]


class ReleaseApproval(Base):
    """One regulator user's decision on an instruction (at most one per user)."""

    __tablename__ = "egov_release_approvals"

    instruction_id: Mapped[str] = mapped_column(ForeignKey("egov_release_instructions.id"),
                                                primary_key=True)
    approver_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    regulator_partner_id: Mapped[str] = mapped_column(String(40))
    client_id: Mapped[str] = mapped_column(String(40))
    approver_name: Mapped[str] = mapped_column(String(80))
    decision: Mapped[str] = mapped_column(String(8))
    comment: Mapped[str] = mapped_column(String(300))
    created_at: Mapped[datetime]


__all__ = ["EgovPortal", "PaymentOrder", "PaymentAttempt", "EscrowRegulator",
           "EscrowScheme", "EscrowSubAccount", "EscrowDeposit", "ReleaseInstruction",
           "ReleaseApproval"]
