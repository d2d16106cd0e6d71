"""Collection request and response models (pydantic v2).

Money is `{"amount": "12.34", "currency": "CNY"}`; rates are decimal strings ("0.006" is
0.6 %); business dates are YYYY-MM-DD and months YYYY-MM in Asia/Shanghai; timestamps are
RFC 3339 UTC. Personal data (payer and diner names, phone numbers) only ever comes out masked.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from gateway import patterns
from gateway.clock import IsoDate, Timestamp
from gateway.errors import ValidationFailed
from gateway.identifiers import USCC
from gateway.money import Money, MoneyIn, MoneyInNonNegative
from products.accounts import reconciliation
from products.accounts.reconciliation import parse_cutoff
from products.collection.rules import parse_rate

# No examples on these two: each field gives its own (an order number is not a refund's or a
# bill's, and an `acct_…` id of the account it means), else Optional fields show two.
Reference = Annotated[str, Field(min_length=1, max_length=64,
                                 pattern=patterns.REFERENCE_ANY_LENGTH)]
AccountId = Annotated[str, Field(min_length=1, max_length=60, description="A ledger account id")]
ResourceId = Annotated[str, Field(min_length=1, max_length=40)]
Text140 = Annotated[str, Field(max_length=140)]
Month = Annotated[str, Field(pattern=patterns.MONTH, examples=["2026-11"])]


def _cutoff(value: str) -> str:
    parse_cutoff(value)
    return value


Cutoff = Annotated[str, AfterValidator(_cutoff),
                   Field(description="Daily cut-off HH:MM in Asia/Shanghai; 00:00 is midnight",
                         examples=["23:00"])]


def _fee_rate(value: str) -> str:
    parse_rate(value, maximum=Decimal("0.2"), what="rate")
    return value


def _daily_rate(value: str) -> str:
    parse_rate(value, maximum=Decimal("0.01"), what="late_fee_daily_rate")
    return value


def _cap_rate(value: str) -> str:
    parse_rate(value, maximum=Decimal("1"), what="late_fee_cap_rate")
    return value


FeeRate = Annotated[str, AfterValidator(_fee_rate),
                    Field(description="Fraction of the share, at most 0.2", examples=["0.006"])]
DailyRate = Annotated[str, AfterValidator(_daily_rate),
                      Field(description="Late fee per overdue day as a fraction of the unpaid "
                                        "principal, at most 0.01", examples=["0.0005"])]
CapRate = Annotated[str, AfterValidator(_cap_rate),
                    Field(description="Cap on the late fee as a fraction of the bill's amount, "
                                      "at most 1", examples=["0.1"])]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(_Out):
    next_cursor: str | None = None


# --- settings ------------------------------------------------------------------------------

class SettingsOut(_Out):
    clearing_account_id: str = Field(description="Collected money waits here until settlement")
    clearing_account_ids: list[str] = Field(
        description="The ledger accounts that together are the clearing account (shards)")
    wallet_pool_account_id: str = Field(description="Pools the canteen personal wallets")
    fee_account_id: str | None = Field(description="The platform's account for its fees")
    cutoff: str
    order_ttl_seconds: int
    settled_through: date | None
    updated_at: Timestamp


class SettingsUpdate(_In):
    cutoff: Cutoff | None = Field(None, description="Only before the first order")
    fee_account_id: AccountId | None = Field(None, examples=["acct_01JD0Z3K7M9P2R4T6V8X0Y1Z3A"])
    order_ttl_seconds: StrictInt | None = Field(None, ge=60, le=7 * 86400,
                                          description="Default life of a virtual-account order")


# --- sub-merchants ---------------------------------------------------------------------------

class FeeRuleIn(_In):
    type: Literal["none", "percentage", "fixed"]
    rate: FeeRate | None = Field(None, description="For `percentage`")
    amount: MoneyIn | None = Field(None, description="For `fixed`: the fee per order share")
    minimum: MoneyInNonNegative | None = Field(None, description="For `percentage`")
    maximum: MoneyIn | None = Field(None, description="For `percentage`")

    @model_validator(mode="after")
    def _consistent(self) -> FeeRuleIn:
        if self.type == "percentage":
            if self.rate is None:
                raise ValueError("a percentage fee rule needs a rate")
            if self.amount is not None:
                raise ValueError("a percentage fee rule takes no amount")
            if self.minimum and self.maximum and self.minimum.fen > self.maximum.fen:
                raise ValueError("minimum must not exceed maximum")
        elif self.type == "fixed":
            if self.amount is None:
                raise ValueError("a fixed fee rule needs an amount")
            if self.rate is not None or self.minimum is not None or self.maximum is not None:
                raise ValueError("a fixed fee rule takes only an amount")
        elif any(v is not None for v in (self.rate, self.amount, self.minimum, self.maximum)):
            raise ValueError("fee rule `none` takes no rate or amounts")
        return self


class FeeRuleOut(_Out):
    type: str
    rate: str | None = None
    amount: Money | None = None
    minimum: Money | None = None
    maximum: Money | None = None


class SubMerchantCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["苏州恒达餐饮管理有限公司"])
    uscc: USCC
    settlement_account_id: AccountId = Field(examples=["acct_01JD0Z5F8H2J4K6M8N0P2Q4R6S"])
    fee_rule: FeeRuleIn = Field(default_factory=lambda: FeeRuleIn(type="none"))


class SubMerchantUpdate(_In):
    settlement_account_id: AccountId | None = Field(
        None, examples=["acct_01JD0Z5F8H2J4K6M8N0P2Q4R6S"])
    fee_rule: FeeRuleIn | None = Field(None, description="Applies to orders from now on")
    status: Literal["active", "suspended"] | None = None


class SubMerchantOut(_Out):
    id: str
    name: str
    uscc: str
    settlement_account_id: str
    fee_rule: FeeRuleOut
    status: str
    created_at: Timestamp
    updated_at: Timestamp


class SubMerchantPage(Page):
    data: list[SubMerchantOut]


# --- mandates ---------------------------------------------------------------------------------

class MandateCreate(_In):
    reference: Reference = Field(description="The platform's agreement number",
                                 examples=["MDT-2026-004512"])
    payer_name: str = Field(min_length=1, max_length=100, examples=["张伟"])
    payer_account_id: AccountId = Field(examples=["acct_01JD0Z9B3C5D7E9F1G3H5J7K9M"])
    per_debit_limit: MoneyIn
    monthly_limit: MoneyIn
    expires_on: IsoDate = Field(description="Last business date a debit may be made")

    @model_validator(mode="after")
    def _limits(self) -> MandateCreate:
        if self.per_debit_limit.fen > self.monthly_limit.fen:
            raise ValueError("per_debit_limit must not exceed monthly_limit")
        return self


class MandateRevoke(_In):
    requested_by: Literal["payer", "platform"] = Field(
        description="`payer`: the payer withdrew the authorization (always allowed)")
    reason: str = Field("", max_length=200)


class MandateOut(_Out):
    id: str
    reference: str
    payer_name: str = Field(description="Masked")
    payer_account_id: str
    per_debit_limit: Money
    monthly_limit: Money
    debited_this_month: Money
    remaining_this_month: Money
    expires_on: date
    status: str
    signed_at: Timestamp
    revoked_at: Timestamp | None
    revoked_by: str | None
    revocation_reason: str | None


class MandatePage(Page):
    data: list[MandateOut]


# --- virtual accounts ---------------------------------------------------------------------------

class VirtualAccountCreate(_In):
    label: str = Field(min_length=1, max_length=200, description="Whose account this is",
                       examples=["Payer 10023"])


class VirtualAccountOut(_Out):
    id: str
    account_number: str = Field(description="The number the payer transfers to")
    ledger_account_id: str
    label: str
    owner_type: str
    owner_id: str | None
    unapplied: Money = Field(description="Received and not yet applied to an order or bill")
    status: str
    created_at: Timestamp


class VirtualAccountPage(Page):
    data: list[VirtualAccountOut]


class IncomingTransferSimulate(_In):
    amount: MoneyIn
    remitter_name: str = Field(min_length=1, max_length=100, examples=["苏州恒达精密机械有限公司"])
    remitter_account: str = Field("6222020000000000000", min_length=4, max_length=34,
                                  pattern=patterns.DIGITS)
    memo: str = Field("", max_length=140,
                      description="The transfer's postscript (附言): an order number or bill "
                                  "reference named here is paid first")


class Application(_Out):
    """Part of a transfer's money paying an order, or a bill (through an order of its own)."""

    kind: Literal["order", "bill"]
    id: str = Field(description="The order's id, or the bill's")
    order_id: str = Field(description="The order the money paid (a bill payment's own order)")
    amount: Money = Field(description="What this transfer's money paid of it")


