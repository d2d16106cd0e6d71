"""Payroll request and response models. Personal data appears only masked in responses."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from gateway import patterns
from gateway.clock import IsoDate, Timestamp
from gateway.money import Money, MoneyIn

Purpose = Literal["wages", "bonus", "reimbursement"]
BatchStatus = Literal["received", "validated", "rejected", "scheduled", "processing", "completed",
                      "partially_completed", "failed", "cancelled"]
ItemStatus = Literal["pending", "succeeded", "failed", "cancelled", "returned"]
WAGE_MONTH_PATTERN = patterns.MONTH
REFERENCE_PATTERN = patterns.REFERENCE
REGION_PATTERN = patterns.REGION


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class BatchHeaderIn(_In):
    payer_account_id: str = Field(min_length=1, max_length=40,
                                  description="The employer's settlement account (or a project's "
                                              "wage account) to pay from")
    purpose: Purpose
    value_date: IsoDate = Field(description="Business date (Asia/Shanghai) on which to pay; today or "
                                         "later")
    declared_count: StrictInt = Field(ge=1, le=100_000, description="Number of items (control total)")
    declared_total: MoneyIn = Field(description="Sum of the items (control total)")
    external_reference: str = Field(pattern=REFERENCE_PATTERN,
                                    description="The partner's batch number; unique among live "
                                                "batches")
    wage_month: str | None = Field(None, pattern=WAGE_MONTH_PATTERN,
                                   description="Pay cycle (YYYY-MM) the wages belong to; defaults "
                                               "to the value date's month")


class ItemAmountIn(_In):
    """An item's amount, checked with the other item fields (a bad one rejects the batch)."""

    amount: str = Field(max_length=32, examples=["4500.00"])
    currency: Literal["CNY"]


class BatchItemIn(_In):
    employee_name: str = Field(max_length=60)
    id_number: str = Field(max_length=32, description="Resident ID number (身份证号)")
    account_number: str = Field(max_length=32, description="Bank card number (Luhn-checked)")
    amount: ItemAmountIn
    memo: str = Field("", max_length=60)
    item_reference: str = Field(max_length=64, description="The partner's reference, unique in "
                                                           "the batch")


class BatchIn(_In):
    header: BatchHeaderIn
    items: list[BatchItemIn] = Field(min_length=1, max_length=100_000)


class Finding(BaseModel):
    line: int = Field(description="Line of the CSV file (the header is line 1), or position of the "
                                  "item in `items` (1-based; 0 for the header)")
    item_reference: str | None = None
    field: str
    code: str
    message: str


class Validation(BaseModel):
    errors: list[Finding] = Field(description="Up to the first 100 errors; a batch with errors is "
                                              "rejected")
    error_count: int
    warnings: list[Finding] = Field(description="Items the receiving bank is expected to refuse "
                                                "(first 100); they fail when paid")
    warning_count: int


class Progress(BaseModel):
    processed: int = Field(description="Items the worker has handled (paid or failed)")
    succeeded: int = Field(description="Items paid, including those the receiving bank returned "
                                       "later (also counted in `returned`; listed with "
                                       "`?status=returned`)")
    failed: int
    returned: int = Field(description="Paid items returned later by the receiving bank (退票)")
    pending: int
    succeeded_amount: Money
    failed_amount: Money
    returned_amount: Money


class BatchOut(BaseModel):
    id: str
    status: BatchStatus
    payer_account_id: str
    wage_project_id: str | None
    purpose: Purpose
    value_date: date
    wage_month: str | None
    external_reference: str
    declared_count: int
    declared_total: Money
    item_count: int
    total: Money
    held: Money
    source: Literal["json", "csv"]
    charset: str
    progress: Progress
    validation: Validation
    created_at: Timestamp
    validated_at: Timestamp | None
    confirmed_at: Timestamp | None
    started_at: Timestamp | None
    finished_at: Timestamp | None
    cancelled_at: Timestamp | None


class BatchList(BaseModel):
    data: list[BatchOut]
    next_cursor: str | None


