"""E-government domain errors: each a problem with a stable code (mapped to HTTP in gateway.errors)."""

from __future__ import annotations

from gateway.errors import Conflict, Forbidden, NotFound, ServiceUnavailable, ValidationFailed
from products.accounts.errors import DebitNotAuthorized

# --- portal and payment orders ------------------------------------------------------------


class PortalNotConfigured(Conflict):
    """What needs the profile (an order, a statement) cannot be done before it is set: 409."""

    code, title = "portal_not_configured", "The portal profile is not set up"


class PortalProfileNotFound(NotFound):
    """Reading a profile that was never set: there is nothing to read (404), same code."""

    code, title = "portal_not_configured", "The portal profile is not set up"


class InvalidOrigin(ValidationFailed):
    code, title = "invalid_origin", "Not a web origin this portal may register"


class ReturnUrlNotRegistered(ValidationFailed):
    code, title = "return_url_not_registered", "The return URL is not on a registered origin"


class PayeeAccountNotFound(ValidationFailed):
    code, title = "payee_account_not_found", "No such payee account"


class PaymentOrderNotFound(NotFound):
    code, title = "egov_payment_order_not_found", "No such payment order"


class DuplicatePortalReference(Conflict):
    code, title = "duplicate_portal_reference", "A payment order with this portal reference exists"


class OrderNotPayable(Conflict):
    code, title = "order_not_payable", "This payment order cannot be paid"


class ReceiptNotAvailable(Conflict):
    code, title = "receipt_not_available", "Only a paid order has a receipt"


class CheckoutNotFound(NotFound):
    code, title = "checkout_not_found", "No such checkout"


class PayerLoginUnavailable(ServiceUnavailable):
    code, title = "payer_login_unavailable", "Bank login is not available here"


# --- supervised escrow --------------------------------------------------------------------


class RegulatorNotRecognised(ValidationFailed):
    code, title = "regulator_not_recognised", "Not a recognised fund regulator"


class RegulatorNotIndependent(ValidationFailed):
    """A scheme naming its own operator's partner as its regulator: whoever uses the money may
    not be the one who approves its release (four-eyes), whatever the bank recognised."""

    code, title = "regulator_not_independent", "The regulator must not be the scheme's own partner"


class DecisionNotIndependent(Forbidden):
    """A decision by the scheme's own partner (its tenant's), even one recognised as a regulator
    (a scheme opened before independence was checked): refused, nothing moves."""

    code, title = "regulator_not_independent", "The regulator must not be the scheme's own partner"


class SupervisionWithdrawn(Forbidden):
    code, title = "supervision_withdrawn", "No longer a recognised regulator of this kind of scheme"


class EscrowSchemeNotFound(NotFound):
    code, title = "escrow_scheme_not_found", "No such escrow scheme"


class DuplicateSchemeReference(Conflict):
    code, title = "duplicate_scheme_reference", "An escrow scheme with this reference exists"


class EscrowSubAccountNotFound(NotFound):
    code, title = "escrow_sub_account_not_found", "No such escrow sub-account"


class EscrowDepositNotFound(NotFound):
    code, title = "escrow_deposit_not_found", "No such escrow deposit"


class DuplicateSubAccount(Conflict):
    code, title = "duplicate_sub_account", "A sub-account with this reference exists"


class ReleaseInstructionNotFound(NotFound):
    code, title = "release_instruction_not_found", "No such release instruction"


class DepositRefused(ValidationFailed):
    code, title = "deposit_refused", "This deposit does not fit the sub-account's terms"


class ReleaseExceedsPolicy(ValidationFailed):
    code, title = "release_exceeds_policy", "The release goes beyond the scheme's policy"


class ReleaseNotAllowed(Conflict):
    code, title = "release_not_allowed", "The policy does not allow this release now"


class InsufficientEscrowBalance(Conflict):
    code, title = "insufficient_escrow_balance", "The sub-account does not hold enough money"


class DuplicateApprover(Conflict):
    code, title = "duplicate_approver", "This regulator user has already decided"


class SchemeNotActive(Conflict):
    code, title = "escrow_scheme_not_active", "The escrow scheme is not active"


class EscrowDebitRefused(DebitNotAuthorized):
    """Raised by the ledger's debit guard: escrow money leaves only through an approved release
    (a `PaymentRefused`, so a refused transfer is recorded as failed with this code)."""

    status, code = 403, "escrow_debit_refused"
    title = "Escrow money leaves only through an approved release"


class EscrowCreditRefused(DebitNotAuthorized):
    """Raised by the ledger's credit guard: money enters escrow only as a deposit through the
    scheme (a `PaymentRefused`, so a refused transfer is recorded as failed with this code)."""

    status, code = 403, "escrow_credit_refused"
    title = "Money enters supervised escrow only as a deposit to a sub-account"


class LedgerRefused(Conflict):
    code, title = "ledger_refused", "The core-banking system refused the transfer"
