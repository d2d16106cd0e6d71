"""Client authentication at the token, introspection and revocation endpoints.

`private_key_jwt` (RFC 7523) builds on authlib's JWTBearerClientAssertion with the FAPI 2.0
rules: PS256/ES256/EdDSA only, `aud` exactly the issuer as a single string, `iss` = `sub` =
client id, `exp` in the future and at most 60 minutes after `iat`, `iat`/`nbf` at most 10 s
ahead, and a `jti` that is single use across processes. `client_secret_basic` is accepted
for sandbox clients only (see OAuthClient.check_endpoint_auth_method).
"""

from __future__ import annotations

import time
from typing import Any

from authlib.oauth2.rfc6749 import InvalidClientError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jwt
from joserfc.errors import JoseError

from gateway.jose import CLIENT_REGISTRY, import_key_set, unverified_parts
from gateway.oauth.jwks_fetch import JWKSCache, UnsafeURL
from gateway.oauth.replay import ReplayGuard
from gateway.oauth.session import bound_session

MAX_ASSERTION_LIFETIME = 3600
MAX_FUTURE_SKEW = 10


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, issuer: str, replay: ReplayGuard, jwks_cache: JWKSCache) -> None:
        super().__init__(validate_jti=True, leeway=0)
        self.issuer = issuer
        self.replay = replay
        self.jwks_cache = jwks_cache
        self._kid: str | None = None

    def get_audiences(self) -> list[str]:
        return [self.issuer]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        headers, claims = super().extract_assertion(assertion)
        kid = headers.get("kid")
        self._kid = kid if isinstance(kid, str) else None
        return headers, claims

    def resolve_client_public_key(self, client: Any) -> Any:
        if client.jwks:
            return import_key_set(client.jwks)
        if client.jwks_uri:
            try:
                jwks = self.jwks_cache.get(client.jwks_uri, self._kid,
                                           production=client.environment == "production")
            except (UnsafeURL, ValueError, OSError) as exc:
                raise InvalidClientError(description=f"The client's jwks_uri cannot be used: {exc}") from None
            except Exception:
                raise InvalidClientError(description="The client's jwks_uri cannot be fetched") from None
            return import_key_set(jwks)
        raise InvalidClientError(description="The client has no registered keys")

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> dict[str, Any]:
        try:
            header, _ = unverified_parts(assertion)
        except ValueError:
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        if header.get("alg") not in CLIENT_REGISTRY.allowed:  # type: ignore[operator]
            raise InvalidClientError(
                description="Client assertions must be signed with PS256, ES256 or EdDSA.")
        try:
            token = jwt.decode(assertion, resolve_key, registry=CLIENT_REGISTRY)
        except (JoseError, ValueError) as exc:
            raise InvalidClientError(description=f"Client assertion refused: {exc}") from None
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
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise InvalidClientError(description="Missing or invalid 'exp'.")
        if exp <= now:
            raise InvalidClientError(description="The client assertion has expired.")
        if iat is not None:
            if not isinstance(iat, int | float) or isinstance(iat, bool):
                raise InvalidClientError(description="Invalid 'iat'.")
            if iat > now + MAX_FUTURE_SKEW:
                raise InvalidClientError(description="'iat' is in the future.")
            if exp - iat > MAX_ASSERTION_LIFETIME:
                raise InvalidClientError(description="The assertion lives longer than 60 minutes.")
        elif exp - now > MAX_ASSERTION_LIFETIME:
            raise InvalidClientError(description="The assertion lives longer than 60 minutes.")
        if nbf is not None:
            if not isinstance(nbf, int | float) or isinstance(nbf, bool) or nbf > now + MAX_FUTURE_SKEW:
                raise InvalidClientError(description="'nbf' is in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise InvalidClientError(description="Missing claim 'jti'.")
        if not self.replay.first_use(f"ca:{claims['sub']}:{jti}", int(exp),
                                     session=bound_session()):
            raise InvalidClientError(description="The client assertion 'jti' was used before.")

    def authenticate_client(self, client: Any) -> Any:
        if client.check_endpoint_auth_method(self.CLIENT_AUTH_METHOD, "token"):
            return client
        raise InvalidClientError(description="The client cannot use private_key_jwt.")
