"""Chain credit state machines: every allowed transition is listed here and nowhere else.

Payables certificate (one node of a certificate's tree):
    issued -> accepted | rejected           (the tier-1 member signs for it, or refuses it)
    issued -> cancelled                     (the issuer withdraws it, or maturity came unsigned)
    accepted -> split | transferred         (the node ends; its children carry the value on)
    accepted -> financing                   (a financing quote is open: the node is reserved)
    financing -> financed                   (the holder took the quote: the bank holds it now)
    financing -> accepted                   (the quote expired or was declined)
    accepted | financing | financed -> settled | overdue     (maturity: paid, or funds short)
    overdue -> settled                      (the core enterprise paid late)
    split, transferred, rejected, cancelled, settled: final

Facility: active <-> frozen; active | frozen -> expired; expired -> active (renewed: the bank
grants the core enterprise a new term on the same facility).

Financing quote: open -> accepted | expired | declined.

Financing application (factoring, order financing):
    submitted -> disbursed | declined        (operations approve, and the ledger pays at once)
    disbursed -> repaid | overdue            (the due date came: repaid, or funds short)
    overdue -> repaid                        (paid late)
"""

from __future__ import annotations

from products.chain_credit.errors import CertificateStateConflict, InvalidStateTransition

CERTIFICATE_TRANSITIONS: dict[str, frozenset[str]] = {
    "issued": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"split", "transferred", "financing", "settled", "overdue"}),
    "financing": frozenset({"financed", "accepted", "settled", "overdue"}),
    "financed": frozenset({"settled", "overdue"}),
    "overdue": frozenset({"settled"}),
    "split": frozenset(),
    "transferred": frozenset(),
    "rejected": frozenset(),
    "cancelled": frozenset(),
    "settled": frozenset(),
}
CERTIFICATE_STATES = tuple(CERTIFICATE_TRANSITIONS)
# Nodes that still carry value (a leaf of its tree that has not been paid or voided).
LIVE_CERTIFICATE_STATES = frozenset({"accepted", "financing", "financed", "overdue"})
# Nodes whose value the core enterprise still owes (counted in the facility's outstanding).
UNPAID_CERTIFICATE_STATES = frozenset({"issued"}) | LIVE_CERTIFICATE_STATES
# Nodes whose value is owed by maturity (settled together, per root).
MATURING_STATES = frozenset({"accepted", "financing", "financed", "overdue"})

FACILITY_TRANSITIONS: dict[str, frozenset[str]] = {
    "active": frozenset({"frozen", "expired"}),
    "frozen": frozenset({"active", "expired"}),
    "expired": frozenset({"active"}),
}
FACILITY_STATES = tuple(FACILITY_TRANSITIONS)

QUOTE_TRANSITIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"accepted", "expired", "declined"}),
    "accepted": frozenset(),
    "expired": frozenset(),
    "declined": frozenset(),
}
QUOTE_STATES = tuple(QUOTE_TRANSITIONS)

APPLICATION_TRANSITIONS: dict[str, frozenset[str]] = {
    "submitted": frozenset({"disbursed", "declined"}),
    "disbursed": frozenset({"repaid", "overdue"}),
    "overdue": frozenset({"repaid"}),
    "declined": frozenset(),
    "repaid": frozenset(),
}
APPLICATION_STATES = tuple(APPLICATION_TRANSITIONS)
# Applications whose invoices (purchase orders) the bank has paid out against.
FINANCED_APPLICATION_STATES = frozenset({"disbursed", "overdue", "repaid"})
# Applications whose principal the bank has paid out and not had back: they use the core
# enterprise's facility (its `outstanding`) until repaid.
LENT_APPLICATION_STATES = frozenset({"disbursed", "overdue"})
# Applications that hold their references: every one not declined (a duplicate filing is refused).
CLAIMING_APPLICATION_STATES = frozenset({"submitted"}) | FINANCED_APPLICATION_STATES

# What each certificate action is called in a refusal ("cannot be split").
_ACTION_WORDS = {
    "accepted": "accepted", "rejected": "rejected", "cancelled": "cancelled",
    "split": "split", "transferred": "transferred", "financing": "offered for financing",
    "financed": "financed", "settled": "settled", "overdue": "marked overdue",
}


def certificate_can(current: str, target: str) -> bool:
    return target in CERTIFICATE_TRANSITIONS.get(current, frozenset())


def check_certificate(cert_id: str, current: str, target: str) -> None:
    """Refuse a certificate transition the table does not list: a 409 naming both states."""
    if not certificate_can(current, target):
        raise CertificateStateConflict(
            f"Certificate {cert_id} is {current}: it cannot be {_ACTION_WORDS.get(target, target)}.",
            extra={"current_status": current, "requested_status": target})


def check(table: dict[str, frozenset[str]], what: str, current: str, target: str) -> None:
    """Refuse a transition of a facility, quote or application the table does not list."""
    if target not in table.get(current, frozenset()):
        raise InvalidStateTransition(f"A {what} that is {current} cannot become {target}.",
                                     extra={"current_status": current,
                                            "requested_status": target})
