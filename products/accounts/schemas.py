"""Request and response models of the accounts API (and the data of its events).

Money is `{"amount": "1234.50", "currency": "CNY"}`; times are RFC 3339 UTC. Personal data is
masked: a person's name (`张**`), ID number (`110***********7777`) and every account number
(`6222***********1234`, plus `account_number_last4`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.clock import Timestamp, to_rfc3339
from gateway.money import Money, MoneyIn
from products.accounts.models import Account, Transfer
from products.accounts.port import Balance, Statement, StatementLine


def _ts(value: datetime | None) -> str | None:
    return to_rfc3339(value) if value is not None else None


class OwnerOut(BaseModel):
    type: Literal["enterprise", "person", "bank"]
    name: str = Field(description="An enterprise's name in full; a person's masked (`张**`)")
    uscc: str | None = Field(None, description="Unified social credit code of an enterprise")
    id_number: str | None = Field(None, description="A person's resident ID number, masked",
                                  examples=["110***********7777"])


class BalancesOut(BaseModel):
    ledger: Money = Field(description="Booked balance: the sum of the account's postings")
    held: Money = Field(description="Reserved by active holds")
    available: Money = Field(description="ledger - held; never below -overdraft_limit")
    overdraft_limit: Money | None = Field(description="null: unlimited (bank internal accounts)")


class AccountOut(BaseModel):
    id: str = Field(examples=["acct_01JD3Y9W7F6Q2C8K5V4T3R2M1N"])
    object: Literal["account"] = "account"
    kind: Literal["settlement", "escrow", "wage", "virtual", "internal"]
    status: Literal["active", "frozen", "closed"]
    currency: Literal["CNY"] = "CNY"
    label: str | None
    owner: OwnerOut
    account_number: str = Field(description="Masked", examples=["6222***********1234"])
    account_number_last4: str = Field(examples=["1234"])
    parent_account_id: str | None
    debit_restriction: str | None = Field(
        description="Debits need an authorization accepted by this restriction's authority")
    balances: BalancesOut
    created_at: Timestamp

    @classmethod
    def from_model(cls, account: Account) -> AccountOut:
        limit = account.overdraft_limit_fen
        return cls(
            id=account.id, kind=account.kind,  # type: ignore[arg-type]
            status=account.status,  # type: ignore[arg-type]
            label=account.label,
            owner=OwnerOut(type=account.owner_type,  # type: ignore[arg-type]
                           name=account.owner_display_name, uscc=account.owner_uscc,
                           id_number=account.owner_id_number_masked),
            account_number=account.account_number_masked,
            account_number_last4=account.account_number_last4,
            parent_account_id=account.parent_id, debit_restriction=account.debit_restriction,
            balances=BalancesOut(ledger=Money.of(account.ledger_fen), held=Money.of(account.held_fen),
                                 available=Money.of(account.available_fen),
                                 overdraft_limit=Money.of(limit) if limit is not None else None),
            created_at=to_rfc3339(account.created_at))


class AccountList(BaseModel):
    data: list[AccountOut]
    next_cursor: str | None


class BalanceOut(BaseModel):
    object: Literal["balance"] = "balance"
    account_id: str
    ledger: Money
    held: Money
    available: Money
    overdraft_limit: Money | None
    as_of: str

    @classmethod
    def from_record(cls, balance: Balance) -> BalanceOut:
        limit = balance.overdraft_limit_fen
        return cls(account_id=balance.account_id, ledger=Money.of(balance.ledger_fen),
                   held=Money.of(balance.held_fen), available=Money.of(balance.available_fen),
                   overdraft_limit=Money.of(limit) if limit is not None else None,
                   as_of=to_rfc3339(balance.as_of))


class TransactionOut(BaseModel):
    id: str = Field(description="The posting's id", examples=["pst_01JD3Y9W7F6Q2C8K5V4T3R2M1N"])
    object: Literal["transaction"] = "transaction"
    journal_entry_id: str
    direction: Literal["credit", "debit"]
    amount: Money = Field(description="Always positive; `direction` gives the sign")
    balance_after: Money = Field(description="The ledger balance right after this posting")
    counterparty_account_id: str | None = Field(
        description="The other account of a two-sided movement (null for a split)")
    purpose: str
    reference_type: str
    reference_id: str
    memo: str | None
    created_at: Timestamp

    @classmethod
    def from_line(cls, line: StatementLine) -> TransactionOut:
        return cls(id=line.posting_id, journal_entry_id=line.entry_id,
                   direction="credit" if line.amount_fen > 0 else "debit",
                   amount=Money.of(abs(line.amount_fen)),
                   balance_after=Money.of(line.balance_after_fen),
                   counterparty_account_id=line.counterparty_account_id, purpose=line.purpose,
                   reference_type=line.reference_type, reference_id=line.reference_id,
                   memo=line.memo, created_at=to_rfc3339(line.created_at))


class TransactionList(BaseModel):
    data: list[TransactionOut]
    next_cursor: str | None


class AccountStatementOut(BaseModel):
    object: Literal["statement"] = "statement"
    account_id: str
    start: str
    end: str
    opening_balance: Money
    closing_balance: Money
    total_credits: Money
    total_debits: Money
    transactions: list[TransactionOut]

    @classmethod
    def from_record(cls, statement: Statement) -> AccountStatementOut:
        return cls(account_id=statement.account_id, start=to_rfc3339(statement.start),
                   end=to_rfc3339(statement.end), opening_balance=Money.of(statement.opening_fen),
                   closing_balance=Money.of(statement.closing_fen),
                   total_credits=Money.of(statement.credits_fen),
                   total_debits=Money.of(statement.debits_fen),
                   transactions=[TransactionOut.from_line(line) for line in statement.lines])


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_account_id: str = Field(max_length=60, examples=["acct_01JD3Y9W7F6Q2C8K5V4T3R2M1N"])
    to_account_id: str = Field(max_length=60, examples=["acct_01JD3YA2B8C9D0E1F2G3H4J5K6"])
    amount: MoneyIn
    memo: str | None = Field(None, min_length=1, max_length=140, examples=["3月货款"])
    to_account_name: str | None = Field(
        None, min_length=1, max_length=200,
        description="The payee's name as the payer knows it: checked against the account "
                    "(户名校验); a mismatch fails the transfer with `name_mismatch`")


class TransferOut(BaseModel):
    id: str = Field(examples=["trf_01JD3Y9W7F6Q2C8K5V4T3R2M1N"])
    object: Literal["transfer"] = "transfer"
    from_account_id: str
    to_account_id: str
    amount: Money
    memo: str | None
    status: Literal["pending", "completed", "failed"]
    failure_code: str | None = Field(
        description="Why a failed transfer failed: insufficient_funds, account_frozen, "
                    "account_closed, debit_restricted, name_mismatch, processing_failed, …")
    failure_message: str | None
    journal_entry_id: str | None
    created_at: Timestamp
    resolved_at: Timestamp | None = Field(description="When it completed or failed")

    @classmethod
    def from_model(cls, transfer: Transfer) -> TransferOut:
        return cls(id=transfer.id, from_account_id=transfer.from_account_id,
                   to_account_id=transfer.to_account_id, amount=Money.of(transfer.amount_fen),
                   memo=transfer.memo, status=transfer.status,  # type: ignore[arg-type]
                   failure_code=transfer.failure_code, failure_message=transfer.failure_message,
                   journal_entry_id=transfer.journal_entry_id,
                   created_at=to_rfc3339(transfer.created_at), resolved_at=_ts(transfer.resolved_at))


class TransferList(BaseModel):
    data: list[TransferOut]
    next_cursor: str | None
