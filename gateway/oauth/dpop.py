"""DPoP proofs (RFC 9449): checked at the token endpoint and on every call with a bound token."""

from __future__ import annotations

import re
import string
import time
from typing import Any
from urllib.parse import urlsplit

from joserfc import jws
from joserfc.errors import JoseError

from gateway.jose import (
    CLIENT_REGISTRY,
    KeyRefused,
    is_numeric_date,
    public_jwk_thumbprint,
    sha256_b64url,
    unverified_parts,
)
from gateway.oauth.replay import ReplayGuard

PROOF_MAX_AGE = 300
PROOF_MAX_FUTURE = 10
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
DPOP_ALGORITHMS = " ".join(a for a in CLIENT_REGISTRY.allowed or [])


_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalized_htu(url: str) -> str | None:
    """A URL as RFC 9449 (4.3) compares `htu` with the request: without query and fragment,
    normalized as RFC 3986 (6.2.2, 6.2.3) says: scheme and host in lower case, the scheme's
    default port dropped, an empty path as `/`, escapes of unreserved characters decoded and
    the others' hex digits in upper case. None for what is not an http(s) URL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and port != _DEFAULT_PORTS[scheme]:
        host += f":{port}"

    def escape(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return f"{scheme}://{host}{_ESCAPE.sub(escape, parts.path) or '/'}"


class DPoPInvalid(Exception):
    """The DPoP proof is refused; the message is safe to show the caller."""


class DPoPVerifier:
    def __init__(self, replay: ReplayGuard) -> None:
        self.replay = replay

    def verify(self, proof: str, *, method: str, url: str, access_token: str | None = None) -> str:
        """Check a proof for this request; returns the JWK thumbprint (`jkt`) it proves."""
        try:
            header, claims = unverified_parts(proof)
        except (ValueError, UnicodeDecodeError):
            raise DPoPInvalid("The DPoP proof is not a compact JWS.") from None
        if header.get("typ") != "dpop+jwt":
            raise DPoPInvalid("The DPoP proof must have typ 'dpop+jwt'.")
        if header.get("alg") not in (CLIENT_REGISTRY.allowed or []):
            raise DPoPInvalid("The DPoP proof must be signed with PS256, ES256 or EdDSA.")
        jwk_data = header.get("jwk")
        if not isinstance(jwk_data, dict):
            raise DPoPInvalid("The DPoP proof must carry its public key in 'jwk'.")
        if _PRIVATE_MEMBERS & set(jwk_data):
            raise DPoPInvalid("The DPoP proof's 'jwk' must not contain a private key.")
        try:
            key, jkt = public_jwk_thumbprint(jwk_data)
        except KeyRefused as exc:
            raise DPoPInvalid(f"The DPoP proof's 'jwk' is not accepted: {exc}") from None
        except (JoseError, ValueError, TypeError) as exc:
            raise DPoPInvalid(f"The DPoP proof's 'jwk' is not valid ({exc.__class__.__name__}).") from None
        try:
            jws.deserialize_compact(proof, key, registry=CLIENT_REGISTRY)
        except (JoseError, ValueError, TypeError) as exc:
            raise DPoPInvalid(f"The DPoP proof signature is not valid ({exc.__class__.__name__}).") from None
        self._check_claims(claims, method=method, url=url, access_token=access_token)
        if not self.replay.first_use(f"dpop:{jkt}:{claims['jti']}",
                                     int(time.time()) + PROOF_MAX_AGE + PROOF_MAX_FUTURE):
            raise DPoPInvalid("The DPoP proof 'jti' was used before.")
        return jkt

    @staticmethod
    def _check_claims(claims: dict[str, Any], *, method: str, url: str,
                      access_token: str | None) -> None:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti or len(jti) > 128:
            raise DPoPInvalid("The DPoP proof has no valid 'jti'.")
        if claims.get("htm") != method:
            raise DPoPInvalid("The DPoP proof 'htm' does not match the request method.")
        htu = claims.get("htu")
        if not isinstance(htu, str) or normalized_htu(htu) != normalized_htu(url):
            raise DPoPInvalid("The DPoP proof 'htu' does not match the request URL.")
        iat = claims.get("iat")
        if not is_numeric_date(iat):
            raise DPoPInvalid("The DPoP proof has no valid 'iat'.")
        now = time.time()
        if iat > now + PROOF_MAX_FUTURE or iat < now - PROOF_MAX_AGE:
            raise DPoPInvalid("The DPoP proof 'iat' is outside the accepted window.")
        if access_token is not None:
            if claims.get("ath") != sha256_b64url(access_token):
                raise DPoPInvalid("The DPoP proof 'ath' does not match the access token.")
