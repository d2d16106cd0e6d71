"""E-government request and response models. Personal data appears only masked in responses."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator

from gateway import patterns
from gateway.clock import Instant, IsoDate, Timestamp
from gateway.identifiers import USCC, IdentifierError, validate_resident_id, validate_uscc
from gateway.money import Money, MoneyIn

REFERENCE_PATTERN = patterns.REFERENCE
ITEM_CODE_PATTERN = patterns.ITEM_CODE
OrderStatus = Literal["open", "paid", "cancelled", "expired", "failed"]
SchemeKind = Literal["tuition", "presale_housing", "bid_deposit", "court_funds"]
InstructionStatus = Literal["pending_approval", "approved", "rejected", "cancelled", "executed",
                            "failed"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# The ledger's journal entry (`jnl_…`) that moved an object's money, under the name transfers
# and account transactions give it: it is no transfer, `GET /v1/transfers/{id}` does not know it.
def _journal_entry(what: str) -> Any:
    return Field(description=f"The ledger journal entry (`jnl_…`) that {what}: the "
                             "`journal_entry_id` of the accounts' lines in "
                             "`GET /v1/accounts/{id}/transactions` (a journal entry, not a "
                             "transfer: `GET /v1/transfers/{id}` does not know it)",
                 examples=["jnl_01M99MK69EB9AWFC6YC4ET2WKW"])


def _printable(value: str, what: str) -> str:
    if not value.isprintable():
        raise ValueError(f"{what} must not contain control characters")
    return value


# --- portal profile ---------------------------------------------------------------------------

class PortalIn(_In):
    name: str = Field(min_length=1, max_length=120, examples=["上海市一网通办"])
    payee_name: str = Field(min_length=1, max_length=120, description="收款单位, shown at checkout",
                            examples=["上海市财政局非税收入专户"])
    payee_account_id: str = Field(min_length=1, max_length=40,
                                  description="The portal's collection account (an account of this "
                                              "tenant) that receives the payments")
    origins: list[str] = Field(max_length=20, description="Web origins (`https://portal.example.gov.cn`) "
                                                          "that may embed the checkout and receive "
                                                          "its outcome; return URLs must be on one")

    @field_validator("name", "payee_name")
    @classmethod
    def _names(cls, value: str) -> str:
        return _printable(value, "names")


class PortalOut(BaseModel):
    name: str
    payee_name: str
    payee_account_id: str
    origins: list[str]
    created_at: Timestamp
    updated_at: Timestamp


# --- payment orders ---------------------------------------------------------------------------

class PayerIn(_In):
    name: str = Field(min_length=1, max_length=60, examples=["张三"])
    id_type: Literal["resident_id", "uscc"] = Field(
        "resident_id", description="`resident_id` (身份证号) for a person, `uscc` (统一社会信用代码) for "
                                   "an organisation")
    id_number: str = Field(max_length=32, examples=["11010519491231002X"])

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _printable(value, "name")

    @model_validator(mode="after")
    def _check_id(self) -> PayerIn:
        try:
            if self.id_type == "resident_id":
                self.id_number = validate_resident_id(self.id_number)
            else:
                self.id_number = validate_uscc(self.id_number)
        except IdentifierError as exc:
            raise ValueError(f"id_number: {exc}") from None
        return self


class PaymentOrderIn(_In):
    item_code: str = Field(pattern=ITEM_CODE_PATTERN, description="Revenue item code (非税收入项目编码)",
                           examples=["103040101"])
    item_name: str = Field(min_length=1, max_length=120, examples=["机动车驾驶证工本费"])
    payer: PayerIn
    amount: MoneyIn
    description: str = Field("", max_length=300)
    portal_reference: str = Field(pattern=REFERENCE_PATTERN,
                                  description="The portal's own number for this order; unique")
    return_url: str = Field(min_length=8, max_length=2000,
                            description="Where the payer returns with the signed result; on a "
                                        "registered origin")
    expires_at: Instant | None = Field(None, description="Default: 30 minutes from now; at most 30 "
                                                          "days ahead")

    @field_validator("item_name", "description")
    @classmethod
    def _text(cls, value: str) -> str:
        return _printable(value, "text")

    @field_validator("expires_at")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("expires_at needs a time zone (RFC 3339)")
        return value


class PayerOut(BaseModel):
    name: str = Field(description="Masked")
    id_type: str
    id_number: str = Field(description="Masked")


class PaymentOrderOut(BaseModel):
    id: str
    portal_reference: str
    item_code: str
    item_name: str
    payer: PayerOut
    amount: Money
    description: str
    payee_name: str
    payment_code: str = Field(description="缴款码: the payer may quote it at any channel")
    checkout_url: str
    return_url: str
    status: OrderStatus
    expires_at: Timestamp
    failed_attempts: int = Field(description="Refused payment attempts at the checkout; the "
                                 "fifth fails the order")
    last_failure_code: str | None = Field(
        description="Why the latest refused attempt was refused (`login_failed`, "
                    "`insufficient_funds`, `account_closed`, `account_frozen`, `name_mismatch`, "
                    "`processing_failed`, `debit_restricted`, ...): the code the checkout "
                    "showed the payer; null until an attempt is refused, and kept after a later "
                    "attempt pays the order",
        examples=["insufficient_funds"])
    cancel_reason: str | None = Field(
        None, description="The `reason` the portal gave when it cancelled the order; null "
                          "otherwise (a payer's cancellation at the checkout gives none)")
    payment_method: str | None
    payer_account: str | None = Field(description="Masked account the payer paid from")
    paid_at: Timestamp | None
    receipt_number: str | None
    receipt_url: str | None
    created_at: Timestamp
    updated_at: Timestamp


class PaymentOrderList(BaseModel):
    data: list[PaymentOrderOut]
    next_cursor: str | None


class CancelIn(_In):
    reason: str = Field("", max_length=300)


# --- receipts --------------------------------------------------------------------------------

class ReceiptEvidence(BaseModel):
    entry_id: str | None
    leaf_hash: str | None = Field(description="base64 SHA-256(0x00 || canonical entry)")
    index: int | None
    tree_size: int | None
    checkpoint: str | None = Field(description="The signed log head (C2SP note) the proof is against")
    inclusion_proof: list[str]
    verifier_key: str | None
    event_id: str | None
    state_sha256: str | None = Field(description="SHA-256 of the event's data (the order as paid)")


class ReceiptOut(BaseModel):
    receipt_number: str
    order_id: str
    portal_reference: str
    payment_code: str
    item_code: str
    item_name: str
    payer: PayerOut
    payee_name: str
    amount: Money
    amount_in_words: str = Field(description="The amount in Chinese capital numerals (大写)")
    payment_method: str
    payer_account: str | None
    paid_at: Timestamp
    journal_entry_id: str | None = _journal_entry("paid the order; the receipt's 银行流水号")
    verification_url: str
    evidence: ReceiptEvidence


# --- reconciliation --------------------------------------------------------------------------

class DifferencesOut(BaseModel):
    business_date: date
    differences: dict[str, Any]


# --- escrow ----------------------------------------------------------------------------------

class RegulatorIn(_In):
    partner_id: str = Field(min_length=1, max_length=40)
    name: str = Field(min_length=1, max_length=120, examples=["某区教育局"])
    kinds: list[SchemeKind] = Field(min_length=1, description="Scheme kinds it may supervise")


class RegulatorOut(BaseModel):
    partner_id: str
    name: str
    kinds: list[str]
    granted_by: str
    created_at: Timestamp


class RegulatorList(BaseModel):
    data: list[RegulatorOut]
    next_cursor: str | None


Approvals = Annotated[int, Field(ge=1, le=2, description="Regulator approvals a release needs; 2 "
                                                         "means two different regulator users")]


class TuitionPolicy(_In):
    kind: Literal["tuition"]
    required_approvals: Approvals = 1
    max_classes: StrictInt = Field(200, ge=1, le=10_000,
                             description="Most classes one student may prepay")


class Milestone(_In):
    code: str = Field(pattern=patterns.MILESTONE_CODE, examples=["structure_topped"])
    name: str = Field(min_length=1, max_length=60, examples=["主体结构封顶"])
    share_percent: str = Field(description="Most of the sub-account's supervised total released "
                                           "for this milestone, as a percentage string (\"30\", "
                                           "\"12.5\")", examples=["30"])

    @field_validator("share_percent")
    @classmethod
    def _share(cls, value: str) -> str:
        try:
            share = Decimal(value)
        except InvalidOperation:
            raise ValueError("share_percent must be a decimal string") from None
        if not share.is_finite() or share <= 0 or share > 100 or share != share.quantize(Decimal("0.01")):
            raise ValueError("share_percent must be above 0 and at most 100, two decimals at most")
        return value


class PresaleHousingPolicy(_In):
    kind: Literal["presale_housing"]
    required_approvals: Approvals = 1
    milestones: list[Milestone] = Field(min_length=1, max_length=20)

    @model_validator(mode="after")
    def _milestones(self) -> PresaleHousingPolicy:
        codes = [m.code for m in self.milestones]
        if len(set(codes)) != len(codes):
            raise ValueError("milestone codes must be unique")
        if sum(Decimal(m.share_percent) for m in self.milestones) > 100:
            raise ValueError("milestone shares add up to more than 100 percent")
        return self


class BidDepositPolicy(_In):
    kind: Literal["bid_deposit"]
    required_approvals: Approvals = 1
    deposit: MoneyIn = Field(description="The bid deposit every bidder pays (投标保证金)")
    refund_days: StrictInt = Field(5, ge=0, le=30, description="Losing bidders are refunded within this "
                                                         "many days of the award")


class CourtFundsPolicy(_In):
    kind: Literal["court_funds"]
    required_approvals: Approvals = 1


Policy = Annotated[TuitionPolicy | PresaleHousingPolicy | BidDepositPolicy | CourtFundsPolicy,
                   Field(discriminator="kind")]


class SchemeIn(_In):
    reference: str = Field(pattern=REFERENCE_PATTERN, description="Your number for the scheme "
                                                                  "(institution, pre-sale permit, "
                                                                  "tender, court)")
    name: str = Field(min_length=1, max_length=120)
    regulator_partner_id: str = Field(min_length=1, max_length=40,
                                      description="The recognised regulator that approves releases: "
                                                  "another partner than yours (four-eyes)")
    holder_name: str = Field(min_length=1, max_length=120,
                             description="The escrow account's holder: the training institution, "
                                         "developer, tenderer or court")
    holder_uscc: USCC
    beneficiary_account_id: str | None = Field(None, max_length=40,
                                               description="Where releases are paid (an account of "
                                                           "yours); required except for court funds, "
                                                           "where each court order names the payee")
    policy: Policy

    @field_validator("name", "holder_name")
    @classmethod
    def _names(cls, value: str) -> str:
        return _printable(value, "names")


class SchemeOut(BaseModel):
    id: str
    kind: str
    reference: str
    name: str
    regulator_partner_id: str
    holder_name: str
    beneficiary_account_id: str | None
    escrow_account_id: str
    policy: dict[str, Any]
    status: str
    balance: Money
    awarded_sub_account_id: str | None
    awarded_at: Timestamp | None
    created_at: Timestamp


class SchemeList(BaseModel):
    data: list[SchemeOut]
    next_cursor: str | None


class SubAccountIn(_In):
    reference: str = Field(pattern=patterns.CASE_REFERENCE,
                           description="Student number, building / pre-sale permit, bidder USCC, "
                                       "case number (案号, such as (2026)沪0115执1234号)")
    holder_name: str = Field(min_length=1, max_length=120)
    total_classes: StrictInt | None = Field(None, ge=1, description="Tuition: classes bought")
    tuition: MoneyIn | None = Field(None, description="Tuition: the price of all the classes")
    supervised_total: MoneyIn | None = Field(None, description="Pre-sale housing: the supervised "
                                                               "amount (重点监管额度) the milestone "
                                                               "shares apply to")

    @field_validator("holder_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _printable(value, "holder_name")


class SubAccountOut(BaseModel):
    id: str
    scheme_id: str
    reference: str
    holder_name: str = Field(description="Masked")
    ledger_account_id: str
    terms: dict[str, Any]
    status: str
    balance: Money
    deposited: Money
    released: Money
    refunded: Money
    consumed_classes: int
    created_at: Timestamp


class SubAccountList(BaseModel):
    data: list[SubAccountOut]
    next_cursor: str | None


class DepositIn(_In):
    from_account_id: str = Field(min_length=1, max_length=40)
    amount: MoneyIn


class DepositOut(BaseModel):
    id: str
    scheme_id: str
    sub_account_id: str
    from_account_id: str
    amount: Money
    journal_entry_id: str = _journal_entry("moved the deposit into the sub-account")
    created_at: Timestamp


class DepositList(BaseModel):
    data: list[DepositOut]
    next_cursor: str | None


class CourtOrderIn(_In):
    number: str = Field(min_length=1, max_length=64, examples=["(2026)沪0115执1234号"])
    issued_on: IsoDate

    @field_validator("number")
    @classmethod
    def _number(cls, value: str) -> str:
        return _printable(value, "number")


class InstructionIn(_In):
    sub_account_id: str = Field(min_length=1, max_length=40)
    kind: Literal["release", "refund"] = "release"
    amount: MoneyIn | None = Field(None, description="Required except for tuition, where the "
                                                     "amount follows from `classes`")
    classes: StrictInt | None = Field(None, ge=1, description="Tuition: classes consumed since the last "
                                                        "release")
    milestone: str | None = Field(None, max_length=32, description="Pre-sale housing: the milestone "
                                                                   "reached")
    court_order: CourtOrderIn | None = Field(None, description="Court funds: the order to pay")
    destination_account_id: str | None = Field(None, max_length=40,
                                               description="Court funds: who the order pays. Refunds: "
                                                           "the depositing account to refund (原路退回; "
                                                           "default the only depositor). Releases of "
                                                           "other schemes go to the beneficiary")
    reason: str = Field("", max_length=300)

    @field_validator("reason")
    @classmethod
    def _reason(cls, value: str) -> str:
        return _printable(value, "reason")


class ApprovalOut(BaseModel):
    approver_id: str
    approver_name: str
    client_id: str = Field(description="The regulator user who decided: the OAuth client of the "
                                       "credential that made the call")
    decision: str
    comment: str
    created_at: Timestamp


class InstructionOut(BaseModel):
    id: str
    scheme_id: str
    sub_account_id: str
    kind: str
    amount: Money
    destination_account_id: str
    basis: dict[str, Any]
    reason: str
    status: InstructionStatus
    required_approvals: int
    approved_by_policy: bool
    approvals: list[ApprovalOut]
    due_by: str | None
    journal_entry_id: str | None = _journal_entry("executed the instruction; null until it "
                                                  "executes")
    failure: str | None
    created_at: Timestamp
    executed_at: Timestamp | None


class InstructionList(BaseModel):
    data: list[InstructionOut]
    next_cursor: str | None


class DecisionIn(_In):
    approver_id: str = Field(min_length=1, max_length=64,
                             description="Your label for the deciding user (your system's user "
                                         "id). The regulator user is the OAuth client calling: "
                                         "two approvals must come from two different clients")
    approver_name: str = Field(min_length=1, max_length=80)
    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=300)

    @field_validator("approver_id", "approver_name", "comment")
    @classmethod
    def _text(cls, value: str) -> str:
        return _printable(value, "text")


class AwardIn(_In):
    winner_sub_account_id: str = Field(min_length=1, max_length=40)


class WithdrawIn(_In):
    reason: str = Field("", max_length=300)


class WithdrawOut(SubAccountOut):
    """The sub-account as the withdrawal left it, and the refunds it instructed."""

    refund_instructions: list[InstructionOut] = Field(
        description="The refund instructions the withdrawal made (kind `refund`, one per account "
                    "that deposited money still held, each for what goes back to it: the balance "
                    "split pro rata to each account's deposits net of earlier refunds, to the fen "
                    "by the largest remainder, ties to the larger deposit then the account id, "
                    "the parts adding up to exactly the balance): they wait "
                    "for the regulator (`status` `pending_approval`) like any money leaving "
                    "escrow, and the sub-account stays `open` until the last one executes. Empty "
                    "when nothing was left to refund: the sub-account is then `withdrawn` at once")
