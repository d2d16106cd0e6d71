"""Accounts tables: accounts, the double-entry journal (entries and postings), holds, transfers.

Money is integer fen. An account's `ledger_fen` and `held_fen` are denormalized: they change
only in `products.accounts.service`, in the same transaction as the postings or holds that
justify them, under the account's row lock, so that

    accounts.ledger_fen == sum(postings.amount_fen of the account)
    accounts.held_fen   == sum(amount - captured - released of the account's active holds)

(`service.audit` checks both). Every journal entry's postings sum to zero, so the sum of all
postings of a tenant is zero. Postings of one account are numbered (`seq`) under the lock and
their `created_at` never decreases with `seq`, so `balance_after_fen` is a true running balance.

Personal data (a person's name and resident ID number, account numbers) is stored encrypted,
with a keyed digest for look-ups and the masked form beside it: listings never decrypt.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from gateway.db import Base
from gateway.pii import EncryptedString


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (
        UniqueConstraint("tenant_id", "account_number_digest"),
        UniqueConstraint("tenant_id", "internal_purpose"),
        Index("ix_accounts_tenant_id_id", "tenant_id", "id"),
        CheckConstraint("held_fen >= 0", name="held_non_negative"),
        CheckConstraint("overdraft_limit_fen IS NULL OR overdraft_limit_fen >= 0",
                        name="overdraft_non_negative"),
        # The last line of defence: available (ledger - held) never below -overdraft.
        # A NULL limit (the bank's internal accounts only) is unlimited.
        CheckConstraint(
            "overdraft_limit_fen IS NULL OR ledger_fen - held_fen + overdraft_limit_fen >= 0",
            name="within_overdraft"),
        CheckConstraint("kind IN ('settlement', 'escrow', 'wage', 'virtual', 'internal')",
                        name="kind"),
        CheckConstraint("status IN ('active', 'frozen', 'closed')", name="status"),
        CheckConstraint("owner_type IN ('enterprise', 'person', 'bank')", name="owner_type"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12))
    currency: Mapped[str] = mapped_column(String(3), default="CNY")
    label: Mapped[str | None] = mapped_column(String(100))
    owner_type: Mapped[str] = mapped_column(String(12))
    owner_name: Mapped[str] = mapped_column(EncryptedString())
    # What responses show: an enterprise's name in full, a person's masked (张**).
    owner_display_name: Mapped[str] = mapped_column(String(200))
    owner_uscc: Mapped[str | None] = mapped_column(String(18), index=True)
    owner_id_number: Mapped[str | None] = mapped_column(EncryptedString())
    owner_id_number_digest: Mapped[str | None] = mapped_column(String(64), index=True)
    owner_id_number_masked: Mapped[str | None] = mapped_column(String(24))
    account_number: Mapped[str] = mapped_column(EncryptedString())
    account_number_digest: Mapped[str] = mapped_column(String(64))
    account_number_last4: Mapped[str] = mapped_column(String(4))
    account_number_masked: Mapped[str] = mapped_column(String(40))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    # NULL: unlimited (internal accounts only, such as the bank's funding account).
    overdraft_limit_fen: Mapped[int | None]
    debit_restriction: Mapped[str | None] = mapped_column(String(40))
    internal_purpose: Mapped[str | None] = mapped_column(String(60))
    ledger_fen: Mapped[int] = mapped_column(default=0)
    held_fen: Mapped[int] = mapped_column(default=0)
    posting_seq: Mapped[int] = mapped_column(default=0)
    last_posted_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def available_fen(self) -> int:
        return self.ledger_fen - self.held_fen


class JournalEntry(Base):
    """One money movement; its postings sum to zero. `journal_ref` makes posting idempotent."""

    __tablename__ = "journal_entries"
    __table_args__ = (
        UniqueConstraint("tenant_id", "journal_ref"),
        Index("ix_journal_entries_reference", "tenant_id", "reference_type", "reference_id"),
        CheckConstraint("total_fen > 0", name="total_positive"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    journal_ref: Mapped[str] = mapped_column(String(160))
    kind: Mapped[str] = mapped_column(String(16))
    purpose: Mapped[str] = mapped_column(String(40))
    reference_type: Mapped[str] = mapped_column(String(40))
    reference_id: Mapped[str] = mapped_column(String(80))
    hold_id: Mapped[str | None] = mapped_column(ForeignKey("holds.id"), index=True)
    memo: Mapped[str | None] = mapped_column(String(200))
    # sha256 of what was asked (legs, reference): a replay must ask for the same movement.
    fingerprint: Mapped[str] = mapped_column(String(64))
    total_fen: Mapped[int]
    created_at: Mapped[datetime]


class Posting(Base):
    """One leg of a journal entry: positive credits the account, negative debits it."""

    __tablename__ = "postings"
    __table_args__ = (
        UniqueConstraint("account_id", "seq"),
        Index("ix_postings_account_id_created_at", "account_id", "created_at"),
        CheckConstraint("amount_fen <> 0", name="non_zero"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    entry_id: Mapped[str] = mapped_column(ForeignKey("journal_entries.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    seq: Mapped[int]
    amount_fen: Mapped[int]
    balance_after_fen: Mapped[int]
    created_at: Mapped[datetime]


class Hold(Base):
    """Money reserved on an account: counted in `held_fen` while active."""

    __tablename__ = "holds"
    __table_args__ = (
        UniqueConstraint("tenant_id", "hold_ref"),
        Index("ix_holds_account_id_status", "account_id", "status"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("captured_fen >= 0 AND released_fen >= 0", name="parts_non_negative"),
        CheckConstraint("captured_fen + released_fen <= amount_fen", name="parts_within_amount"),
        CheckConstraint("status IN ('active', 'captured', 'released')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"), index=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    hold_ref: Mapped[str] = mapped_column(String(160))
    amount_fen: Mapped[int]
    captured_fen: Mapped[int] = mapped_column(default=0)
    released_fen: Mapped[int] = mapped_column(default=0)
    status: Mapped[str] = mapped_column(String(12))
    purpose: Mapped[str] = mapped_column(String(40))
    reference_type: Mapped[str] = mapped_column(String(40))
    reference_id: Mapped[str] = mapped_column(String(80))
    memo: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]

    @property
    def remaining_fen(self) -> int:
        return self.amount_fen - self.captured_fen - self.released_fen


class Transfer(Base):
    """A transfer asked for through the API (or a product): its outcome, and its entry if paid."""

    __tablename__ = "transfers"
    __table_args__ = (
        Index("ix_transfers_tenant_id_id", "tenant_id", "id"),
        Index("ix_transfers_status_resolves_at", "status", "resolves_at"),
        CheckConstraint("amount_fen > 0", name="amount_positive"),
        CheckConstraint("status IN ('pending', 'completed', 'failed')", name="status"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id"))
    from_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    to_account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    amount_fen: Mapped[int]
    memo: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(12))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(String(300))
    journal_entry_id: Mapped[str | None] = mapped_column(ForeignKey("journal_entries.id"))
    # A sandbox transfer that stays pending reserves its amount with this hold until resolved.
    hold_id: Mapped[str | None] = mapped_column(ForeignKey("holds.id"))
    resolves_at: Mapped[datetime | None]
    created_by: Mapped[str] = mapped_column(String(80))
    created_at: Mapped[datetime]
    resolved_at: Mapped[datetime | None]
