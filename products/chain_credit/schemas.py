"""Chain credit request and response models (pydantic v2). Money is `{"amount", "currency"}`,
rates are decimal strings, business dates are YYYY-MM-DD (Asia/Shanghai)."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, model_validator

from gateway import patterns
from gateway.clock import IsoDate, Timestamp
from gateway.identifiers import USCC
from gateway.money import Money, MoneyIn
from products.chain_credit.pricing import parse_rate

MemberId = Annotated[str, Field(min_length=1, max_length=40, examples=["cmem_01JD0Z8Q0000000000000000"])]
Reference = Annotated[str, Field(min_length=1, max_length=64, pattern=patterns.REFERENCE_NO_COLON,
                                 examples=["INV-2026-000123"])]


def canonical_reference(value: object) -> object:
    """An invoice or purchase-order number as stored: upper-case, without surrounding spaces. To
    the bank `inv-1`, ` INV-1 ` and `INV-1` are one document, and it finances once."""
    return value.strip().upper() if isinstance(value, str) else value


# Invoice and purchase-order numbers: normalised first (the BeforeValidator, listed last, wraps
# the others), so the length and pattern are checked on the stored form.
FinancedReference = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=patterns.REFERENCE_NO_COLON,
          description="Stored upper-case (`inv-2026-000123` is `INV-2026-000123`)",
          examples=["INV-2026-000123"]),
    BeforeValidator(canonical_reference)]


def _rate(value: str) -> str:
    parse_rate(value)
    return value


Rate = Annotated[str, AfterValidator(_rate),
                 Field(description="Yearly rate as a decimal fraction: \"0.0385\" is 3.85 %",
                       examples=["0.0385"])]


def canonical_circle(value: object) -> object:
    """A guarantee circle code as stored: upper-case, without surrounding spaces. To the bank
    `gc-sz-01` and `GC-SZ-01` are one circle, and they share one cap."""
    return value.strip().upper() if isinstance(value, str) else value


# The BeforeValidator (listed last, so it wraps the others) normalises first: the length and
# pattern are checked on the stored form.
GuaranteeCircle = Annotated[
    str,
    Field(min_length=1, max_length=64, pattern=patterns.CODE,
          description="The guarantee circle (担保圈) the enterprise belongs to; stored upper-case "
                      "(`gc-sz-elec-01` is `GC-SZ-ELEC-01`)",
          examples=["GC-SZ-ELEC-01"]),
    BeforeValidator(canonical_circle)]

MemberRole = Literal["core_enterprise", "supplier", "distributor"]
CertificateStatus = Literal["issued", "accepted", "rejected", "split", "transferred", "financing",
                            "financed", "settled", "overdue", "cancelled"]
RiskType = Literal["lawsuit", "guarantee_chain_break", "rating_downgrade", "overdue"]
ApplicationKind = Literal["factoring", "order_financing"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(_Out):
    next_cursor: str | None = None


# --- members -----------------------------------------------------------------------------


class MemberCreate(_In):
    name: str = Field(min_length=1, max_length=200, examples=["深圳市华强精密电子有限公司"])
    uscc: USCC
    settlement_account_id: str = Field(min_length=1, max_length=60,
                                       description="The member's settlement account in the ledger")
    role: MemberRole = Field(description="`core_enterprise` starts a chain (tier 0); suppliers "
                                         "and distributors hang under an upstream member")
    upstream_member_id: MemberId | None = Field(
        None, description="The member one tier closer to the core enterprise (required unless "
                          "the member is a core enterprise)")
    tier: StrictInt | None = Field(None, ge=0, le=20,
                             description="Optional check: must equal the upstream member's tier + 1")


class MemberOut(_Out):
    id: str
    core_enterprise_id: str = Field(description="The chain this member belongs to")
    role: str
    name: str
    uscc: str
    settlement_account_id: str
    tier: int
    upstream_member_id: str | None
    status: str
    created_at: Timestamp


class MemberPage(Page):
    data: list[MemberOut]


# --- facilities --------------------------------------------------------------------------


class FacilityGrant(_In):
    tenant_id: str = Field(min_length=1, max_length=40, description="The partner tenant")
    core_enterprise_id: MemberId
    limit: MoneyIn
    expires_on: IsoDate = Field(description="Last business day the facility can be used")
    guarantee_circle: GuaranteeCircle
    discount_rate: Rate


class FacilityStatusChange(_In):
    tenant_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=500)


class FacilityOut(_Out):
    id: str
    core_enterprise_id: str
    limit: Money
    outstanding: Money = Field(description="Unpaid certificates issued under the facility, and "
                               "the principal of the chain's factoring and order financing not "
                               "yet repaid")
    available: Money = Field(description="limit - outstanding (never below 0.00)")
    expires_on: date
    guarantee_circle: str
    discount_rate: str
    status: str
    frozen_reason: str | None
    created_at: Timestamp
    updated_at: Timestamp


class FacilityPage(Page):
    data: list[FacilityOut]


class TierUtilisation(_Out):
    tier: int | None = Field(description="The holders' tier; null for certificates the bank holds")
    holder_type: Literal["member", "bank"]
    holders: int
    certificates: int
    amount: Money


class FacilityUtilisation(_Out):
    facility_id: str
    limit: Money
    outstanding: Money
    available: Money
    awaiting_acceptance: Money
    overdue: Money
    by_tier: list[TierUtilisation]
    financing_applications: Money = Field(
        description="Principal of the chain's factoring and order financing disbursed and not "
                    "yet repaid; with the certificates in `by_tier` it makes up `outstanding`")


# --- certificates ------------------------------------------------------------------------


class Acting(_In):
    acting_member_id: MemberId = Field(description="The chain member the platform acts for")


class CertificateIssue(Acting):
    to_member_id: MemberId = Field(description="The tier-1 member receiving the certificate")
    amount: MoneyIn
    maturity_date: IsoDate = Field(description="Between tomorrow and 365 days ahead (Asia/Shanghai)")
    invoice_numbers: list[FinancedReference] = Field(min_length=1, max_length=50)
    contract_number: Reference


class CertificateReject(Acting):
    reason: str | None = Field(None, max_length=500)


class CertificateSplit(Acting):
    parts: list[MoneyIn] = Field(min_length=2, description="Amounts summing exactly to the face")


class CertificateTransfer(Acting):
    to_member_id: MemberId


class HolderEntry(_Out):
    holder_type: Literal["member", "bank"]
    member_id: str | None
    via: str = Field(description="issued, split, transferred or financed")
    certificate_id: str
    at: str


class CertificateOut(_Out):
    id: str
    facility_id: str
    issuer_id: str
    root_id: str
    parent_id: str | None
    depth: int
    holder_type: Literal["member", "bank"]
    holder_member_id: str | None
    amount: Money
    maturity_date: date
    status: CertificateStatus
    invoice_numbers: list[str]
    contract_number: str
    holder_history: list[HolderEntry]
    created_at: Timestamp
    updated_at: Timestamp
    accepted_at: Timestamp | None
    financed_at: Timestamp | None
    settled_at: Timestamp | None


class CertificatePage(Page):
    data: list[CertificateOut]


class CertificateChange(_Out):
    certificate: CertificateOut
    children: list[CertificateOut] = Field(description="The new certificates (split parts, or the "
                                                       "recipient's certificate)")


class LineageNode(_Out):
    id: str
    parent_id: str | None
    depth: int
    holder_type: Literal["member", "bank"]
    holder_member_id: str | None
    holder_name: str | None
    holder_tier: int | None
    amount: Money
    status: str
    is_leaf: bool


class Lineage(_Out):
    root_id: str
    amount: Money = Field(description="The root's face")
    live_leaves_total: Money = Field(description="Face of the leaves not yet paid (the root's face until maturity)")
    nodes: list[LineageNode] = Field(description="The whole tree, depth first from the root")


# --- financing quotes --------------------------------------------------------------------


class QuoteOut(_Out):
    id: str
    certificate_id: str
    holder_member_id: str
    face: Money
    annual_rate: str
    days: int
    discount: Money
    net_amount: Money
    valid_until: str
    status: str
    created_at: Timestamp
    accepted_at: Timestamp | None


class QuoteAccepted(_Out):
    quote: QuoteOut
    certificate: CertificateOut


# --- factoring and order financing -------------------------------------------------------


class ApplicationCreate(Acting):
    kind: ApplicationKind
    amount: MoneyIn
    invoice_numbers: list[FinancedReference] | None = Field(None, max_length=50,
                                                            description="Factoring: the receivables")
    purchase_order_numbers: list[FinancedReference] | None = Field(
        None, max_length=50, description="Order financing: the purchase orders")
    counterparty_member_id: MemberId | None = Field(
        None, description="The buyer owing the receivable or placing the order (a chain member)")

    @model_validator(mode="after")
    def _references(self) -> ApplicationCreate:
        if self.kind == "factoring":
            if not self.invoice_numbers:
                raise ValueError("factoring needs invoice_numbers")
            if self.purchase_order_numbers:
                raise ValueError("factoring takes invoice_numbers, not purchase_order_numbers")
        else:
            if not self.purchase_order_numbers:
                raise ValueError("order financing needs purchase_order_numbers")
            if self.invoice_numbers:
                raise ValueError("order financing takes purchase_order_numbers, not invoice_numbers")
        return self


class ApplicationApprove(_In):
    tenant_id: str = Field(min_length=1, max_length=40)
    amount: MoneyIn = Field(description="Approved amount, at most the requested amount")
    annual_rate: Rate
    due_date: IsoDate = Field(description="Repayment date (Asia/Shanghai), after today")


class ApplicationDecline(_In):
    tenant_id: str = Field(min_length=1, max_length=40)
    reason: str = Field(min_length=1, max_length=500)


class FinancingApplicationOut(_Out):
    id: str
    kind: ApplicationKind
    applicant_id: str
    counterparty_member_id: str | None
    invoice_numbers: list[str] | None
    purchase_order_numbers: list[str] | None
    requested_amount: Money
    approved_amount: Money | None
    annual_rate: str | None
    due_date: date | None
    interest: Money | None
    repayment_amount: Money | None
    status: str
    decline_reason: str | None
    created_at: Timestamp
    disbursed_at: Timestamp | None
    repaid_at: Timestamp | None
    overdue_at: Timestamp | None


class ApplicationPage(Page):
    data: list[FinancingApplicationOut]


# --- risk --------------------------------------------------------------------------------


class RiskEventCreate(_In):
    tenant_id: str = Field(min_length=1, max_length=40)
    core_enterprise_id: MemberId
    member_id: MemberId | None = Field(None, description="A member of the chain the event is about")
    type: RiskType
    description: str = Field(min_length=1, max_length=1000)


class RiskEventOut(_Out):
    id: str
    core_enterprise_id: str
    member_id: str | None
    facility_id: str | None
    type: RiskType
    source: Literal["operations", "rule"]
    description: str
    related_resource_id: str | None
    froze_facility: bool
    created_at: Timestamp


class RiskEventPage(Page):
    data: list[RiskEventOut]