class IncomingTransferOut(_Out):
    id: str
    virtual_account_id: str
    amount: Money
    applied: Money
    status: str
    remitter_name: str
    remitter_account: str
    memo: str
    received_at: Timestamp
    applications: list[Application] = Field(
        default_factory=list,
        description="What this transfer's money paid, in the order paid: credit is spent first "
                    "in, first applied, so a payment may draw on several transfers; the amounts "
                    "add up to `applied`")


class IncomingTransferPage(Page):
    data: list[IncomingTransferOut]


# --- orders and refunds ----------------------------------------------------------------------------

class SplitIn(_In):
    sub_merchant_id: ResourceId
    amount: MoneyIn


class MandatePayer(_In):
    method: Literal["mandate"]
    mandate_id: ResourceId


class VirtualAccountPayer(_In):
    method: Literal["virtual_account"]
    virtual_account_id: ResourceId
    expires_in_seconds: StrictInt | None = Field(None, ge=60, le=7 * 86400)


class OrderCreate(_In):
    merchant_order_no: Reference = Field(examples=["ORD-20261102-000123"])
    amount: MoneyIn
    payer: MandatePayer | VirtualAccountPayer = Field(discriminator="method")
    splits: list[SplitIn] = Field(min_length=1, max_length=20)
    platform_fee: MoneyInNonNegative | None = Field(
        None, description="The platform's own share; splits + platform_fee = amount exactly")
    description: Text140 = ""


