"""The catalogue of the event types the platform emits: the one place that knows them.

Every `publish` names one of these (checked in `gateway.events.publish`). The sandbox accepts
exactly the partner-facing ones for its sample events, and documents them from here. An event
type is `resource.action`; the values of the f-string types in the products (`transfer.{status}`,
`payables_certificate.{action}`, ...) are spelt out, read from the code that builds them.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

log = logging.getLogger("quanlian.events")


@dataclass(frozen=True)
class EventType:
    name: str
    resource_type: str  # the event's `resource.type` (not always the name's first part)


def _group(resource_type: str, prefix: str, *actions: str) -> list[EventType]:
    return [EventType(f"{prefix}.{action}", resource_type) for action in actions]


def _resource(resource_type: str, *actions: str) -> list[EventType]:
    return _group(resource_type, resource_type, *actions)


# Delivered to the partner's own tenant (its webhooks, `GET /v1/events`).
PARTNER_EVENTS: tuple[EventType, ...] = tuple([
    # accounts
    *_resource("account", "frozen", "unfrozen", "closed"),
    *_resource("transfer", "pending", "completed", "failed"),  # f"transfer.{status}"
    # chain credit
    *_resource("chain_member", "registered"),
    *_resource("credit_facility", "granted", "renewed", "frozen", "unfrozen", "expired"),
    *_resource("payables_certificate", "issued", "accepted", "rejected", "cancelled", "split",
               "transferred", "financed", "settled", "overdue"),
    *_resource("financing_quote", "created", "accepted", "declined", "expired"),
    *_resource("financing_application", "submitted", "disbursed", "declined", "repaid",
               "overdue"),
    *_resource("chain_risk_event", "recorded"),
    # collection
    *_resource("collection_settings", "updated"),
    *_resource("sub_merchant", "created", "updated"),
    *_resource("debit_mandate", "created", "revoked", "expired"),
    *_resource("collection_order", "created", "succeeded", "failed", "expired"),  # f"…{kind}"
    *_resource("collection_refund", "succeeded"),
    *_resource("canteen_employer", "created"),
    *_resource("diner", "created"),
    *_group("diner", "diner_wallet", "topped_up"),
    *_resource("subsidy_grant", "funded", "expired"),
    *_group("reconciliation_comparison", "reconciliation", "compared"),
    *_resource("settlement", "paid", "carried_forward"),
    *_resource("virtual_account", "created", "funds_received"),
    *_resource("park", "created", "updated"),
    *_resource("park_tenant", "created"),
    *_resource("bill", "created", "cancelled", "paid", "partially_paid", "overdue",
               "late_fee_accrued", "reminder", "payment_refunded"),
    # payroll
    *_resource("payroll_batch", "validated", "rejected", "confirmed", "cancelled", "processing",
               "completed"),
    *_resource("payroll_item", "failed", "returned"),
    *_resource("wage_project", "created", "funded", "arrears_warning"),
    *_resource("wage_worker", "registered", "updated"),
    *_resource("payroll_regulator", "region_granted", "region_revoked"),
    # e-government payments and escrow
    *_resource("egov_portal", "updated"),
    *_group("egov_payment_order", "egov_payment", "created", "expired", "cancelled",
            "attempt_failed", "failed", "succeeded"),
    *_resource("egov_regulator", "registered"),
    *_resource("escrow_scheme", "created", "awarded"),
    *_resource("escrow_deposit", "received"),
    *_resource("escrow_sub_account", "opened", "awarded", "lost", "withdrawn", "completed",
               "refunded"),
    *_resource("release_instruction", "created", "approved", "decision_recorded", "rejected",
               "cancelled", "executed", "failed"),
    # the partner's own webhook configuration
    *_resource("webhook_endpoint", "created", "updated", "deleted", "secret_rotated", "disabled"),
    *_resource("webhook_delivery", "retry_requested"),
])

# The bank's own acts, published in the operations tenant: never delivered to a partner, so
# never a sandbox sample.
OPERATIONS_EVENTS: tuple[EventType, ...] = tuple([
    *_resource("partner", "submitted", "reviewed", "approved", "rejected", "activated",
               "suspended", "reactivated", "offboarded"),
    *_group("partner", "partner_application", "contacts_viewed"),
    *_group("oauth_client", "partner_client", "issued", "revoked", "rotated"),
    *_resource("operator", "created", "password_changed", "enabled", "disabled", "locked",
               "unlocked", "totp_enabled", "totp_disabled", "totp_reset"),
])

CATALOGUE: dict[str, EventType] = {e.name: e for e in PARTNER_EVENTS + OPERATIONS_EVENTS}
EVENT_TYPES: frozenset[str] = frozenset(CATALOGUE)
PARTNER_EVENT_TYPES: frozenset[str] = frozenset(e.name for e in PARTNER_EVENTS)


class UncataloguedEventType(ValueError):
    pass


# Strict (tests, CI): publishing an uncatalogued type fails the call. Otherwise it is logged and
# the event still goes out: a missing catalogue entry must never lose a customer's event.
strict = os.environ.get("QUANLIAN_STRICT_EVENT_TYPES", "") == "1"


def check_event_type(name: str) -> None:
    """Called by `publish` for every event: a frozenset look-up on the normal path."""
    if name in EVENT_TYPES:
        return
    if strict:
        raise UncataloguedEventType(f"event type {name!r} is not in gateway.event_types")
    log.warning("event type %r is not in gateway.event_types; add it to the catalogue", name)
