"""The signed checkout result: a JWT (typ `egov-result+jwt`) signed with the platform's active
ES256 key, the one published at /oauth/jwks. A portal verifies it with any JOSE library:
check the signature against the JWKS (by `kid`), `iss`, `aud` (its own client id), `exp`,
then read `order_id`, `portal_reference`, `status` and `amount`.

`iat`/`exp` are real time (the platform's wall clock), never a sandbox tenant's test clock: a
portal's JOSE library checks them against its own clock and would refuse a result "issued in
the future" once the test clock was advanced. Business times (`paid_at`) are the tenant's.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey

from gateway.clock import to_rfc3339, utcnow
from gateway.jose import PLATFORM_REGISTRY
from gateway.money import Money
from products.egov.models import PaymentOrder

RESULT_TYPE = "egov-result+jwt"
# Long enough for a portal to verify a result the payer brings back late, short enough that a
# leaked URL stops being accepted soon.
RESULT_LIFETIME = timedelta(hours=24)


def result_claims(order: PaymentOrder, *, issuer: str, audience: str, now: datetime) -> dict[str, Any]:
    """The claims of an order's result (no personal data: the payer is masked)."""
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": order.id,
        "iat": int(now.timestamp()),
        "exp": int((now + RESULT_LIFETIME).timestamp()),
        "jti": uuid.uuid4().hex,
        "order_id": order.id,
        "portal_reference": order.portal_reference,
        "payment_code": order.payment_code,
        "status": order.status,
        "amount": Money.of(order.amount_fen).model_dump(),
        "item_code": order.item_code,
    }
    if order.paid_at is not None:
        claims["paid_at"] = to_rfc3339(order.paid_at)
        claims["receipt_number"] = order.receipt_number
    return claims


def sign_result(order: PaymentOrder, key: ECKey, *, issuer: str, audience: str) -> str:
    """A compact JWS of the order's outcome, issued now in real time."""
    header = {"alg": "ES256", "kid": key.kid, "typ": RESULT_TYPE}
    return jwt.encode(header, result_claims(order, issuer=issuer, audience=audience, now=utcnow()), key,
                      algorithms=["ES256"], registry=PLATFORM_REGISTRY)
