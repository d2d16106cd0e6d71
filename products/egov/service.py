"""Government payment orders: the portal profile, orders, checkout payments, expiry.

A portal registers the web origins it runs on (they may frame the checkout and receive its
outcome; return URLs must be on one) and the collection account it is paid into. It creates an
order; the payer pays it at the hosted checkout, from a bank account (simulated login in the
sandbox) or by a QR code (simulated). A paid order is paid exactly once: the order row is locked
and the ledger entry carries one journal reference per order. Every change publishes an event
(webhook + evidence entry) in the same transaction.
"""

from __future__ import annotations

import logging
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, defer

from gateway.bulk import session_select, session_store
from gateway.clock import business_date, to_rfc3339
from gateway.db import Database
from gateway.events import publish
from gateway.identifiers import IdentifierError, luhn_check_digit, validate_bank_card
from gateway.ids import new_id
from gateway.jobs import for_each_tenant
from gateway.money import Money
from gateway.pagination import page
from gateway.pii import mask_account_number, mask_id_number, mask_name, pii_digest
from gateway.tenancy import Tenant, clock_for, note_facts
from products.egov import ledger
from products.egov.errors import (
    CheckoutNotFound,
    DuplicatePortalReference,
    InvalidOrigin,
    PayeeAccountNotFound,
    PayerLoginUnavailable,
    PaymentOrderNotFound,
    PortalNotConfigured,
    PortalProfileNotFound,
    ReturnUrlNotRegistered,
)
from products.egov.models import EgovPortal, PaymentAttempt, PaymentOrder
from products.egov.schemas import PaymentOrderIn, PortalIn
from products.egov.states import check_order

log = logging.getLogger("quanlian.egov")

DEFAULT_TTL = timedelta(minutes=30)
MIN_TTL = timedelta(minutes=1)
MAX_TTL = timedelta(days=30)
# After this many refused attempts the checkout closes (the order fails): a payer's bank login
# must not be guessable through our page.
MAX_FAILED_ATTEMPTS = 5
# What the payer's form got wrong before anything was tried: answered, never counted.
INPUT_MISTAKES = frozenset({"invalid_account_number", "invalid_method"})
# Sandbox bank login (simulated): any Luhn-valid account number with this password.
SANDBOX_PASSWORD = "123456"
RESULT_PARAM = "egov_result"

FAILURE_MESSAGES = {
    "invalid_account_number": "账号无效（校验位不符）。 The account number is not valid.",
    "login_failed": "账号或密码错误。 Wrong account number or password.",
    "insufficient_funds": "账户余额不足。 Insufficient funds.",
    "account_closed": "账户已销户。 The account is closed.",
    "account_frozen": "账户已冻结。 The account is frozen.",
    "name_mismatch": "户名不符。 The name does not match.",
    "processing_failed": "银行处理失败，请稍后重试。 The bank could not process the payment.",
    "debit_restricted": "该账户不能用于缴款。 This account cannot pay.",
}


# --- portal profile ---------------------------------------------------------------------------

def normalize_origin(value: str, *, production: bool) -> str:
    """`scheme://host[:port]`, lower-case, default port dropped; https only in production."""
    raw = value.strip()
    try:
        parts = urlsplit(raw)
        port = parts.port
    except ValueError:
        raise InvalidOrigin(f"{raw!r} is not a web origin.") from None
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise InvalidOrigin(f"{raw!r} is not a web origin (https://host[:port]).")
    if production and scheme != "https":
        raise InvalidOrigin(f"{raw!r}: production origins must use https.")
    if parts.username or parts.password or parts.query or parts.fragment or parts.path not in ("", "/"):
        raise InvalidOrigin(f"{raw!r}: an origin has no path, query, fragment or credentials.")
    host = parts.hostname.lower()
    if ":" in host:
        # CSP's frame-ancestors, which lets the portal embed the checkout, has no form for an
        # IPv6 address.
        raise InvalidOrigin(f"{raw!r}: name the host; an IPv6 address cannot be an origin that "
                            "embeds the checkout.")
    if not all(c.isalnum() or c in ".-" for c in host) or not host.isascii():
        raise InvalidOrigin(f"{raw!r}: use the host's ASCII (punycode) form.")
    if "" in host.split("."):
        raise InvalidOrigin(f"{raw!r}: a host name has no empty label (nor a trailing dot).")
    if port == 0:
        raise InvalidOrigin(f"{raw!r}: port 0 is not a port a page is served from.")
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def portal_view(portal: EgovPortal) -> dict[str, Any]:
    return {"name": portal.name, "payee_name": portal.payee_name,
            "payee_account_id": portal.payee_account_id, "origins": list(portal.origins),
            "created_at": to_rfc3339(portal.created_at), "updated_at": to_rfc3339(portal.updated_at)}


