"""Scopes: per product and access, plus the bank's operations and supervisors' scopes."""

PARTNER_SCOPES = (
    "accounts:read", "accounts:write",
    "chain_credit:read", "chain_credit:write",
    "payroll:read", "payroll:write",
    "collection:read", "collection:write",
    "egov:read", "egov:write",
    "evidence:read", "webhooks:manage",
)
# The partner scopes that change something: holding any one of them lets a client change what
# every client of its sandbox tenant sees (the test clock, a reset).
WRITE_SCOPES = tuple(scope for scope in PARTNER_SCOPES if scope.endswith(":write"))
# Granted to regulators' portals only (a government partner), never by default.
SUPERVISOR_SCOPES = ("payroll:supervise", "egov:supervise")
# Granted to the bank's own operations clients only.
OPERATIONS_SCOPES = ("operations:read", "operations:write")

ALL_SCOPES = PARTNER_SCOPES + SUPERVISOR_SCOPES + OPERATIONS_SCOPES

# What each scope allows, as the OpenAPI document and the discovery tell partners.
SCOPE_DESCRIPTIONS = {
    "accounts:read": "Read the partner's accounts, balances, transactions and statements",
    "accounts:write": "Move money between the partner's accounts",
    "chain_credit:read": "Read facilities, chain members, payables certificates and financing",
    "chain_credit:write": "Register members; issue, accept, split, transfer and finance "
                          "payables certificates",
    "payroll:read": "Read payroll batches, items, results and wage projects",
    "payroll:write": "Submit, confirm and cancel payroll batches; run wage projects",
    "collection:read": "Read sub-merchants, mandates, orders, settlements and reconciliation",
    "collection:write": "Collect, refund and split; canteen and park operations",
    "egov:read": "Read payment orders, receipts, escrow schemes and reconciliation",
    "egov:write": "Create payment orders; open and move money in escrow schemes",
    "evidence:read": "Read the evidence log's entries, proofs and checkpoints",
    "webhooks:manage": "Register and manage webhook endpoints",
    "payroll:supervise": "A labour regulator: watch supervised wage projects in its regions",
    "egov:supervise": "A regulator: watch escrow schemes and decide release instructions",
    "operations:read": "The bank's operations staff: read partners, facilities and grants",
    "operations:write": "The bank's operations staff: onboard partners, grant facilities, "
                        "approve financing",
}
