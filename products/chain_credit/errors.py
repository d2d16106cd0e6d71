"""Chain credit's domain errors: each a gateway problem with a stable code and HTTP status."""

from __future__ import annotations

from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed

# --- not found (path ids; another tenant's id is "not found" too) ------------------------


class MemberNotFound(NotFound):
    code, title = "chain_member_not_found", "No such chain member"


class FacilityNotFound(NotFound):
    code, title = "credit_facility_not_found", "No such credit facility"


class CertificateNotFound(NotFound):
    code, title = "payables_certificate_not_found", "No such payables certificate"


class QuoteNotFound(NotFound):
    code, title = "financing_quote_not_found", "No such financing quote"


class ApplicationNotFound(NotFound):
    code, title = "financing_application_not_found", "No such financing application"


# --- bad references in a request body -----------------------------------------------------


class UnknownMember(ValidationFailed):
    """A member id in the body that does not exist in the caller's tenant."""

    code, title = "unknown_chain_member", "Unknown chain member"


class InvalidUpstream(ValidationFailed):
    code, title = "invalid_upstream_member", "The upstream member is not valid"


class InvalidSettlementAccount(ValidationFailed):
    code, title = "invalid_settlement_account", "The settlement account cannot be used"


class NotSameChain(ValidationFailed):
    code, title = "member_not_in_chain", "The member belongs to another chain"


class InvalidRecipient(ValidationFailed):
    code, title = "invalid_recipient", "The recipient cannot receive this certificate"


class InvalidMaturity(ValidationFailed):
    code, title = "invalid_maturity_date", "The maturity date is out of range"


class SplitMismatch(ValidationFailed):
    code, title = "split_amounts_mismatch", "The parts must sum exactly to the certificate"


class InvalidRate(ValidationFailed):
    code, title = "invalid_rate", "The rate is out of range"


class InvalidDueDate(ValidationFailed):
    code, title = "invalid_due_date", "The due date is out of range"


class InvalidFacilityTerms(ValidationFailed):
    code, title = "invalid_facility_terms", "The facility terms are not valid"


class InvalidApplicant(ValidationFailed):
    code, title = "invalid_applicant", "This member cannot apply for chain financing"


class ApprovalExceedsRequest(ValidationFailed):
    code, title = "approval_exceeds_request", "The approved amount exceeds the amount requested"


# --- not allowed for this caller ----------------------------------------------------------


class NotHolder(Forbidden):
    code, title = "not_certificate_holder", "Only the current holder may act on a certificate"


class NotIssuer(Forbidden):
    code, title = "not_certificate_issuer", "Only the issuing core enterprise may do this"


class NotCoreEnterprise(Forbidden):
    code, title = "not_core_enterprise", "Only the facility's core enterprise may issue"


class NotApplicant(Forbidden):
    code, title = "not_applicant", "Only the applicant may act on this application"


# --- conflicts with the current state -----------------------------------------------------


class CertificateStateConflict(Conflict):
    code, title = "certificate_state_conflict", "Not allowed in the certificate's current state"


class InvalidStateTransition(Conflict):
    code, title = "invalid_state", "Not allowed in the current state"


class CertificateMatured(Conflict):
    code, title = "certificate_matured", "The certificate has reached its maturity date"


class MemberExists(Conflict):
    code, title = "chain_member_exists", "A member with this unified social credit code exists"


class MemberInactive(Conflict):
    code, title = "chain_member_inactive", "The member is not active"


class FacilityExists(Conflict):
    code, title = "credit_facility_exists", "The core enterprise already has a facility"


class FacilityFrozen(Conflict):
    code, title = "credit_facility_frozen", "The credit facility is frozen"


class FacilityExpired(Conflict):
    code, title = "credit_facility_expired", "The credit facility has expired"


class NoFacility(Conflict):
    code, title = "no_credit_facility", "The chain's core enterprise has no credit facility"


class LimitExceeded(Conflict):
    code, title = "facility_limit_exceeded", "The amount exceeds the facility's available limit"


class GuaranteeCircleCapExceeded(Conflict):
    code, title = ("guarantee_circle_cap_exceeded",
                   "The guarantee circle's share of the bank-wide limit would be exceeded")


class QuoteExpired(Conflict):
    code, title = "financing_quote_expired", "The financing quote has expired"


class NotFinanceable(Conflict):
    code, title = "certificate_not_financeable", "The certificate cannot be financed"


class InvoiceAlreadyUsed(Conflict):
    code, title = "invoice_already_used", "An invoice already backs another certificate"


class InvoiceAlreadyFinanced(Conflict):
    code, title = ("invoice_already_financed",
                   "An invoice already backs a certificate or a financing application")


class PurchaseOrderAlreadyFinanced(Conflict):
    code, title = ("purchase_order_already_financed",
                   "A purchase order already backs a financing application")


class PartnerNotInService(Conflict):
    code, title = "partner_not_active", "The partner is not active"
