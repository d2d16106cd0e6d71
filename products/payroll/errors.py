"""Payroll's domain errors: each a problem with a stable code (mapped to HTTP in gateway.errors)."""

from __future__ import annotations

from gateway.errors import Conflict, Forbidden, NotFound, Problem, ValidationFailed
from products.accounts.errors import DebitNotAuthorized


class PayrollProblem(Problem):
    status, code, title = 400, "payroll_error", "Payroll request refused"


class BatchNotFound(NotFound):
    code, title = "payroll_batch_not_found", "No such payroll batch"


class ItemNotFound(NotFound):
    code, title = "payroll_item_not_found", "No such payroll item"


class PayerAccountNotFound(ValidationFailed):
    code, title = "payer_account_not_found", "No such payer account"


class InvalidBatchFile(PayrollProblem):
    """The upload cannot be read as the payroll layout at all (nothing is stored)."""

    status, code, title = 422, "invalid_batch_file", "The batch file cannot be read"


class UnsupportedBatchMedia(PayrollProblem):
    status, code, title = 415, "unsupported_media_type", "Unsupported media type"


class DuplicateBatch(Conflict):
    code, title = "duplicate_external_reference", "A batch with this external reference exists"


class PayerAccountUnavailable(Conflict):
    code, title = "payer_account_unavailable", "The payer account cannot be debited"


class BatchTooLarge(PayrollProblem):
    status, code, title = 413, "batch_too_large", "Too many items in one batch"


class SandboxOnly(Forbidden):
    code, title = "sandbox_only", "Only in the sandbox"


class WageProjectNotFound(NotFound):
    code, title = "wage_project_not_found", "No such wage project"


class WageWorkerNotFound(NotFound):
    code, title = "wage_worker_not_found", "No such registered worker"


class DuplicateWageProject(Conflict):
    code, title = "duplicate_project_code", "A wage project with this code exists"


class DuplicateWorker(Conflict):
    code, title = "worker_already_registered", "The worker is already registered on this project"


class InvalidWorkerFile(PayrollProblem):
    status, code, title = 422, "invalid_worker_file", "The worker file cannot be read"


class WorkerValidationFailed(ValidationFailed):
    code, title = "worker_validation_failed", "Worker registration refused"


class WageAccountRestricted(DebitNotAuthorized):
    """A debit from a supervised wage account that is not a registered worker's wage (the
    ledger records a refused transfer as failed with this code)."""

    status, code, title = 403, "wage_account_restricted", "Debits from a wage account are restricted"


class RegionNotGranted(Forbidden):
    code, title = "region_not_granted", "No supervision grant for this region"
