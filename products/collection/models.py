"""Collection and settlement tables (代收 / 分账 / 结算 / 对账), the canteen scene (智慧食堂) and the
park scene (智慧园区).

Money is integer fen. Rates are canonical decimal strings (never floats). Ledger accounts are
referred to by their ids in products.accounts (no foreign keys across products). Every row
carries its tenant; every query filters by it.

How the tables hang together:

- an *order* is the one record of money collected into the tenant's clearing account. The
  scenes create orders too: a canteen meal is an order paid from the diner's wallets, a bill
  payment is an order paid from the park tenant's virtual account or by mandate;
- an order's *splits* give each sub-merchant's share (and the platform's own share); the
  sub-merchant's fee rule, as it was when the order was created (kept on the split), fixes the
  platform's commission on a share when the order succeeds;
- *refunds* take money back out of the clearing account, split the same way; a refund of an
  order from an earlier business date is advanced by the bank instead (its money was, or will
  be, paid out by its own date's settlement), and the payees repay the advance from their
  next settlements;
- a *settlement* pays each payee (sub-merchant or the platform) its net amount for one
  business date, repaying the bank's advances first; a negative net (an advance not repaid
  yet) is carried into the next day's settlement.

Orders, refunds and settlements each carry the business date (`*_date`) their money moved on,
so settlement and reconciliation aggregate by an indexed date instead of scanning times.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.pii import EncryptedString


class CollectionSettings(Base):
    """A tenant's collection set-up: its clearing account, cut-off and fee account."""

    __tablename__ = "collection_settings"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    # The clearing account is a group of ledger accounts (shards, the first is the primary id):
    # every order locks one shard, so concurrent orders do not queue on one row lock.
    clearing_account_id: Mapped[str] = mapped_column(String(60))
    clearing_account_ids: Mapped[list[str]] = mapped_column(JSON)
    # Where the canteen personal wallets' money is pooled (created with the settings).
    wallet_pool_account_id: Mapped[str] = mapped_column(String(60))
    # The platform's own account for its fees; None: fees are carried until it is set.
    fee_account_id: Mapped[str | None] = mapped_column(String(60))
    cutoff: Mapped[str] = mapped_column(String(5), default="00:00")
    order_ttl_seconds: Mapped[int] = mapped_column(default=1800)
    # Settlement runs for every date up to and including this one are done.
    settled_through: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class SubMerchant(Base):
    __tablename__ = "collection_sub_merchants"
    __table_args__ = (UniqueConstraint("tenant_id", "uscc"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18))
    settlement_account_id: Mapped[str] = mapped_column(String(60))
    fee_type: Mapped[str] = mapped_column(String(12))  # none | percentage | fixed
    fee_rate: Mapped[str] = mapped_column(String(24), default="0")
    fee_fixed_fen: Mapped[int] = mapped_column(default=0)
    fee_min_fen: Mapped[int] = mapped_column(default=0)
    fee_max_fen: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class Mandate(Base):
    """A debit mandate (代扣协议): the payer lets the platform debit an account within limits."""

    __tablename__ = "collection_mandates"
    __table_args__ = (UniqueConstraint("tenant_id", "reference"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    reference: Mapped[str] = mapped_column(String(64))
    payer_name: Mapped[str] = mapped_column(EncryptedString())
    payer_name_masked: Mapped[str] = mapped_column(String(80))
    payer_account_id: Mapped[str] = mapped_column(String(60), index=True)
    per_debit_limit_fen: Mapped[int]
    monthly_limit_fen: Mapped[int]
    expires_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))  # active | revoked | expired
    signed_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(12))
    revocation_reason: Mapped[str | None] = mapped_column(String(200))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class MandateUsage(Base):
    """What a mandate has debited in one calendar month (locked on every debit)."""

    __tablename__ = "collection_mandate_usage"

    mandate_id: Mapped[str] = mapped_column(ForeignKey("collection_mandates.id"), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    debited_fen: Mapped[int] = mapped_column(default=0)
    debit_count: Mapped[int] = mapped_column(default=0)


class VirtualAccount(Base):
    """A virtual sub-account number a payer transfers to; incoming money is matched by us."""

    __tablename__ = "collection_virtual_accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    ledger_account_id: Mapped[str] = mapped_column(String(60), unique=True)
    account_number: Mapped[str] = mapped_column(String(40), unique=True)
    label: Mapped[str] = mapped_column(String(200))
    owner_type: Mapped[str] = mapped_column(String(16))  # payer | park_tenant
    owner_id: Mapped[str | None] = mapped_column(String(40), index=True)
    status: Mapped[str] = mapped_column(String(12), default="active")
    # Money received and not yet applied to an order or bill (kept in the ledger account).
    unapplied_fen: Mapped[int] = mapped_column(default=0)
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]


