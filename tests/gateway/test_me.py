"""`GET /v1/me`: the calling client, with its token's expiry as every time of the platform is
given, RFC 3339 in UTC."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import UTC, datetime


def test_token_expires_at_is_rfc3339_utc_and_is_the_tokens_exp(partner):
    response = partner.get("/v1/me")
    assert response.status_code == 200, response.text
    body = response.json()
    expires_at = body["token_expires_at"]
    assert isinstance(expires_at, str), body
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z", expires_at), expires_at
    payload = partner.token.split(".")[1]
    exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
    assert datetime.fromisoformat(expires_at.replace("Z", "+00:00")) == datetime.fromtimestamp(
        exp, UTC)
    assert 0 < exp - time.time() <= 600


def test_the_document_says_so(app):
    schema = app.openapi()["components"]["schemas"]["Me"]["properties"]["token_expires_at"]
    assert schema["type"] == "string" and schema["format"] == "date-time"
