"""Collection's domain errors: each a problem with a stable code (one mapping, in gateway)."""

from __future__ import annotations

from gateway.errors import Conflict, Forbidden, NotFound, ValidationFailed


class SubMerchantNotFound(NotFound):
    code, title = "sub_merchant_not_found", "No such sub-merchant"


class MandateNotFound(NotFound):
    code, title = "mandate_not_found", "No such debit mandate"


class OrderNotFound(NotFound):
    code, title = "order_not_found", "No such collection order"


class RefundNotFound(NotFound):
    code, title = "refund_not_found", "No such refund"


class VirtualAccountNotFound(NotFound):
    code, title = "virtual_account_not_found", "No such virtual account"


class IncomingTransferNotFound(NotFound):
    code, title = "incoming_transfer_not_found", "No such incoming transfer"


class SettlementNotFound(NotFound):
    code, title = "settlement_not_found", "No such settlement"


class EmployerNotFound(NotFound):
    code, title = "employer_not_found", "No such employer"


class DinerNotFound(NotFound):
    code, title = "diner_not_found", "No such diner"


class TopUpNotFound(NotFound):
    code, title = "top_up_not_found", "No such top-up"


class GrantNotFound(NotFound):
    code, title = "subsidy_grant_not_found", "No such subsidy grant"


class ParkNotFound(NotFound):
    code, title = "park_not_found", "No such park"


class ParkTenantNotFound(NotFound):
    code, title = "park_tenant_not_found", "No such park tenant"


class BillNotFound(NotFound):
    code, title = "bill_not_found", "No such bill"


class AccountNotUsable(ValidationFailed):
    """A ledger account id that is not the tenant's, or not open."""

    code, title = "account_not_usable", "The account cannot be used"


class SplitMismatch(ValidationFailed):
    code, title = "splits_do_not_sum", "The splits do not sum to the amount"


class InvalidSplit(ValidationFailed):
    code, title = "invalid_split", "A split is not valid"


class DuplicateReference(Conflict):
    code, title = "duplicate_reference", "A resource with this reference exists"


class DuplicateUSCC(Conflict):
    code, title = "duplicate_uscc", "This unified social credit code is already registered"


class SubMerchantInactive(Conflict):
    code, title = "sub_merchant_inactive", "The sub-merchant is not active"


class MandateNotActive(Conflict):
    code, title = "mandate_not_active", "The debit mandate cannot be used"


class MandateLimitExceeded(Conflict):
    code, title = "mandate_limit_exceeded", "The debit exceeds the mandate's limit"


class RefundExceedsCollected(Conflict):
    code, title = "refund_exceeds_collected", "The refund exceeds what is left to refund"


class OrderNotRefundable(Conflict):
    code, title = "order_not_refundable", "The order cannot be refunded"


class ClearingFundsShort(Conflict):
    code, title = "clearing_funds_short", "The clearing account cannot fund the refund now"


class WalletFundsShort(Conflict):
    code, title = "insufficient_wallet_balance", "The diner's wallets cannot pay this"


class GrantMonthClosed(Conflict):
    code, title = "grant_month_closed", "The grant's month has already ended"


class DinerInactive(Conflict):
    code, title = "diner_inactive", "The diner is not active"


class NoFundingAccount(Conflict):
    code, title = "no_funding_account", "The diner has no funding account for top-ups"


class BillNotPayable(Conflict):
    code, title = "bill_not_payable", "The bill is not open for payment"


class SandboxOnly(Forbidden):
    code, title = "sandbox_only", "Only in the sandbox"
