"""Client authentication at the token, introspection and revocation endpoints.

`private_key_jwt` (RFC 7523) builds on authlib's JWTBearerClientAssertion with the FAPI 2.0
rules: PS256/ES256/EdDSA only, `aud` exactly the issuer as a single string, `iss` = `sub` =
client id, `exp` in the future and at most 60 minutes after `iat`, `iat`/`nbf` at most 10 s
ahead, and a `jti` that is single use across processes. `client_secret_basic` is accepted
for sandbox clients only (see OAuthClient.check_endpoint_auth_method).

Every refusal is `invalid_client` with HTTP 401 (RFC 6749, 5.2), with a `WWW-Authenticate:
Basic` challenge when the client tried the Authorization header (or sent no credentials at
all), and a description that says what was wrong without telling whether a client id exists:
an unknown, revoked or suspended client reads exactly as a wrong secret, or as an assertion no
key of the client verifies. What an assertion's claims got wrong is told only once its
signature has been verified.
"""

from __future__ import annotations

import base64
import binascii
import logging
import threading
import time
from typing import Any
from urllib.parse import unquote

from authlib.consts import default_json_headers
from authlib.oauth2.rfc6749 import InvalidClientError, InvalidRequestError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from joserfc import jws, jwt
from joserfc.errors import JoseError

from gateway.context import current_state
from gateway.jose import (
    ALGORITHM_KEY_TYPES,
    CLIENT_REGISTRY,
    client_signing_keys,
    is_numeric_date,
    unverified_parts,
)
from gateway.oauth.jwks_fetch import JWKSCache, UnsafeURL
from gateway.oauth.replay import ReplayGuard

log = logging.getLogger("quanlian.oauth")

MAX_ASSERTION_LIFETIME = 3600
MAX_FUTURE_SKEW = 10
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# RFC 7617: Basic's one required parameter. The challenge carries nothing else: the reason is
# in the body, and a header is no place for text that echoes the request.
BASIC_CHALLENGE = 'Basic realm="quanlian"'

SECRET_REFUSED = ("the client secret is not valid for this client (only sandbox clients have "
                  "secrets; production clients authenticate with a client assertion, "
                  "private_key_jwt).")
NO_CREDENTIALS = ("no client credentials were sent. Send a client assertion "
                  "(client_assertion_type and client_assertion: private_key_jwt) or, for a "
                  "sandbox client, the client id and secret with HTTP Basic "
                  "(client_secret_basic).")
NOT_BASIC = ("the Authorization header does not carry HTTP Basic credentials (client id and "
             "secret, client_secret_basic).")
SECRET_IN_FORM = ("a client_secret in the form (client_secret_post) is not accepted; send the "
                  "client id and secret with HTTP Basic (client_secret_basic).")


def shown(value: Any, limit: int = 64) -> str:
    """Caller-supplied text as it may appear in an `error_description`: RFC 6749 allows only
    printable ASCII other than `"` and `\\` there (authlib refuses anything else, which was a
    500), and a description is no place for a long echo."""
    text = value if isinstance(value, str) else repr(value)
    cleaned = "".join(c if " " <= c <= "~" and c not in "\"\\" else "?" for c in text[:limit])
    return cleaned + ("..." if len(text) > limit else "")


class ClientAuthenticationFailed(InvalidClientError):
    """`invalid_client`, always a 401 (RFC 6749, 5.2); with a Basic challenge when the client
    used the Authorization header (which the RFC requires) or sent no credentials."""

    status_code = 401

    def __init__(self, reason: str, *, challenge: bool = False) -> None:
        super().__init__(description=shown("Client authentication failed: " + reason, 600),
                         status_code=401)
        self.challenge = challenge

    def get_headers(self) -> list[tuple[str, str]]:
        headers = list(default_json_headers)
        if self.challenge:
            headers.append(("WWW-Authenticate", BASIC_CHALLENGE))
        return headers


# In the request's state when its client authentication was refused (`invalid_client`): the
# token endpoint then counts the refusal against the caller's address (gateway.oauth.router).
CLIENT_REFUSED = "client_authentication_refused"


def _note_refusal() -> None:
    """Mark the request being served (this runs on its worker thread) as a refused client
    authentication."""
    st = current_state()
    if st is not None:
        st[CLIENT_REFUSED] = True


def assertion_refused(reason: str) -> ClientAuthenticationFailed:
    return ClientAuthenticationFailed("the client assertion is not valid: " + reason)