class SplitOut(_Out):
    sub_merchant_id: str | None = Field(description="None: the platform's own share")
    amount: Money
    fee: Money = Field(description="The platform's commission on this share (fee rule)")
    refunded: Money


class OrderOut(_Out):
    id: str
    merchant_order_no: str
    scene: str
    status: str
    amount: Money
    refunded: Money
    refundable: Money
    payer_method: str
    mandate_id: str | None
    virtual_account_id: str | None
    virtual_account_number: str | None = None
    diner_id: str | None
    bill_id: str | None
    subsidy_paid: Money | None = None
    personal_paid: Money | None = None
    splits: list[SplitOut]
    description: str
    failure_code: str | None = Field(description="Why the order failed or expired; null while it "
                                                 "is pending and once it succeeded")
    failure_message: str | None
    created_at: Timestamp
    expires_at: Timestamp | None
    finalized_at: Timestamp | None
    business_date: date | None = Field(description="The date the money moved (settlement date)")


class OrderPage(Page):
    data: list[OrderOut]


class RefundSplitIn(_In):
    sub_merchant_id: ResourceId | None = Field(description="None: the platform's own share")
    amount: MoneyIn


class RefundCreate(_In):
    amount: MoneyIn
    refund_reference: Reference | None = Field(None, description="Your refund number",
                                               examples=["RFD-20261103-000017"])
    reason: Text140 = ""
    splits: list[RefundSplitIn] | None = Field(
        None, max_length=21,
        description="Which shares give the money back; default: in proportion to what is left")


class RefundSplitOut(_Out):
    sub_merchant_id: str | None
    amount: Money
    fee_refund: Money


class RefundOut(_Out):
    id: str
    order_id: str
    refund_reference: str
    status: str
    amount: Money
    advanced: Money = Field(
        description="What the bank advanced of this refund: all of a refund of an order from an "
                    "earlier business date (its shares were settled, or will be, by that date), "
                    "repaid from the payees' next settlement; 0 when it came from the clearing "
                    "account")
    reason: str
    splits: list[RefundSplitOut]
    to_subsidy: Money | None = None
    to_personal_wallet: Money | None = None
    to_employer: Money | None = None
    created_at: Timestamp
    business_date: date


class RefundPage(Page):
    data: list[RefundOut]


# --- settlements and reconciliation -----------------------------------------------------------

class SettlementOut(_Out):
    id: str
    settlement_date: date
    payee_type: str
    sub_merchant_id: str | None
    order_count: int
    refund_count: int
    gross: Money
    fees: Money
    refunded: Money
    advanced: Money = Field(
        description="The part of `refunded` the bank advanced (refunds of earlier dates' orders): "
                    "the payee owes it back")
    carried_in: Money = Field(description="Carried from the last settlement: negative, an "
                                          "advance not repaid yet; positive, a payout not made")
    net: Money
    advance_repaid: Money = Field(
        description="Repaid to the bank of its advances from this settlement, before the payout")
    paid: Money
    carried_out: Money
    status: str = Field(description="paid | carried | nothing (partially_paid: settlements "
                                    "from before advances)")
    destination_account_id: str | None
    created_at: Timestamp
    paid_at: Timestamp | None