def get_portal(session: Session, tenant_id: str) -> EgovPortal:
    """The tenant's portal profile; `PortalNotConfigured` (409) until it is set."""
    return portal_and_tenant(session, tenant_id)[0]


def portal_profile(session: Session, tenant_id: str) -> EgovPortal:
    """The tenant's portal profile to read: `PortalProfileNotFound` (404, code
    `portal_not_configured`) until it is set. What needs the profile to act (creating an order,
    a statement) answers 409 instead: a precondition of that call's state, not a missing
    resource (`get_portal`, `portal_terms`)."""
    portal = session.get(EgovPortal, tenant_id)
    if portal is None:
        raise PortalProfileNotFound(_SET_UP_FIRST)
    return portal


_SET_UP_FIRST = "Set up the portal first: PUT /v1/egov/portal with its payee account and web origins."


def portal_and_tenant(session: Session, tenant_id: str) -> tuple[EgovPortal, Tenant]:
    """The portal profile and the tenant row in one query. Hold on to the tenant while you use
    the session: the identity map keeps it only while referenced, and then the tenant's clock
    (`clock_for`) costs no second query."""
    row = session.execute(select(EgovPortal, Tenant).join(Tenant, Tenant.id == EgovPortal.tenant_id)
                          .where(EgovPortal.tenant_id == tenant_id)).first()
    if row is None:
        raise PortalNotConfigured(_SET_UP_FIRST)
    return row[0], row[1]


def set_portal(session: Session, *, tenant_id: str, environment: str, body: PortalIn,
               actor: str) -> EgovPortal:
    """Create or replace the portal profile (payee, collection account, registered origins)."""
    production = environment == "production"
    origins: list[str] = []
    for value in body.origins:
        origin = normalize_origin(value, production=production)
        if origin not in origins:
            origins.append(origin)
    ledger.check_payee(session, tenant_id, body.payee_account_id, "payee_account_id")
    now = clock_for(session, tenant_id).now()
    portal = session.get(EgovPortal, tenant_id, with_for_update=True, populate_existing=True)
    if portal is None:
        portal = EgovPortal(tenant_id=tenant_id, created_at=now)
        session.add(portal)
    portal.name = body.name
    portal.payee_name = body.payee_name
    portal.payee_account_id = body.payee_account_id
    portal.origins = origins
    _updated(session, portal, actor=actor, at=now)
    return portal


def _updated(session: Session, portal: EgovPortal, *, actor: str, at: datetime) -> None:
    portal.updated_at = at
    session.flush()
    publish(session, tenant_id=portal.tenant_id, type="egov_portal.updated",
            resource_type="egov_portal", resource_id=portal.tenant_id, data=portal_view(portal),
            actor=actor, at=at)


def keep_portal_payable(session: Session, tenant_id: str, *, fallback_account_id: str,
                        actor: str) -> bool:
    """After a sandbox reset, which keeps the portal profile but deletes the accounts made
    since sign-up: a payee account that did not come back with the seed is replaced by
    `fallback_account_id` (the seeded `operating` account), so that orders remain payable; the
    change is published as `egov_portal.updated`. Answers whether it changed anything."""
    portal = session.get(EgovPortal, tenant_id, with_for_update=True, populate_existing=True)
    if portal is None:
        return False
    try:
        ledger.check_payee(session, tenant_id, portal.payee_account_id, "payee_account_id")
        return False
    except PayeeAccountNotFound:
        pass
    portal.payee_account_id = fallback_account_id
    _updated(session, portal, actor=actor, at=clock_for(session, tenant_id).now())
    return True