def basic_credentials(header: str) -> tuple[str, str] | None:
    """Client id and secret from an HTTP Basic header (RFC 6749, 2.3.1: each form-encoded
    before it is joined), or None when the header holds no such pair."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(token.strip()).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        return None
    client_id, secret = unquote(client_id), unquote(secret)
    return (client_id, secret) if client_id and secret else None


class ClientAuthentication:
    """The server's one client authentication (in place of authlib's, whose refusals name
    the methods tried, tell an unknown client from a wrong secret, and are 400 or 401 by
    method): a client assertion when the form carries one, otherwise HTTP Basic."""

    def __init__(self, query_client: Any, private_key_jwt: PrivateKeyJWT) -> None:
        self.query_client = query_client
        self.private_key_jwt = private_key_jwt

    def __call__(self, request: Any, methods: list[str], endpoint: str = "token") -> Any:
        authorization = request.headers.getlist("authorization")
        if len(authorization) > 1:
            raise InvalidRequestError("Send one Authorization header.")
        form = request.form
        if authorization and ("client_assertion" in form or "client_assertion_type" in form):
            # RFC 6749, 2.3: one authentication method per request. Which client is asking
            # must never depend on which of two the server happens to read first.
            raise InvalidRequestError("Authenticate the client one way: a client assertion or "
                                      "HTTP Basic, not both.")
        if authorization and form.get("client_id") is not None:
            credentials = basic_credentials(authorization[0])
            if credentials is not None and credentials[0] != form.get("client_id"):
                raise InvalidRequestError("The form's client_id is not the client that HTTP "
                                          "Basic authenticates.")
        try:
            client, method = self._authenticate(request, methods, endpoint, authorization)
        except ClientAuthenticationFailed as exc:
            exc.challenge = exc.challenge or bool(authorization)
            _note_refusal()
            raise
        except InvalidClientError as exc:  # authlib's own, should any get through
            _note_refusal()
            raise ClientAuthenticationFailed(exc.description or "the client is not valid.",
                                             challenge=bool(authorization)) from None
        request.auth_method = method
        return client

    def _authenticate(self, request: Any, methods: list[str], endpoint: str,
                      authorization: list[str]) -> tuple[Any, str]:
        form = request.form
        if ("private_key_jwt" in methods
                and ("client_assertion" in form or "client_assertion_type" in form)):
            return self.private_key_jwt(self.query_client, request), "private_key_jwt"
        if "client_secret_basic" in methods and authorization:
            credentials = basic_credentials(authorization[0])
            if credentials is None:
                raise ClientAuthenticationFailed(NOT_BASIC)
            client = self.query_client(credentials[0])
            # One answer for an unknown (or revoked, or suspended) client, a client without a
            # secret and a wrong secret, so that it tells nobody which client ids exist.
            if (client is None
                    or not client.check_endpoint_auth_method("client_secret_basic", endpoint)
                    or not client.check_client_secret(credentials[1])):
                raise ClientAuthenticationFailed(SECRET_REFUSED)
            return client, "client_secret_basic"
        if "client_secret" in form:
            raise ClientAuthenticationFailed(SECRET_IN_FORM, challenge=True)
        raise ClientAuthenticationFailed(NO_CREDENTIALS, challenge=True)


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
        form = request.form
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise ClientAuthenticationFailed(f"client_assertion_type must be {ASSERTION_TYPE}.")
        assertion = form.get("client_assertion")
        if not assertion:
            raise ClientAuthenticationFailed("the client_assertion parameter is missing.")
        # Everything that does not depend on the client is checked before it is looked up;
        # from there on, a refusal before the signature is verified reads the same whether
        # the client exists or not.
        header, claims = self.extract_assertion(assertion)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise assertion_refused("the 'sub' claim (the client id) is missing.")
        client = query_client(client_id)
        keys = self.resolve_client_public_key(client) if client is not None else ()
        try:
            token = _decode(assertion, _candidate_keys(keys, header), client_id, header)
        except ClientAuthenticationFailed:
            # Without a `kid` (authlib sends none) a key rotated in at the jwks_uri is found
            # only by fetching the set again; an unknown `kid` already did (JWKSCache.get).
            if client is None or client.jwks or not client.jwks_uri or "kid" in header:
                raise
            fresh = self.resolve_client_public_key(client, refresh=True)
            if not fresh:
                raise
            token = _decode(assertion, _candidate_keys(fresh, header), client_id, header)
        request.client = client
        self.verify_claims(token.claims)
        named = form.get("client_id")
        if named is not None and named != client.id:
            # RFC 7521, 4.2: a client_id sent beside the assertion must name the same client.
            raise assertion_refused("the form's client_id is not the assertion's client.")
        return client

    def get_audiences(self) -> list[str]:
        return [self.issuer]

    def extract_assertion(self, assertion: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """Header and claims, with every check that needs no key: a compact JWS of JSON
        objects, an accepted algorithm, a header the registry accepts."""
        try:
            header, claims = unverified_parts(assertion)
        except ValueError:
            raise assertion_refused("it is not a compact JWS of JSON objects.") from None
        if header.get("alg") not in CLIENT_REGISTRY.allowed:  # type: ignore[operator]
            raise assertion_refused("it must be signed with PS256, ES256 or EdDSA.")
        try:
            CLIENT_REGISTRY.check_header(jws.extract_compact(assertion.encode(),
                                                             registry=CLIENT_REGISTRY).headers())
        except (JoseError, ValueError) as exc:
            raise assertion_refused(f"its header is refused: {exc}") from None
        except TypeError:  # joserfc reads `crit` as a list of strings, whatever it is
            raise assertion_refused("its header is refused: 'crit' must be a list of "
                                    "strings.") from None
        kid = header.get("kid")
        self._seen.kid = kid if isinstance(kid, str) else None
        return header, claims

    def resolve_client_public_key(self, client: Any, *, refresh: bool = False) -> Any:
        """The client's signing keys: its registered JWKS, or its jwks_uri's (cached; with
        `refresh`, fetched again unless that was done within the last minute: () then)."""
        if client.jwks:
            return client_signing_keys(client.jwks)
        if client.jwks_uri:
            production = client.environment == "production"
            try:
                if refresh:
                    fresh = self.jwks_cache.refresh(client.jwks_uri, production=production)
                    return client_signing_keys(fresh) if fresh is not None else ()
                jwks = self.jwks_cache.get(client.jwks_uri, getattr(self._seen, "kid", None),
                                           production=production)
                return client_signing_keys(jwks)
            except (UnsafeURL, ValueError, OSError, JoseError) as exc:
                reason: Any = exc
            except Exception:
                reason = "it cannot be fetched"
            # Told to the caller, this would tell that the client exists: the platform's log
            # has it (with the request id the caller can quote), the caller reads that no key
            # of the client verifies.
            request_id = (current_state() or {}).get("request_id")
            log.warning("the jwks_uri of client %s cannot be used (request %s): %s", client.id,
                        request_id, reason, extra={"request_id": request_id})
        return ()

    def verify_claims(self, claims: Any) -> None:
        now = int(time.time())
        aud = claims.get("aud")
        if not isinstance(aud, str) or aud != self.issuer:
            raise assertion_refused("'aud' must be the issuer identifier as a string.")
        for name in ("iss", "sub"):
            if not isinstance(claims.get(name), str):
                raise assertion_refused(f"the '{name}' claim is missing.")
        if claims["iss"] != claims["sub"]:
            raise assertion_refused("'iss' and 'sub' must both be the client id.")
        for name in ("exp", "iat", "nbf"):
            if (name == "exp" or name in claims) and not is_numeric_date(claims.get(name)):
                raise assertion_refused(f"the '{name}' claim is missing or not a number.")
        exp, iat, nbf = claims["exp"], claims.get("iat"), claims.get("nbf")
        if exp <= now:
            raise assertion_refused("it has expired ('exp').")
        if iat is not None:
            if iat > now + MAX_FUTURE_SKEW:
                raise assertion_refused("'iat' is in the future.")
            if exp - iat > MAX_ASSERTION_LIFETIME:
                raise assertion_refused("it lives longer than 60 minutes ('exp' - 'iat').")
        elif exp - now > MAX_ASSERTION_LIFETIME:
            raise assertion_refused("it expires more than 60 minutes from now ('exp').")
        if nbf is not None and nbf > now + MAX_FUTURE_SKEW:
            raise assertion_refused("'nbf' is in the future.")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise assertion_refused("the 'jti' claim is missing (or longer than 128 "
                                    "characters).")
        # Committed on its own (group commit), never in the request's transaction: a verified
        # assertion stays used even when the rest of the request fails and rolls back.
        if not self.replay.first_use(f"ca:{claims['sub']}:{jti}", int(exp)):
            raise assertion_refused("its 'jti' was used before; sign a new assertion for each "
                                    "request.")


def _candidate_keys(keys: tuple[Any, ...], header: dict[str, Any]) -> list[Any]:
    """The client's keys that may have signed an assertion with this header: the one its
    `kid` names or, without a `kid` (authlib's and other common clients send none), every
    key of the algorithm's type, each tried in turn."""
    alg, kid = header["alg"], header.get("kid")
    return [key for key in keys
            if key.key_type == ALGORITHM_KEY_TYPES[alg] and key.get("alg") in (None, alg)
            and (kid is None or key.kid == kid)]


def _decode(assertion: str, keys: list[Any], client_id: str, header: dict[str, Any]) -> Any:
    """The assertion, decoded with the first of the keys whose signature checks. Everything
    else about the JWS was checked before (`extract_assertion`), so a refusal here is about the
    keys: one answer for an unknown client, a client without a key that fits, and a signature
    none of its keys verifies."""
    for key in keys:
        try:
            return jwt.decode(assertion, key, registry=CLIENT_REGISTRY)
        except (JoseError, ValueError):
            continue
    kid = header.get("kid")
    raise assertion_refused(
        f"its signature does not verify with any key of client '{shown(client_id)}' "
        f"(alg {shown(header.get('alg'))}, "
        + (f"kid '{shown(kid)}'" if kid is not None else "no kid")
        + "): sign with a private key whose public key is registered for the client (its "
          "JWKS or jwks_uri).")