class SettlementPage(Page):
    data: list[SettlementOut]


# The statement is the same document in every product (products.accounts.reconciliation).
ReconciliationStatementOut = reconciliation.ReconciliationStatementOut


# The answer of a comparison is the same in every product (products.accounts.reconciliation).
ComparisonOut = reconciliation.ComparisonOut


# --- canteen -------------------------------------------------------------------------------------

class EmployerCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    uscc: USCC
    funding_account_id: AccountId = Field(description="Pays the grants; gets expired subsidies",
                                          examples=["acct_01JD0ZB4N6P8Q0R2S4T6V8W0X2"])


class EmployerOut(_Out):
    id: str
    name: str
    uscc: str
    funding_account_id: str
    subsidy_pool_account_id: str
    created_at: Timestamp


class EmployerPage(Page):
    data: list[EmployerOut]


class DinerCreate(_In):
    employee_no: str = Field(min_length=1, max_length=40, pattern=patterns.CODE)
    name: str = Field(min_length=1, max_length=100)
    phone: str | None = Field(None, pattern=patterns.MOBILE)
    funding_account_id: AccountId | None = Field(None, description="Tops up the personal wallet",
                                                 examples=["acct_01JD0ZC7Q9R1S3T5V7W9X1Y3Z5"])


class DinerOut(_Out):
    id: str
    employer_id: str
    employee_no: str
    name: str = Field(description="Masked")
    phone: str | None = Field(description="Masked")
    funding_account_id: str | None
    subsidy_balance: Money = Field(description="Spendable subsidy of the current month")
    personal_balance: Money
    status: str
    created_at: Timestamp


class DinerPage(Page):
    data: list[DinerOut]


class GrantItem(_In):
    diner_id: ResourceId
    amount: MoneyIn


# The last month a grant can be for: its subsidies expire when the next month begins, and
# the month after 9999-12 is beyond the calendar the platform keeps.
LAST_GRANT_MONTH = "9999-11"


def _grant_month_in_range(month: str) -> str:
    # The platform's out-of-range problem rather than a ValueError, so that the answer is the
    # same 422 `value_out_of_range` as for any other date beyond the calendar.
    if month > LAST_GRANT_MONTH:
        raise ValidationFailed(
            f"A grant's month is at most {LAST_GRANT_MONTH}: its subsidies expire when the next "
            "month begins.", code="value_out_of_range",
            errors=[{"field": "body.month", "message": f"at most {LAST_GRANT_MONTH}",
                     "code": "value_out_of_range"}])
    return month


class GrantCreate(_In):
    reference: Reference = Field(description="Your number for this month's funding",
                                 examples=["SUB-202611-HR01"])
    month: Annotated[Month, AfterValidator(_grant_month_in_range)] = Field(
        description="The month the subsidy can be spent in (at most 9999-11); it expires after")
    items: list[GrantItem] = Field(min_length=1, max_length=5000)


class GrantOut(_Out):
    id: str
    employer_id: str
    reference: str
    month: str
    diner_count: int
    total: Money
    expired: Money
    status: str
    expires_at: Timestamp
    created_at: Timestamp
    expired_at: Timestamp | None


class TopUpCreate(_In):
    amount: MoneyIn


class TopUpOut(_Out):
    id: str = Field(description="The `top_up_id` of the `diner_wallet.topped_up` event",
                    examples=["ctop_01M99MJ2TC3BNF42VCZ3QT8E1M"])
    diner_id: str
    from_account_id: str = Field(description="The diner's own account the money came from")
    amount: Money
    personal_balance: Money = Field(description="The personal wallet's balance right after "
                                                "this top-up")
    journal_entry_id: str = Field(
        description="The ledger journal entry (`jnl_…`) that moved the money: the "
                    "`journal_entry_id` of the accounts' lines in "
                    "`GET /v1/accounts/{id}/transactions`",
        examples=["jnl_01M99MQH8J0NBMBZ80E30TKNSN"])
    created_at: Timestamp


class TopUpPage(Page):
    data: list[TopUpOut]