def origin_of(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if parts.scheme.lower() == "https" else 80
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port is not None and port != default
                                                 else "")


class PortalTerms(NamedTuple):
    """What an order needs of its portal, read on the driver (`portal_terms`)."""

    payee_name: str
    payee_account_id: str
    origins: list[str]


def portal_terms(session: Session, tenant_id: str) -> PortalTerms:
    """The portal's payee and origins in one driver read (every order creation asks), or
    `PortalNotConfigured`."""
    rows = session_select(session, EgovPortal.__table__, PortalTerms._fields,
                          "tenant_id = :tenant", {"tenant": tenant_id})
    if not rows:
        raise PortalNotConfigured(_SET_UP_FIRST)
    return PortalTerms._make(rows[0])


def check_return_url(portal: EgovPortal | PortalTerms, url: str) -> str:
    parts = urlsplit(url)
    # Control and format characters (a right-to-left override, a zero-width space) would show
    # the payer one address and send them to another, as they would in a name.
    if parts.username or parts.password or any(
            c in "\r\n\t <>\"'`\\" or unicodedata.category(c) in ("Cc", "Cf") for c in url):
        raise ReturnUrlNotRegistered("return_url must be a plain absolute URL: no credentials, spaces, "
                                     "quotes or invisible characters.")
    origin = origin_of(url)
    if origin is None or origin not in portal.origins:
        raise ReturnUrlNotRegistered(
            f"return_url must be on one of the portal's registered origins "
            f"({', '.join(portal.origins) or 'none registered'}).")
    return url


def with_result(return_url: str, token: str) -> str:
    """`return_url` with the signed result appended as the `egov_result` query parameter.

    The rest of the URL comes back byte for byte (a portal may sign or compare its own return
    URL, or read `+` literally): no parse-and-re-encode, which would turn `%20` into `+` and a
    bare `flag` into `flag=`. Only an `egov_result` the URL already carries is dropped, so that
    the portal never reads a stale result instead of this one."""
    rest, hash_mark, fragment = return_url.partition("#")
    base, _, query = rest.partition("?")
    kept = [part for part in query.split("&") if part.partition("=")[0] != RESULT_PARAM] if query else []
    kept.append(f"{RESULT_PARAM}={quote(token, safe='')}")
    return f"{base}?{'&'.join(kept)}{hash_mark}{fragment}"


# --- payment orders -------------------------------------------------------------------------

def _payment_code() -> str:
    """缴款码: 20 digits, the last a Luhn check digit (catches a mistyped code)."""
    payload = str(secrets.randbelow(9 * 10 ** 18) + 10 ** 18)
    return payload + luhn_check_digit(payload)


def checkout_url(issuer: str, order: PaymentOrder) -> str:
    return f"{issuer.rstrip('/')}/checkout/{order.checkout_token}"


def order_view(order: PaymentOrder, issuer: str) -> dict[str, Any]:
    """The order's public representation (personal data masked): API responses and events."""
    base = issuer.rstrip("/")
    return {
        "id": order.id, "portal_reference": order.portal_reference, "item_code": order.item_code,
        "item_name": order.item_name,
        "payer": {"name": order.payer_name_masked, "id_type": order.payer_id_type,
                  "id_number": order.payer_id_masked},
        "amount": Money.of(order.amount_fen).model_dump(), "description": order.description,
        "payee_name": order.payee_name, "payment_code": order.payment_code,
        "checkout_url": checkout_url(issuer, order), "return_url": order.return_url,
        "status": order.status, "expires_at": to_rfc3339(order.expires_at),
        "failed_attempts": order.failed_attempts, "last_failure_code": order.last_failure_code,
        "cancel_reason": order.cancel_reason, "payment_method": order.payment_method,
        "payer_account": order.payer_account_masked,
        "paid_at": to_rfc3339(order.paid_at) if order.paid_at else None,
        "receipt_number": order.receipt_number,
        "receipt_url": f"{base}/v1/egov/payment-orders/{order.id}/receipt" if order.paid_at else None,
        "created_at": to_rfc3339(order.created_at), "updated_at": to_rfc3339(order.updated_at),
    }


