"""The partner onboarding workflow: the one writer of `Partner.status`.

    submitted -> in_review -> approved -> active      (review, approve, activate)
    submitted | in_review -> rejected                  (reject)
    active <-> suspended                               (suspend, reactivate)
    any state but offboarded -> offboarded             (offboard: every client revoked)

Approval is maker-checker: the operator who reviewed an application (the maker) cannot be the
one who approves it (the checker). Every transition records actor, time and reason, and is
published as an event in the bank's operations tenant, which puts it in the evidence log.
Token checks read the status on every call (gateway.tenancy.TOKEN_STATES / PRODUCTION_STATES),
so a suspension refuses the partner's tokens on the very next call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.ids import new_id
from gateway.oauth.clients import partner_clients, revoke_client
from gateway.tenancy import Partner, clock_for
from partners.errors import (
    MakerCheckerViolation,
    PartnerNotFound,
    ReasonRequired,
    RoleRequired,
    TransitionNotAllowed,
)
from partners.models import PartnerApplication, PartnerTransition
from partners.operations import bank_tenant_id, publish_operations_event

STATUSES = ("submitted", "in_review", "approved", "active", "rejected", "suspended", "offboarded")
ROLES = ("reviewer", "approver", "auditor", "admin")


@dataclass(frozen=True)
class Transition:
    action: str
    sources: frozenset[str]
    target: str
    roles: frozenset[str]
    event_type: str
    label: str


def _t(action: str, sources: set[str], target: str, roles: set[str], event_type: str,
       label: str) -> tuple[str, Transition]:
    return action, Transition(action, frozenset(sources), target, frozenset(roles), event_type,
                              label)


# The allowed transitions, in one place. Auditors appear nowhere: they read, never change.
TRANSITIONS: dict[str, Transition] = dict([
    _t("review", {"submitted"}, "in_review", {"reviewer", "admin"}, "partner.reviewed",
       "Review: recommend approval"),
    _t("approve", {"in_review"}, "approved", {"approver", "admin"}, "partner.approved",
       "Approve"),
    _t("reject", {"submitted", "in_review"}, "rejected", {"reviewer", "approver", "admin"},
       "partner.rejected", "Reject"),
    _t("activate", {"approved"}, "active", {"approver", "admin"}, "partner.activated",
       "Activate production"),
    _t("suspend", {"active"}, "suspended", {"approver", "admin"}, "partner.suspended",
       "Suspend"),
    _t("reactivate", {"suspended"}, "active", {"approver", "admin"}, "partner.reactivated",
       "Reactivate"),
    _t("offboard", {"submitted", "in_review", "approved", "active", "suspended", "rejected"},
       "offboarded", {"admin"}, "partner.offboarded", "Offboard (revokes every client)"),
])


@dataclass(frozen=True)
class Actor:
    """Who acts: an operator (id and roles), or the applicant at submission."""

    id: str
    roles: frozenset[str]
    name: str = ""

    def has_any(self, roles: frozenset[str] | set[str]) -> bool:
        return bool(self.roles & roles)


def allowed_actions(status: str, actor: Actor) -> list[Transition]:
    """The transitions an actor may attempt from a status (for the console's buttons)."""
    return [t for t in TRANSITIONS.values() if status in t.sources and actor.has_any(t.roles)]


def partner_view(partner: Partner) -> dict[str, Any]:
    """The public representation of a partner used in events."""
    return {"id": partner.id, "name": partner.name, "uscc": partner.uscc,
            "partner_type": partner.partner_type, "status": partner.status}


def get_partner(session: Session, partner_id: str, *, lock: bool = False) -> Partner:
    query = select(Partner).where(Partner.id == partner_id, Partner.is_operations.is_(False))
    if lock:
        query = query.with_for_update()
    partner = session.scalars(query).first()
    if partner is None:
        raise PartnerNotFound(f"No partner {partner_id}.")
    return partner


def _record(session: Session, partner: Partner, *, action: str, from_status: str | None,
            to_status: str, actor: str, reason: str, event_type: str,
            extra: dict[str, Any] | None = None) -> PartnerTransition:
    tenant_id = bank_tenant_id(session)
    now = clock_for(session, tenant_id).now()
    data = partner_view(partner) | {"transition": {"action": action, "from": from_status,
                                                   "to": to_status, "reason": reason}}
    if extra:
        data |= extra
    event = publish_operations_event(session, type=event_type, resource_type="partner",
                                     resource_id=partner.id, data=data, actor=actor)
    row = PartnerTransition(id=new_id("ptr"), tenant_id=tenant_id, partner_id=partner.id,
                            action=action, from_status=from_status, to_status=to_status,
                            actor=actor, reason=reason, at=now, event_id=event.id)
    session.add(row)
    session.flush()
    return row


def record_submission(session: Session, partner: Partner, *, actor: str,
                      reason: str = "application submitted") -> PartnerTransition:
    """The first entry of a partner's history (its application arrived)."""
    return _record(session, partner, action="submit", from_status=None, to_status=partner.status,
                   actor=actor, reason=reason, event_type="partner.submitted")


def reviewer_of(session: Session, partner_id: str) -> str | None:
    """The operator whose review put the partner in review (the maker), if any."""
    row = session.scalars(select(PartnerTransition)
                          .where(PartnerTransition.partner_id == partner_id,
                                 PartnerTransition.action == "review")
                          .order_by(PartnerTransition.at.desc(), PartnerTransition.id.desc())
                          ).first()
    return row.actor if row is not None else None


def transition(session: Session, partner_id: str, action: str, *, actor: Actor,
               reason: str) -> PartnerTransition:
    """Move a partner to the next status through an allowed transition.

    Raises TransitionNotAllowed (unknown action or wrong current status), RoleRequired,
    ReasonRequired, MakerCheckerViolation. Offboarding revokes every client of the partner
    and disables its webhook endpoints in the same transaction.
    """
    spec = TRANSITIONS.get(action)
    if spec is None:
        raise TransitionNotAllowed(f"Unknown action {action!r}; allowed: "
                                   f"{', '.join(TRANSITIONS)}.", code="unknown_action")
    reason = (reason or "").strip()
    if not reason:
        raise ReasonRequired("Give a reason for this change; it goes into the evidence log.")
    if len(reason) > 1000:
        raise ReasonRequired("The reason is longer than 1000 characters.", code="reason_too_long")
    if not actor.has_any(spec.roles):
        raise RoleRequired(f"{spec.label} needs one of the roles: {', '.join(sorted(spec.roles))}.")
    partner = get_partner(session, partner_id, lock=True)
    if partner.status not in spec.sources:
        raise TransitionNotAllowed(
            f"Cannot {action} a partner that is {partner.status} "
            f"(allowed from: {', '.join(sorted(spec.sources))}).")
    if action == "approve":
        maker = reviewer_of(session, partner.id)
        if maker == actor.id:
            raise MakerCheckerViolation(
                "You reviewed this application; a different operator must approve it.")
    previous = partner.status
    partner.status = spec.target
    extra: dict[str, Any] = {}
    if action == "offboard":
        extra["revoked_clients"] = _offboard(session, partner)
    row = _record(session, partner, action=action, from_status=previous, to_status=spec.target,
                  actor=actor.id, reason=reason, event_type=spec.event_type, extra=extra)
    application = session.scalars(select(PartnerApplication)
                                  .where(PartnerApplication.partner_id == partner.id)).first()
    if application is not None:
        if action == "review":
            application.reviewed_by, application.reviewed_at = actor.id, row.at
        elif action in ("approve", "reject"):
            application.decided_by, application.decided_at = actor.id, row.at
            application.decision = "approved" if action == "approve" else "rejected"
            application.decision_reason = reason
    session.flush()
    return row


def _offboard(session: Session, partner: Partner) -> list[str]:
    from partners.webhooks.service import disable_partner_endpoints

    revoked = []
    for client in partner_clients(session, partner.id):
        if client.status != "revoked":
            revoke_client(session, client.id)
            revoked.append(client.id)
    disable_partner_endpoints(session, partner.id, reason="partner_offboarded")
    return revoked


def history(session: Session, partner_id: str) -> list[PartnerTransition]:
    """A partner's transitions, oldest first."""
    return list(session.scalars(select(PartnerTransition)
                                .where(PartnerTransition.partner_id == partner_id)
                                .order_by(PartnerTransition.at, PartnerTransition.id)))