class MealCreate(_In):
    merchant_order_no: Reference = Field(examples=["MEAL-20261102-0815-0042"])
    diner_id: ResourceId
    sub_merchant_id: ResourceId = Field(description="The canteen operator paid for the meal")
    amount: MoneyIn
    platform_fee: MoneyInNonNegative | None = None
    description: Text140 = ""


class SubsidyReportRow(_Out):
    diner_id: str
    employee_no: str
    name: str
    granted: Money
    spent: Money
    refunded: Money
    expired: Money
    returned_after_expiry: Money
    meal_count: int


class SubsidyReport(_Out):
    employer_id: str
    month: str
    status: str = Field(description="`open` until the month's subsidies expired")
    granted: Money
    spent: Money
    refunded: Money
    expired: Money
    returned_after_expiry: Money
    diners: list[SubsidyReportRow]


# --- park ---------------------------------------------------------------------------------------------

class DunningIn(_In):
    # Days may not repeat (checked below; `uniqueItems` tells the document's readers).
    remind_before_days: list[Annotated[int, Field(ge=1, le=60)]] = Field(
        default_factory=lambda: [7, 3], max_length=10, json_schema_extra={"uniqueItems": True})
    remind_on_due: bool = True
    remind_after_days: list[Annotated[int, Field(ge=1, le=365)]] = Field(
        default_factory=lambda: [1, 7, 15], max_length=20, json_schema_extra={"uniqueItems": True})
    late_fee_daily_rate: DailyRate = "0.0005"
    late_fee_cap_rate: CapRate = "0.1"

    @model_validator(mode="after")
    def _distinct(self) -> DunningIn:
        for name in ("remind_before_days", "remind_after_days"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a day")
        return self


class DunningOut(_Out):
    remind_before_days: list[int]
    remind_on_due: bool
    remind_after_days: list[int]
    late_fee_daily_rate: str
    late_fee_cap_rate: str


class ParkCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    sub_merchant_id: ResourceId = Field(description="The property company paid for the bills")
    dunning: DunningIn = Field(default_factory=DunningIn)


class ParkUpdate(_In):
    dunning: DunningIn


class ParkOut(_Out):
    id: str
    name: str
    sub_merchant_id: str
    dunning: DunningOut
    created_at: Timestamp
    updated_at: Timestamp


class ParkPage(Page):
    data: list[ParkOut]


class ParkTenantCreate(_In):
    name: str = Field(min_length=1, max_length=200)
    uscc: USCC
    unit: str = Field("", max_length=60, examples=["B2-301"])


class ParkTenantOut(_Out):
    id: str
    park_id: str
    name: str
    uscc: str
    unit: str
    virtual_account_id: str
    virtual_account_number: str
    credit: Money = Field(description="Money received and not yet applied to a bill")
    created_at: Timestamp


class ParkTenantPage(Page):
    data: list[ParkTenantOut]


class BillCreate(_In):
    reference: Reference = Field(description="Your bill number, named in transfer memos",
                                 examples=["RENT-B2-1203-202611"])
    park_tenant_id: ResourceId
    item: Literal["rent", "property_fee", "electricity", "water"]
    period: str = Field(min_length=1, max_length=20, examples=["2026-11"])
    amount: MoneyIn
    due_date: IsoDate
    description: Text140 = ""
    sub_merchant_id: ResourceId | None = Field(None, description="Default: the park's")


class BillPay(_In):
    mandate_id: ResourceId


class BillPaymentOut(_Out):
    id: str
    order_id: str
    source: str
    principal: Money
    late_fee: Money
    refunded: Money = Field(description="Refunded of this payment so far (its order's "
                                        "refunds); the bill owes that amount again")
    created_at: Timestamp


class BillNoticeOut(_Out):
    kind: str
    offset_days: int
    notice_date: date
    outstanding: Money
    sent_at: Timestamp


class BillOut(_Out):
    id: str
    park_id: str
    park_tenant_id: str
    sub_merchant_id: str
    reference: str
    item: str
    period: str
    description: str
    amount: Money
    late_fee: Money
    paid: Money
    outstanding: Money
    due_date: date
    status: str
    created_at: Timestamp
    overdue_at: Timestamp | None
    paid_at: Timestamp | None
    cancelled_at: Timestamp | None
    payments: list[BillPaymentOut] = Field(default_factory=list)
    notices: list[BillNoticeOut] = Field(default_factory=list)


class BillPage(Page):
    data: list[BillOut]