def _publish(session: Session, order: PaymentOrder, type_: str, actor: str, at: datetime,
             issuer: str) -> str:
    event = publish(session, tenant_id=order.tenant_id, type=type_,
                    resource_type="egov_payment_order", resource_id=order.id,
                    data=order_view(order, issuer), actor=actor, at=at)
    return event.id


def create_order(session: Session, *, tenant_id: str, actor: str, body: PaymentOrderIn,
                 issuer: str) -> PaymentOrder:
    """Create an open order with its payment code and checkout token."""
    portal = portal_terms(session, tenant_id)
    return_url = check_return_url(portal, body.return_url)
    now = clock_for(session, tenant_id).now()
    expires_at = body.expires_at or now + DEFAULT_TTL
    if expires_at < now + MIN_TTL or expires_at > now + MAX_TTL:
        from gateway.errors import ValidationFailed

        raise ValidationFailed("expires_at must be between 1 minute and 30 days from now.",
                               code="invalid_expiry",
                               errors=[{"field": "body.expires_at",
                                        "message": "between 1 minute and 30 days ahead"}])
    payer = body.payer
    order = PaymentOrder(
        id=new_id("egpo"), tenant_id=tenant_id, portal_reference=body.portal_reference,
        item_code=body.item_code, item_name=body.item_name, payer_name=payer.name,
        payer_name_masked=mask_name(payer.name), payer_id_type=payer.id_type,
        payer_id_number=payer.id_number, payer_id_masked=mask_id_number(payer.id_number),
        payer_id_digest=pii_digest(payer.id_number), amount_fen=body.amount.fen,
        description=body.description, return_url=return_url, payee_name=portal.payee_name,
        payee_account_id=portal.payee_account_id, payment_code=_payment_code(),
        checkout_token=secrets.token_urlsafe(24), status="open", expires_at=expires_at,
        failed_attempts=0, created_by=actor, created_at=now, updated_at=now)
    # One INSERT that skips a taken key: only then is the holder of the portal_reference
    # looked up, and the transaction is still usable to do it. (A random id, payment code or
    # checkout token that was taken is drawn again.)
    for _ in range(5):
        if session_store(session, [order], flush=False, skip_conflicts=True):
            break
        taken = session.scalar(select(PaymentOrder.id).where(
            PaymentOrder.tenant_id == tenant_id,
            PaymentOrder.portal_reference == body.portal_reference))
        if taken is not None:
            raise DuplicatePortalReference(f"Order {taken} already has portal_reference "
                                           f"{body.portal_reference!r}.", extra={"order_id": taken})
        order.id, order.payment_code = new_id("egpo"), _payment_code()
        order.checkout_token = secrets.token_urlsafe(24)
    else:  # pragma: no cover - five random draws taken in a row
        raise RuntimeError("no free payment code drawn")
    _publish(session, order, "egov_payment.created", actor, now, issuer)
    return order


