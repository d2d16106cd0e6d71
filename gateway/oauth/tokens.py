"""RFC 9068 JWT access tokens: issued with the platform's key, verified once and remembered.

A verified token's claims are cached until it expires; whether it has been revoked, or its
client or partner suspended, is asked on every call (see gateway.auth), so a revocation
takes effect on the very next call in every process.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError

from gateway.jose import PLATFORM_ALGORITHM, PLATFORM_REGISTRY, unverified_parts
from gateway.keys import PlatformKeys

MAX_FUTURE_SKEW = 10


class TokenInvalid(Exception):
    """The access token cannot be used; the message is safe to show the caller."""


class TokenService:
    def __init__(self, keys: PlatformKeys, issuer: str, ttl: int = 600,
                 cache_size: int = 50_000) -> None:
        self.keys = keys
        self.issuer = issuer
        self.ttl = min(int(ttl), 600)
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._keyset = keys.signing_keys

    def issue(self, *, client_id: str, scope: str, jkt: str | None = None) -> dict[str, Any]:
        """Sign an access token; returns the RFC 6749 token response body."""
        now = int(time.time())
        key = self.keys.active_signing_key
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": client_id, "aud": self.issuer, "client_id": client_id,
            "scope": scope, "jti": secrets.token_urlsafe(18), "iat": now, "exp": now + self.ttl,
        }
        if jkt:
            claims["cnf"] = {"jkt": jkt}
        header = {"alg": PLATFORM_ALGORITHM, "typ": "at+jwt", "kid": key.kid}
        token = jwt.encode(header, claims, key, registry=PLATFORM_REGISTRY)
        return {"access_token": token, "token_type": "DPoP" if jkt else "Bearer",
                "expires_in": self.ttl, "scope": scope}

    def verify(self, token: str) -> dict[str, Any]:
        """Claims of a valid, unexpired token issued here; TokenInvalid otherwise."""
        now = time.time()
        with self._lock:
            claims = self._cache.get(token)
        if claims is not None:
            if claims["exp"] <= now:
                with self._lock:
                    self._cache.pop(token, None)
                raise TokenInvalid("The access token has expired.")
            return claims
        claims = self._verify_signature(token)
        if claims.get("iss") != self.issuer or claims.get("aud") != self.issuer:
            raise TokenInvalid("The access token was not issued for this API.")
        for name in ("exp", "iat"):
            value = claims.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TokenInvalid(f"The access token has no valid '{name}'.")
        if claims["exp"] <= now:
            raise TokenInvalid("The access token has expired.")
        if claims["iat"] > now + MAX_FUTURE_SKEW:
            raise TokenInvalid("The access token is not valid yet.")
        for name in ("jti", "client_id", "scope", "sub"):
            if not isinstance(claims.get(name), str):
                raise TokenInvalid(f"The access token has no valid '{name}'.")
        with self._lock:
            self._cache[token] = claims
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return claims

    def _verify_signature(self, token: str) -> dict[str, Any]:
        try:
            header, _ = unverified_parts(token)
        except (ValueError, UnicodeDecodeError):
            raise TokenInvalid("The access token is malformed.") from None
        if header.get("typ") != "at+jwt":
            raise TokenInvalid("The access token must have typ 'at+jwt'.")
        if header.get("alg") != PLATFORM_ALGORITHM:
            raise TokenInvalid("The access token is not signed with the platform's algorithm.")
        kid = header.get("kid")
        known = {k.kid for k in self._keyset.keys}
        if isinstance(kid, str) and kid not in known:
            # Another process may have rotated in a new key: reload once.
            self._keyset = self.keys.signing_keys
        try:
            decoded = jwt.decode(token, self._keyset, registry=PLATFORM_REGISTRY)
        # TypeError: joserfc checks a header's `crit` (before the signature) assuming a list
        # of strings; `"crit": null` or `[1]` from anyone was a 500.
        except (JoseError, ValueError, TypeError) as exc:
            raise TokenInvalid(
                f"The access token signature is not valid ({exc.__class__.__name__}).") from None
        return dict(decoded.claims)

    def forget(self, token: str) -> None:
        with self._lock:
            self._cache.pop(token, None)