class IncomingTransfer(Base):
    """Money that arrived at a virtual account, and how much of it was applied."""

    __tablename__ = "collection_incoming_transfers"
    __table_args__ = (UniqueConstraint("tenant_id", "journal_ref"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    virtual_account_id: Mapped[str] = mapped_column(ForeignKey("collection_virtual_accounts.id"),
                                                    index=True)
    amount_fen: Mapped[int]
    applied_fen: Mapped[int] = mapped_column(default=0)
    remitter_name_masked: Mapped[str] = mapped_column(String(80))
    remitter_account_masked: Mapped[str] = mapped_column(String(40))
    memo: Mapped[str] = mapped_column(String(140), default="")
    status: Mapped[str] = mapped_column(String(20))  # applied | partially_applied | unapplied
    journal_ref: Mapped[str] = mapped_column(String(120))
    received_at: Mapped[datetime]


class IncomingApplication(Base):
    """What part of one incoming transfer's money paid one order or bill payment.

    A virtual account's credit is spent first in, first applied, so one payment may draw on
    several transfers and one transfer pay several orders and bills; a transfer's rows add up
    to its `applied_fen`. Written by the matcher under the virtual account's row lock."""

    __tablename__ = "collection_incoming_applications"

    incoming_transfer_id: Mapped[str] = mapped_column(
        ForeignKey("collection_incoming_transfers.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)  # the order applied, in the transfer
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    kind: Mapped[str] = mapped_column(String(8))  # order | bill
    target_id: Mapped[str] = mapped_column(String(40))  # the order's id, or the bill's
    order_id: Mapped[str] = mapped_column(ForeignKey("collection_orders.id"), index=True)
    amount_fen: Mapped[int]
    applied_at: Mapped[datetime]


class Order(Base):
    __tablename__ = "collection_orders"
    __table_args__ = (
        UniqueConstraint("tenant_id", "merchant_order_no"),
        Index("ix_collection_orders_tenant_created_date", "tenant_id", "created_date"),
        Index("ix_collection_orders_tenant_final_date", "tenant_id", "final_date"),
        Index("ix_collection_orders_pending", "status", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    merchant_order_no: Mapped[str] = mapped_column(String(64))
    scene: Mapped[str] = mapped_column(String(12))  # general | canteen | park
    payer_method: Mapped[str] = mapped_column(String(20))  # mandate | virtual_account | wallet
    mandate_id: Mapped[str | None] = mapped_column(String(40), index=True)
    virtual_account_id: Mapped[str | None] = mapped_column(String(40), index=True)
    diner_id: Mapped[str | None] = mapped_column(String(40), index=True)
    bill_id: Mapped[str | None] = mapped_column(String(40), index=True)
    description: Mapped[str] = mapped_column(String(140), default="")
    amount_fen: Mapped[int]
    platform_share_fen: Mapped[int] = mapped_column(default=0)
    commission_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    refund_count: Mapped[int] = mapped_column(default=0)
    # The canteen breakdown: how much came from the subsidy and from the personal wallet.
    subsidy_fen: Mapped[int] = mapped_column(default=0)
    personal_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(String(200))
    journal_ref: Mapped[str] = mapped_column(String(120))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    created_date: Mapped[date] = mapped_column(Date)
    expires_at: Mapped[datetime | None]
    finalized_at: Mapped[datetime | None]
    final_date: Mapped[date | None] = mapped_column(Date)


class OrderSplit(Base):
    """One payee's share of an order: a sub-merchant (with the platform's commission) or the
    platform itself (`sub_merchant_id` None)."""

    __tablename__ = "collection_order_splits"

    order_id: Mapped[str] = mapped_column(ForeignKey("collection_orders.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    sub_merchant_id: Mapped[str | None] = mapped_column(ForeignKey("collection_sub_merchants.id"),
                                                        index=True)
    amount_fen: Mapped[int]
    fee_fen: Mapped[int] = mapped_column(default=0)
    # The sub-merchant's fee rule when the order was created (`FeeRule.as_stored`): the
    # commission is fixed by it when the order succeeds, however late, as a rule change
    # applies only to orders created after it. None: the platform's own share, a bill payment
    # (created and paid at once), or an order from before revision 0003; those take the rule
    # in force when paid.
    fee_rule: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    fee_refunded_fen: Mapped[int] = mapped_column(default=0)


class Refund(Base):
    __tablename__ = "collection_refunds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "refund_reference"),
        Index("ix_collection_refunds_tenant_date", "tenant_id", "refund_date"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    order_id: Mapped[str] = mapped_column(ForeignKey("collection_orders.id"), index=True)
    refund_reference: Mapped[str] = mapped_column(String(64))
    amount_fen: Mapped[int]
    reason: Mapped[str] = mapped_column(String(140), default="")
    status: Mapped[str] = mapped_column(String(12))  # succeeded
    # Canteen: how much went back to the subsidy, to the personal wallet, and (for a subsidy
    # whose month has expired) to the employer.
    subsidy_fen: Mapped[int] = mapped_column(default=0)
    personal_fen: Mapped[int] = mapped_column(default=0)
    employer_fen: Mapped[int] = mapped_column(default=0)
    destination_account_id: Mapped[str] = mapped_column(String(60))
    # What the bank advanced from its settlement-advances account (the whole refund of an order
    # from an earlier business date, else 0): the payees repay it from their next settlement.
    advanced_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    journal_ref: Mapped[str] = mapped_column(String(120))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    refund_date: Mapped[date] = mapped_column(Date)


class RefundSplit(Base):
    __tablename__ = "collection_refund_splits"

    refund_id: Mapped[str] = mapped_column(ForeignKey("collection_refunds.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    sub_merchant_id: Mapped[str | None] = mapped_column(ForeignKey("collection_sub_merchants.id"))
    amount_fen: Mapped[int]
    fee_refund_fen: Mapped[int] = mapped_column(default=0)


class SettlementRun(Base):
    """One tenant's settlement of one business date (the unit the worker does once)."""

    __tablename__ = "collection_settlement_runs"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    settlement_date: Mapped[date] = mapped_column(Date, primary_key=True)
    payee_count: Mapped[int]
    paid_fen: Mapped[int]
    carried_fen: Mapped[int]
    ran_at: Mapped[datetime]


class PayeeBalance(Base):
    """What a payee carries into its next settlement: negative while it owes the bank an
    advance it could not repay yet, positive when a payout could not be made (no fee account,
    account refused)."""

    __tablename__ = "collection_payee_balances"

    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), primary_key=True)
    payee_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    carried_fen: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime]


class Settlement(Base):
    """What one payee was paid (or carried) for one business date."""

    __tablename__ = "collection_settlements"
    __table_args__ = (
        UniqueConstraint("tenant_id", "settlement_date", "payee_key"),
        Index("ix_collection_settlements_tenant_paid_date", "tenant_id", "paid_date"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    settlement_date: Mapped[date] = mapped_column(Date)
    payee_type: Mapped[str] = mapped_column(String(12))  # merchant | platform
    sub_merchant_id: Mapped[str | None] = mapped_column(ForeignKey("collection_sub_merchants.id"),
                                                        index=True)
    payee_key: Mapped[str] = mapped_column(String(40))  # the sub-merchant id, or "platform"
    order_count: Mapped[int] = mapped_column(default=0)
    refund_count: Mapped[int] = mapped_column(default=0)
    gross_fen: Mapped[int] = mapped_column(default=0)
    fee_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    # The part of `refunded_fen` the bank advanced (refunds of earlier dates' orders) ...
    advanced_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    # ... and what this settlement repaid the bank of its advances (before paying the payee).
    repaid_fen: Mapped[int] = mapped_column(default=0, server_default="0")
    carried_in_fen: Mapped[int] = mapped_column(default=0)
    net_fen: Mapped[int] = mapped_column(default=0)
    paid_fen: Mapped[int] = mapped_column(default=0)
    carried_out_fen: Mapped[int] = mapped_column(default=0)
    # paid | carried | nothing (partially_paid: only before revision 0004)
    status: Mapped[str] = mapped_column(String(16))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    destination_account_id: Mapped[str | None] = mapped_column(String(60))
    journal_ref: Mapped[str | None] = mapped_column(String(120))
    created_at: Mapped[datetime]
    paid_at: Mapped[datetime | None]
    # The business date the run moved this payee's money (a payout or an advance repayment).
    paid_date: Mapped[date | None] = mapped_column(Date)


class ReconciliationComparison(Base):
    """The result of comparing a partner's uploaded records with a day's statement."""

    __tablename__ = "collection_reconciliation_comparisons"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    business_date: Mapped[date] = mapped_column(Date)
    record_count: Mapped[int]
    agrees: Mapped[bool]
    differences: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]


# --- canteen (智慧食堂) -------------------------------------------------------------------

class Employer(Base):
    __tablename__ = "collection_canteen_employers"
    __table_args__ = (UniqueConstraint("tenant_id", "uscc"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18))
    funding_account_id: Mapped[str] = mapped_column(String(60))
    subsidy_pool_account_id: Mapped[str] = mapped_column(String(60))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]


class Diner(Base):
    __tablename__ = "collection_canteen_diners"
    __table_args__ = (UniqueConstraint("employer_id", "employee_no"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    employer_id: Mapped[str] = mapped_column(ForeignKey("collection_canteen_employers.id"),
                                             index=True)
    employee_no: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(EncryptedString())
    name_masked: Mapped[str] = mapped_column(String(80))
    phone: Mapped[str | None] = mapped_column(EncryptedString())
    phone_masked: Mapped[str | None] = mapped_column(String(20))
    # The diner's own account that tops up the personal wallet (None: no top-ups).
    funding_account_id: Mapped[str | None] = mapped_column(String(60))
    personal_balance_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12), default="active")
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class TopUp(Base):
    """Money a diner moved from their own account into their personal wallet."""

    __tablename__ = "collection_canteen_top_ups"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    diner_id: Mapped[str] = mapped_column(ForeignKey("collection_canteen_diners.id"), index=True)
    from_account_id: Mapped[str] = mapped_column(String(60))
    amount_fen: Mapped[int]
    # The personal wallet's balance right after this top-up (the 201 says it; a later GET too).
    personal_balance_fen: Mapped[int]
    journal_ref: Mapped[str] = mapped_column(String(120))
    journal_entry_id: Mapped[str] = mapped_column(String(60))
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]


class SubsidyGrant(Base):
    """An employer's monthly grant batch: the total moved into its subsidy pool at once."""

    __tablename__ = "collection_subsidy_grants"
    __table_args__ = (UniqueConstraint("employer_id", "reference"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    employer_id: Mapped[str] = mapped_column(ForeignKey("collection_canteen_employers.id"),
                                             index=True)
    reference: Mapped[str] = mapped_column(String(64))
    month: Mapped[str] = mapped_column(String(7))
    diner_count: Mapped[int]
    total_fen: Mapped[int]
    expired_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12))  # funded | expired
    journal_ref: Mapped[str] = mapped_column(String(120))
    expires_at: Mapped[datetime] = mapped_column(index=True)
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    expired_at: Mapped[datetime | None]


class SubsidyLot(Base):
    """One diner's part of one grant: spendable in the grant's month only."""

    __tablename__ = "collection_subsidy_lots"
    __table_args__ = (UniqueConstraint("grant_id", "diner_id"),
                      Index("ix_collection_subsidy_lots_diner_month", "diner_id", "month"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    grant_id: Mapped[str] = mapped_column(ForeignKey("collection_subsidy_grants.id"))
    diner_id: Mapped[str] = mapped_column(ForeignKey("collection_canteen_diners.id"))
    month: Mapped[str] = mapped_column(String(7))
    granted_fen: Mapped[int]
    spent_fen: Mapped[int] = mapped_column(default=0)
    refunded_fen: Mapped[int] = mapped_column(default=0)
    # Refunds of this lot's spending that came after it expired (paid to the employer).
    refunded_after_expiry_fen: Mapped[int] = mapped_column(default=0)
    expired_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12))  # open | expired

    @property
    def balance_fen(self) -> int:
        return self.granted_fen - self.spent_fen + self.refunded_fen - self.expired_fen


class MealAllocation(Base):
    """Which subsidy lot paid how much of a meal (so a refund goes back where it came from)."""

    __tablename__ = "collection_meal_allocations"

    order_id: Mapped[str] = mapped_column(ForeignKey("collection_orders.id"), primary_key=True)
    lot_id: Mapped[str] = mapped_column(ForeignKey("collection_subsidy_lots.id"), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    amount_fen: Mapped[int]
    refunded_fen: Mapped[int] = mapped_column(default=0)


# --- park (智慧园区) -----------------------------------------------------------------------

class Park(Base):
    __tablename__ = "collection_parks"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    sub_merchant_id: Mapped[str] = mapped_column(ForeignKey("collection_sub_merchants.id"))
    remind_before_days: Mapped[list[int]] = mapped_column(JSON)
    remind_on_due: Mapped[bool]
    remind_after_days: Mapped[list[int]] = mapped_column(JSON)
    late_fee_daily_rate: Mapped[str] = mapped_column(String(24))
    late_fee_cap_rate: Mapped[str] = mapped_column(String(24))
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class ParkTenant(Base):
    """A tenant of a park (an enterprise renting space), with its own virtual account."""

    __tablename__ = "collection_park_tenants"
    __table_args__ = (UniqueConstraint("park_id", "uscc"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    park_id: Mapped[str] = mapped_column(ForeignKey("collection_parks.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str] = mapped_column(String(18))
    unit: Mapped[str] = mapped_column(String(60), default="")
    virtual_account_id: Mapped[str] = mapped_column(ForeignKey("collection_virtual_accounts.id"))
    created_at: Mapped[datetime]


class Bill(Base):
    __tablename__ = "collection_bills"
    __table_args__ = (UniqueConstraint("tenant_id", "reference"),
                      Index("ix_collection_bills_dunning", "tenant_id", "status",
                            "dunning_due_on"))

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    park_id: Mapped[str] = mapped_column(ForeignKey("collection_parks.id"), index=True)
    park_tenant_id: Mapped[str] = mapped_column(ForeignKey("collection_park_tenants.id"),
                                                index=True)
    sub_merchant_id: Mapped[str] = mapped_column(ForeignKey("collection_sub_merchants.id"))
    reference: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(String(16))  # rent | property_fee | electricity | water
    period: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(String(140), default="")
    amount_fen: Mapped[int]
    paid_principal_fen: Mapped[int] = mapped_column(default=0)
    late_fee_fen: Mapped[int] = mapped_column(default=0)
    paid_late_fee_fen: Mapped[int] = mapped_column(default=0)
    late_fee_through: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(12))  # open | overdue | paid | cancelled
    # Index into the park's reminder schedule of the last notice sent (-1: none yet).
    last_notice: Mapped[int] = mapped_column(default=-1)
    # The next business date dunning has something to do for this bill (None: nothing more).
    dunning_due_on: Mapped[date | None] = mapped_column(Date)
    created_by: Mapped[str] = mapped_column(String(60))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    overdue_at: Mapped[datetime | None]
    paid_at: Mapped[datetime | None]
    cancelled_at: Mapped[datetime | None]

    @property
    def outstanding_fen(self) -> int:
        return (self.amount_fen - self.paid_principal_fen) + (self.late_fee_fen
                                                              - self.paid_late_fee_fen)


class BillPayment(Base):
    """Money applied to a bill: one collection order, split into principal and late fee."""

    __tablename__ = "collection_bill_payments"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    bill_id: Mapped[str] = mapped_column(ForeignKey("collection_bills.id"), index=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("collection_orders.id"))
    incoming_transfer_id: Mapped[str | None] = mapped_column(
        ForeignKey("collection_incoming_transfers.id"))
    source: Mapped[str] = mapped_column(String(20))  # virtual_account | mandate
    principal_fen: Mapped[int]
    late_fee_fen: Mapped[int]
    created_at: Mapped[datetime]


class BillNotice(Base):
    """A dunning notice sent for a bill (the event is the delivery; this is the history)."""

    __tablename__ = "collection_bill_notices"
    __table_args__ = (UniqueConstraint("bill_id", "kind", "offset_days"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    bill_id: Mapped[str] = mapped_column(ForeignKey("collection_bills.id"), index=True)
    kind: Mapped[str] = mapped_column(String(12))  # before_due | due | after_due
    offset_days: Mapped[int]
    notice_date: Mapped[date] = mapped_column(Date)
    outstanding_fen: Mapped[int]
    sent_at: Mapped[datetime]
