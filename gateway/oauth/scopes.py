"""Scopes: per product and access, plus the bank's operations and supervisors' scopes."""

PARTNER_SCOPES = (
    "accounts:read", "accounts:write",
    "chain_credit:read", "chain_credit:write",
    "payroll:read", "payroll:write",
    "collection:read", "collection:write",
    "egov:read", "egov:write",
    "evidence:read", "webhooks:manage",
)
# Granted to regulators' portals only (a government partner), never by default.
SUPERVISOR_SCOPES = ("payroll:supervise", "egov:supervise")
# Granted to the bank's own operations clients only.
OPERATIONS_SCOPES = ("operations:read", "operations:write")

ALL_SCOPES = PARTNER_SCOPES + SUPERVISOR_SCOPES + OPERATIONS_SCOPES