def get_order(session: Session, tenant_id: str, order_id: str, *, lock: bool = False) -> PaymentOrder:
    query = select(PaymentOrder).where(PaymentOrder.id == order_id, PaymentOrder.tenant_id == tenant_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    order = session.scalars(query).first()
    if order is None:
        raise PaymentOrderNotFound(f"No payment order {order_id}.")
    return order


def list_orders(session: Session, tenant_id: str, *, limit: int, cursor: str | None,
                status: str | None = None,
                portal_reference: str | None = None) -> tuple[list[PaymentOrder], str | None]:
    """Newest first."""
    query = select(PaymentOrder).where(PaymentOrder.tenant_id == tenant_id)
    if status:
        query = query.where(PaymentOrder.status == status)
    if portal_reference:
        query = query.where(PaymentOrder.portal_reference == portal_reference)
    return page(session, query, PaymentOrder.id, limit=limit, cursor=cursor)


def expire_if_due(session: Session, order: PaymentOrder, now: datetime, issuer: str) -> bool:
    """Expire an open order whose expiry has passed (the caller holds its row lock)."""
    if order.status != "open" or order.expires_at > now:
        return False
    check_order(order.status, "expired", action="expired")
    order.status = "expired"
    # It closed when it expired, not when a job or a read noticed: the day's statement lists
    # it on the day it expired.
    order.closed_at = order.expires_at
    order.updated_at = now
    session.flush()
    _publish(session, order, "egov_payment.expired", "system", now, issuer)
    return True


def cancel_order(session: Session, order: PaymentOrder, *, actor: str, issuer: str,
                 reason: str = "") -> PaymentOrder:
    """Cancel an open order (the portal's call, with its reason, or the payer's at checkout)."""
    now = clock_for(session, order.tenant_id).now()
    expire_if_due(session, order, now, issuer)
    check_order(order.status, "cancelled", action="cancelled")
    order.status = "cancelled"
    order.cancel_reason = reason.strip() or None
    order.closed_at = now
    order.updated_at = now
    session.flush()
    _publish(session, order, "egov_payment.cancelled", actor, now, issuer)
    return order


def checkout_by_token(session: Session, token: str, *,
                      lock: bool = False) -> tuple[PaymentOrder, Tenant, EgovPortal | None]:
    """The order behind a checkout token with its tenant and portal, in one query (the page
    needs the tenant's clock and environment and the portal's origins: the tenant's facts are
    kept for `clock_for` and `is_sandbox`, so they need no query of their own). A page view
    (`lock` False) leaves the payer's encrypted name and ID number unread: the page shows only
    their masks, and they load if asked for."""
    if not token or len(token) > 64:
        raise CheckoutNotFound("No such checkout.")
    row = session.execute(_CHECKOUT_LOCKED if lock else _CHECKOUT, {"token": token}).first()
    if row is None:
        raise CheckoutNotFound("No such checkout.")
    note_facts(session, row[1])
    return row[0], row[1], row[2]


# Built once: a checkout page view runs it, and building it anew cost about as much as running it.
_CHECKOUT = (select(PaymentOrder, Tenant, EgovPortal)
             .join(Tenant, Tenant.id == PaymentOrder.tenant_id)
             .join(EgovPortal, EgovPortal.tenant_id == PaymentOrder.tenant_id, isouter=True)
             .where(PaymentOrder.checkout_token == bindparam("token")))
_CHECKOUT_LOCKED = (_CHECKOUT.with_for_update(of=PaymentOrder)
                    .execution_options(populate_existing=True))
_CHECKOUT = _CHECKOUT.options(defer(PaymentOrder.payer_name), defer(PaymentOrder.payer_id_number))


def order_by_token(session: Session, token: str, *, lock: bool = False) -> PaymentOrder:
    return checkout_by_token(session, token, lock=lock)[0]


def order_by_verification(session: Session, code: str) -> PaymentOrder:
    if not code or len(code) > 40:
        raise CheckoutNotFound("No such receipt.", code="receipt_not_found")
    order = session.scalars(select(PaymentOrder).where(PaymentOrder.verification_code == code)).first()
    if order is None or order.status != "paid":
        raise CheckoutNotFound("No such receipt.", code="receipt_not_found")
    return order


@dataclass
class PayOutcome:
    order: PaymentOrder
    paid: bool
    failure: str | None = None


def _receipt_number(now: datetime) -> str:
    return "EG" + business_date(now).strftime("%Y%m%d") + str(secrets.randbelow(10 ** 10)).zfill(10)


def pay(session: Session, token: str, *, method: str, account_number: str = "", password: str = "",
        issuer: str) -> PayOutcome:
    """Pay an order at checkout. A refused attempt is recorded and counted (five fail the order),
    never raised; a form mistake (`INPUT_MISTAKES`) is answered and neither."""
    order, tenant, _ = checkout_by_token(session, token, lock=True)
    tenant_id = order.tenant_id
    now = clock_for(session, tenant_id).now()
    expire_if_due(session, order, now, issuer)
    if order.status != "open":
        return PayOutcome(order, paid=False, failure=f"order_{order.status}")
    if tenant.environment != "sandbox":
        # A real bank login (online-banking authentication) is a separate integration.
        raise PayerLoginUnavailable("Paying at this checkout needs the bank's online-banking "
                                    "login, which this deployment does not offer.")
    failure: str | None = None
    from_account_id: str | None = None
    masked: str | None = None
    if method == "bank_account":
        number = "".join(account_number.split())
        try:
            number = validate_bank_card(number)
        except IdentifierError:
            failure = "invalid_account_number"
        else:
            masked = mask_account_number(number)
            if not secrets.compare_digest(password.encode(), SANDBOX_PASSWORD.encode()):
                failure = "login_failed"
            else:
                account = ledger.find_by_number(session, tenant_id, number)
                if account is not None and account.kind != "internal":
                    from_account_id = account.id
                else:
                    status = ledger.magic_account_status(number)
                    if status is not None:
                        failure = f"account_{status}"
    elif method != "qr":
        failure = "invalid_method"
    if failure in INPUT_MISTAKES:
        # A mistyped card number is not a guess at someone's login: nothing was tried, so the
        # order's attempts are not used up by it.
        return PayOutcome(order, paid=False, failure=failure)
    if failure is None:
        failure = ledger.sandbox_refusal(session, tenant_id, order.amount_fen)
    entry = None
    if failure is None:
        try:
            entry = ledger.pay_order(session, tenant_id, order_id=order.id,
                                     payee_account_id=order.payee_account_id,
                                     amount_fen=order.amount_fen, from_account_id=from_account_id,
                                     at=now)
        except ledger.PaymentRefused as exc:
            failure = exc.code
    session.add(PaymentAttempt(id=new_id("egpa"), tenant_id=tenant_id, order_id=order.id,
                               method=method[:16], outcome="failed" if failure else "succeeded",
                               failure_code=failure, payer_account_masked=masked, created_at=now))
    if failure is not None or entry is None:
        order.failed_attempts += 1
        order.last_failure_code = failure
        order.updated_at = now
        session.flush()
        _publish(session, order, "egov_payment.attempt_failed", "payer", now, issuer)
        if order.failed_attempts >= MAX_FAILED_ATTEMPTS:
            check_order(order.status, "failed", action="failed")
            order.status = "failed"
            order.closed_at = now
            session.flush()
            _publish(session, order, "egov_payment.failed", "system", now, issuer)
        return PayOutcome(order, paid=False, failure=failure)
    check_order(order.status, "paid", action="paid")
    order.status = "paid"
    order.paid_at = entry.created_at
    order.closed_at = entry.created_at
    order.updated_at = now
    order.payment_method = method
    order.payer_account_masked = masked
    order.journal_entry_id = entry.id
    order.journal_ref = entry.journal_ref
    order.receipt_number = _receipt_number(entry.created_at)
    order.verification_code = secrets.token_urlsafe(18)
    session.flush()
    order.succeeded_event_id = _publish(session, order, "egov_payment.succeeded", "payer", now, issuer)
    session.flush()
    return PayOutcome(order, paid=True)


def expire_due_orders(database: Database, issuer: str, batch: int = 200) -> int:
    """Job: expire open orders past their expiry, each tenant on its own clock and on its own
    (a tenant whose run fails is logged and left to the next run; the others go on)."""
    def run(tenant_id: str) -> int:
        done = 0
        while True:
            with database.transaction() as session:
                now = clock_for(session, tenant_id).now()
                orders = list(session.scalars(
                    select(PaymentOrder).where(PaymentOrder.tenant_id == tenant_id,
                                               PaymentOrder.status == "open",
                                               PaymentOrder.expires_at <= now)
                    .order_by(PaymentOrder.expires_at).limit(batch)
                    .with_for_update().execution_options(populate_existing=True)))
                for order in orders:
                    if expire_if_due(session, order, now, issuer):
                        done += 1
            if len(orders) < batch:
                return done

    return for_each_tenant(database, select(PaymentOrder.tenant_id)
                           .where(PaymentOrder.status == "open"), run, "payment order expiry",
                           logger=log)
