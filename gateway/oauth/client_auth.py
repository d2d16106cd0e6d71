"""Client authentication at the token, introspection and revocation endpoints.

`private_key_jwt` (RFC 7523) builds on authlib's JWTBearerClientAssertion with the FAPI 2.0
rules: PS256/ES256/EdDSA only, `aud` exactly the issuer as a single string, `iss` = `sub` =
client id, `exp` in the future and at most 60 minutes after `iat`, `iat`/`nbf` at most 10 s
ahead, and a `jti` that is single use across processes. `client_secret_basic` is accepted
for sandbox clients only (see OAuthClient.check_endpoint_auth_method).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError

from gateway.jose import (
    ALGORITHM_KEY_TYPES,
    CLIENT_REGISTRY,
    client_signing_keys,
    is_numeric_date,
    unverified_parts,
)
from gateway.oauth.jwks_fetch import JWKSCache, UnsafeURL
from gateway.oauth.replay import ReplayGuard

MAX_ASSERTION_LIFETIME = 3600
MAX_FUTURE_SKEW = 10


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, issuer: str, replay: ReplayGuard, jwks_cache: JWKSCache) -> None:
        super().__init__(validate_jti=True, leeway=0)
        self.issuer = issuer
        self.replay = replay
        self.jwks_cache = jwks_cache
        # One instance serves every request, each in a worker thread of its own: the `kid`
        # read from an assertion's header is the thread's, until its key is resolved.
        self._seen = threading.local()

    def __call__(self, query_client: Any, request: Any) -> Any:
        client = super().__call__(query_client, request)
        named = request.form.get("client_id")
        if client is not None and named is not None and named != client.id:
            # RFC 7521, 4.2: a client_id sent beside the assertion must name the same client.
            raise InvalidClientError(description="'client_id' is not the assertion's client.")
        return client

    def get_audiences(self) -> list[str]:
        return [self.issuer]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        kid = headers.get("kid")
        self._seen.kid = kid if isinstance(kid, str) else None
        return headers, claims

    def resolve_client_public_key(self, client: Any) -> Any:
        if client.jwks:
            return client_signing_keys(client.jwks)
        if client.jwks_uri:
            try:
                jwks = self.jwks_cache.get(client.jwks_uri, getattr(self._seen, "kid", None),
                                           production=client.environment == "production")
                return client_signing_keys(jwks)
            except (UnsafeURL, ValueError, OSError, JoseError) as exc:
                raise InvalidClientError(description=f"The client's jwks_uri cannot be used: {exc}") from None
            except Exception:
                raise InvalidClientError(description="The client's jwks_uri cannot be fetched") from None
        raise InvalidClientError(description="The client has no registered keys")

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            header, _ = unverified_parts(assertion)
        except ValueError:
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        if header.get("alg") not in CLIENT_REGISTRY.allowed:  # type: ignore[operator]
            raise InvalidClientError(
                description="Client assertions must be signed with PS256, ES256 or EdDSA.")
        candidates = _candidate_keys(resolve_key, header)
        if not candidates:
            raise InvalidClientError(
                description=f"No usable registered key for kid {header.get('kid')!r} and "
                            f"alg {header['alg']}.")
        token = _decode(assertion, candidates)
        self.verify_claims(token.claims)
        return token.claims

    def verify_claims(self, claims: Any) -> None:
        now = int(time.time())
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud != self.issuer:
            raise InvalidClientError(description="'aud' must be the issuer identifier as a string.")
        for name in ("iss", "sub"):
            if not isinstance(claims.get(name), str):
                raise InvalidClientError(description=f"Missing claim '{name}'.")
        if claims["iss"] != claims["sub"]:
            raise InvalidClientError(description="'iss' and 'sub' must both be the client id.")
        for name in ("exp", "iat", "nbf"):
            if (name == "exp" or name in claims) and not is_numeric_date(claims.get(name)):
                raise InvalidClientError(description=f"Missing or invalid '{name}'.")
        exp, iat, nbf = claims["exp"], claims.get("iat"), claims.get("nbf")
        if exp <= now:
            raise InvalidClientError(description="The client assertion has expired.")
        if iat is not None:
            if iat > now + MAX_FUTURE_SKEW:
                raise InvalidClientError(description="'iat' is in the future.")
            if exp - iat > MAX_ASSERTION_LIFETIME:
                raise InvalidClientError(description="The assertion lives longer than 60 minutes.")
        elif exp - now > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The assertion lives longer than 60 minutes.")
        if nbf is not None and nbf > now + MAX_FUTURE_SKEW:
            raise InvalidClientError(description="'nbf' is in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise InvalidClientError(description="Missing claim 'jti'.")
        # Committed on its own (group commit), never in the request's transaction: a verified
        # assertion stays used even when the rest of the request fails and rolls back.
        if not self.replay.first_use(f"ca:{claims['sub']}:{jti}", int(exp)):
            raise InvalidClientError(description="The client assertion 'jti' was used before.")

    def authenticate_client(self, client: Any) -> Any:
        if client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            return client
        raise InvalidClientError(description="The client cannot use private_key_jwt.")


def _candidate_keys(keys: tuple[Any, ...], header: dict[str, Any]) -> list[Any]:
    """The client's keys that may have signed an assertion with this header: the one its
    `kid` names or, without a `kid` (authlib's and other common clients send none), every
    key of the algorithm's type, each tried in turn."""
    alg, kid = header["alg"], header.get("kid")
    return [key for key in keys
            if key.key_type == ALGORITHM_KEY_TYPES[alg] and key.get("alg") in (None, alg)
            and (kid is None or key.kid == kid)]


def _decode(assertion: str, keys: list[Any]) -> Any:
    """The assertion, decoded with the first of the keys whose signature checks."""
    refusal: Exception | None = None
    for key in keys:
        try:
            return jwt.decode(assertion, key, registry=CLIENT_REGISTRY)
        except (JoseError, ValueError) as exc:
            refusal = exc
    raise InvalidClientError(description=f"Client assertion refused: {refusal}")