class ItemOut(BaseModel):
    id: str
    batch_id: str
    line: int
    item_reference: str
    employee_name: str = Field(description="Masked")
    id_number: str = Field(description="Masked")
    account_number: str = Field(description="Masked")
    amount: Money
    memo: str
    status: ItemStatus
    reason_code: str | None
    reason: str | None
    precheck_code: str | None = Field(description="What validation predicted for this item")
    journal_ref: str | None = Field(description="The ledger reference the item was paid under")
    paid_to: Literal["this_bank", "other_bank"] | None = Field(
        description="Credited to an account at this bank, or sent to another bank's card")
    settled_at: Timestamp | None
    returned_at: Timestamp | None


class ItemList(BaseModel):
    data: list[ItemOut]
    next_cursor: str | None


class FindingList(BaseModel):
    data: list[Finding]
    next_cursor: str | None


class SimulateReturnIn(_In):
    reason_code: Literal["account_closed", "account_frozen", "name_mismatch",
                         "account_not_found", "other"] = "account_closed"
    after_seconds: StrictInt = Field(0, ge=0, le=30 * 86400,
                               description="Return this long after now on the test clock")


# --- supervised wage accounts -------------------------------------------------------------------

class WageProjectIn(_In):
    project_code: str = Field(pattern=REFERENCE_PATTERN)
    name: str = Field(min_length=1, max_length=200)
    region_code: str = Field(pattern=REGION_PATTERN, description="Administrative division code "
                                                                 "(行政区划代码) of the site")
    contractor_name: str = Field(min_length=1, max_length=200, description="General contractor "
                                                                           "(施工总承包单位)")
    contractor_uscc: str = Field(description="Unified social credit code of the contractor")
    developer_name: str = Field(min_length=1, max_length=200, description="Developer (建设单位)")
    developer_uscc: str
    developer_account_id: str | None = Field(None, max_length=40,
                                             description="The developer's account funding labour "
                                                         "costs")
    payday: StrictInt = Field(ge=1, le=28, description="Day of the month wages are due")
    arrears_grace_days: StrictInt = Field(3, ge=1, le=30,
                                    description="Days after payday before unpaid registered "
                                                "workers raise an arrears warning")
    balance_check_days: StrictInt = Field(3, ge=0, le=27,
                                    description="Days before payday on which the balance is "
                                                "checked against last month's payroll")


class WageProjectOut(BaseModel):
    id: str
    project_code: str
    name: str
    region_code: str
    contractor_name: str
    contractor_uscc: str
    developer_name: str
    developer_uscc: str
    developer_account_id: str | None
    wage_account_id: str
    payday: int
    arrears_grace_days: int
    balance_check_days: int
    status: str
    created_at: Timestamp


class WageProjectList(BaseModel):
    data: list[WageProjectOut]
    next_cursor: str | None


class WorkerIn(_In):
    name: str = Field(min_length=1, max_length=60)
    id_number: str = Field(max_length=32)
    card_number: str = Field(max_length=32)
    team: str = Field(min_length=1, max_length=60, description="Team (班组)")
    contract_start: IsoDate
    contract_end: IsoDate | None = None
    monthly_wage: MoneyIn | None = Field(
        None, description="The agreed monthly wage. When set, a month counts as paid only once "
                          "its successful payments (returned ones excluded) reach it; below it "
                          "the month is `partially_paid` and still owed. Without it, any "
                          "successful payment pays the month (`wage_agreed` false in the "
                          "regulator's view)")


class WorkerPatch(_In):
    name: str | None = Field(None, max_length=60, description="A corrected name (as on the ID "
                                                             "card), under the items' name rule")
    status: Literal["active", "left"] | None = None
    contract_end: IsoDate | None = None
    card_number: str | None = Field(None, max_length=32)
    monthly_wage: MoneyIn | None = Field(None, description="A new agreed monthly wage (it applies "
                                                          "to every month from then on viewed "
                                                          "or checked); once agreed it cannot "
                                                          "be removed")


