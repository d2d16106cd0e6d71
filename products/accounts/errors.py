"""The accounts product's domain errors: one tree under `AccountsProblem`.

Every error carries its HTTP status and a stable snake_case code (the gateway turns it into an
RFC 9457 problem). Two families matter to callers:

- `PaymentRefused`: the bank refuses to move money for a business reason (insufficient funds,
  a frozen or closed account, a restricted account without an accepted authorization, a payee
  name that does not match). `create_transfer` records these as a *failed* transfer carrying
  the code; the port raises them, before anything is written.
- everything else: the request itself is wrong (unknown account, bad amount, a replayed
  reference with different content) and nothing is recorded.

`LedgerIntegrityError` (500) means a programming error in a caller of the ledger, such as
postings that do not sum to zero: it is never the API caller's fault.
"""

from __future__ import annotations

from gateway import pagination
from gateway.errors import Problem


class AccountsProblem(Problem):
    status, code, title = 400, "accounts_error", "Accounts error"


# --- not found --------------------------------------------------------------------------

class AccountNotFound(AccountsProblem):
    status, code, title = 404, "account_not_found", "Account not found"


class HoldNotFound(AccountsProblem):
    status, code, title = 404, "hold_not_found", "Hold not found"


class TransferNotFound(AccountsProblem):
    status, code, title = 404, "transfer_not_found", "Transfer not found"


# --- invalid requests -------------------------------------------------------------------

class InvalidAmount(AccountsProblem):
    status, code, title = 422, "invalid_amount", "Invalid amount"


class SameAccount(AccountsProblem):
    status, code, title = 422, "same_account", "Source and destination are the same account"


class InvalidAccount(AccountsProblem):
    """Account data that cannot be stored (owner identifiers, kind, parent, number)."""

    status, code, title = 422, "invalid_account", "Invalid account"


class InvalidPeriod(AccountsProblem):
    status, code, title = 422, "invalid_period", "Invalid period"


# Every list's cursors are checked in one place (gateway.pagination); the name stays here.
InvalidCursor = pagination.InvalidCursor


class HoldAmountExceeded(AccountsProblem):
    status, code, title = 422, "hold_amount_exceeded", "Amount exceeds what the hold still holds"


# --- conflicts with the current state ---------------------------------------------------

class HoldNotActive(AccountsProblem):
    status, code, title = 409, "hold_not_active", "The hold is no longer active"


class JournalRefConflict(AccountsProblem):
    """A journal_ref (or hold_ref) was reused for a different movement."""

    status, code, title = 409, "journal_ref_conflict", "Journal reference already used"


class HoldRefConflict(AccountsProblem):
    status, code, title = 409, "hold_ref_conflict", "Hold reference already used"


class InvalidAccountTransition(AccountsProblem):
    status, code, title = 409, "invalid_account_transition", "Account status change not allowed"


class AccountNotEmpty(AccountsProblem):
    status, code, title = 409, "account_not_empty", "Account is not empty"


class OverdraftInUse(AccountsProblem):
    status, code, title = 409, "overdraft_in_use", "Overdraft is in use"


# --- the bank refuses to move money -----------------------------------------------------

class PaymentRefused(AccountsProblem):
    """Base of refusals that `create_transfer` records as a failed transfer."""

    status, code, title = 422, "payment_refused", "Payment refused"


class InsufficientFunds(PaymentRefused):
    status, code, title = 422, "insufficient_funds", "Insufficient funds"


class AccountFrozen(PaymentRefused):
    status, code, title = 409, "account_frozen", "Account is frozen"


class AccountClosed(PaymentRefused):
    status, code, title = 409, "account_closed", "Account is closed"


class DebitRestricted(PaymentRefused):
    """A restricted account (escrow, wage account) debited without an accepted authorization."""

    status, code, title = 403, "debit_restricted", "Debits of this account are restricted"


class DebitNotAuthorized(PaymentRefused):
    """What a debit guard raises (or subclasses) when it refuses the presented authorization."""

    status, code, title = 403, "debit_not_authorized", "The debit is not authorized"


class NameMismatch(PaymentRefused):
    status, code, title = 422, "name_mismatch", "Payee name does not match the account"


# --- programming errors -----------------------------------------------------------------

class LedgerIntegrityError(AccountsProblem):
    status, code, title = 500, "ledger_integrity", "Ledger integrity error"


class UnbalancedEntry(LedgerIntegrityError):
    status, code, title = 500, "unbalanced_entry", "Postings do not sum to zero"


# Codes a failed transfer may carry (the refusals above, and the sandbox's processing failure).
PROCESSING_FAILED = "processing_failed"