class WorkerOut(BaseModel):
    id: str
    project_id: str
    name: str = Field(description="Masked")
    id_number: str = Field(description="Masked")
    card_number: str = Field(description="Masked")
    team: str
    contract_start: date
    contract_end: date | None
    status: str
    monthly_wage: Money | None = Field(description="The agreed monthly wage; null: none agreed")
    created_at: Timestamp


class WorkerList(BaseModel):
    data: list[WorkerOut]
    next_cursor: str | None


class WorkerImportOut(BaseModel):
    registered: int
    data: list[WorkerOut] = Field(description="The first 100 registered workers")


class FundingIn(_In):
    amount: MoneyIn
    from_account_id: str | None = Field(None, max_length=40,
                                        description="Defaults to the project's developer account")
    memo: str = Field("", max_length=60)


class FundingOut(BaseModel):
    id: str
    project_id: str
    from_account_id: str
    amount: Money
    journal_ref: str
    memo: str
    created_at: Timestamp


# --- supervision -------------------------------------------------------------------------------

class SupervisedProjectOut(BaseModel):
    id: str
    project_code: str
    name: str
    region_code: str
    contractor_name: str
    contractor_uscc: str
    developer_name: str
    developer_uscc: str
    wage_account_id: str
    balance: Money
    payday: int
    registered_workers: int
    active_workers: int
    last_warning_at: Timestamp | None


class SupervisedProjectList(BaseModel):
    data: list[SupervisedProjectOut]
    next_cursor: str | None


class WorkerMonthOut(BaseModel):
    worker_id: str
    name: str = Field(description="Masked")
    id_number: str = Field(description="Masked")
    team: str
    status: str
    month: str
    payment_status: Literal["paid", "partially_paid", "unpaid", "returned", "not_due",
                            "not_owed"] = Field(
        description="`paid`: paid for the month (with an agreed wage: its successful payments "
                    "reach it; without one: any payment succeeded); `partially_paid`: "
                    "payments succeeded but add up to less than the agreed wage; `returned`: "
                    "its only payments were returned (退票); `unpaid`: owed, payday passed, not "
                    "paid; `not_due`: owed, payday not reached yet; `not_owed`: nothing was "
                    "owed that month (the project's pay cycles had not begun, or the worker "
                    "was not registered and under contract by payday, or had left before the "
                    "month began)")
    paid_amount: Money = Field(description="Successful payments for the month, returned ones "
                                           "excluded")
    payments: int
    last_paid_on: date | None
    wage_agreed: bool = Field(description="Whether the worker has an agreed monthly wage; "
                                          "false: `paid` means only that some payment "
                                          "succeeded, whatever its amount")
    agreed_wage: Money | None = Field(description="The agreed monthly wage; null: none agreed")
    outstanding_amount: Money | None = Field(
        description="What remains of the agreed wage for the month when it is owed (0.00 once "
                    "paid or when nothing is owed); null: no wage agreed, the amount owed is "
                    "not known")


class WorkerMonthList(BaseModel):
    data: list[WorkerMonthOut]
    next_cursor: str | None


class WarningOut(BaseModel):
    id: str
    project_id: str
    cycle: str
    kind: str
    business_date: date
    details: dict[str, object]
    checked_at: Timestamp


class WarningList(BaseModel):
    data: list[WarningOut]
    next_cursor: str | None


class RegulatorGrantIn(_In):
    partner_id: str = Field(min_length=1, max_length=40)
    region_code: str = Field(pattern=REGION_PATTERN,
                             description="310000 grants a province, 310100 a city, 310115 a "
                                         "district")
    name: str = Field("", max_length=120)


class RegulatorGrantOut(BaseModel):
    partner_id: str
    region_code: str
    name: str
    granted_by: str
    created_at: Timestamp


class RegulatorGrantList(BaseModel):
    data: list[RegulatorGrantOut]
    next_cursor: str | None




class FundingList(BaseModel):
    data: list[FundingOut]
    next_cursor: str | None
