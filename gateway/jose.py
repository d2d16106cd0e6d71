"""JOSE in one place: which algorithms we accept and how a JWS is checked.

Client assertions and DPoP proofs may use PS256, ES256 or EdDSA (RFC 9864 renames EdDSA
to Ed25519; both names are accepted). RS256, HS* and `none` are refused outright.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from typing import Any

from joserfc import jws
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

CLIENT_ALGORITHMS = ("PS256", "ES256", "EdDSA", "Ed25519")
PLATFORM_ALGORITHM = "ES256"


class StrictRegistry(JWSRegistry):
    """Only the listed algorithms, and no library warnings for the ones we chose on purpose."""

    def get_alg(self, name: str) -> Any:
        if name not in self.algorithms or not self.allowed or name not in self.allowed:
            raise UnsupportedAlgorithmError(f"Algorithm '{name}' is not allowed")
        return self.algorithms[name]


CLIENT_REGISTRY = StrictRegistry(algorithms=list(CLIENT_ALGORITHMS))
PLATFORM_REGISTRY = StrictRegistry(algorithms=[PLATFORM_ALGORITHM])


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(value: str) -> bytes:
    return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))


def sha256_b64url(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return b64url(hashlib.sha256(data).digest())


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, before any check (for routing only)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    header = json.loads(b64url_decode(parts[0]))
    claims = json.loads(b64url_decode(parts[1]))
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("JWS header and payload must be objects")
    return header, claims


# Keys are parsed once: a DPoP proof carries its key in every request, and a client's JWKS is
# read at every token request; parsing a point or a modulus costs as much as the signature
# check. Keyed by the canonical JSON of the key, so a changed key is a new entry.
def _canonical(data: dict[str, Any]) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def public_jwk_thumbprint(data: dict[str, Any]) -> tuple[ECKey | RSAKey | OKPKey, str]:
    """The key and its RFC 7638 thumbprint."""
    return _public_jwk(_canonical(data))


@functools.lru_cache(maxsize=4096)
def _public_jwk(text: str) -> tuple[ECKey | RSAKey | OKPKey, str]:
    data = json.loads(text)
    kty = data.get("kty")
    key: ECKey | RSAKey | OKPKey
    if kty == "EC":
        key = ECKey.import_key(data)
    elif kty == "RSA":
        key = RSAKey.import_key(data)
    elif kty == "OKP":
        key = OKPKey.import_key(data)
    else:
        raise ValueError(f"unsupported key type {kty!r}")
    return key, key.thumbprint()


def import_key_set(jwks: dict[str, Any]) -> KeySet:
    return _key_set(_canonical(jwks))


@functools.lru_cache(maxsize=1024)
def _key_set(text: str) -> KeySet:
    return KeySet.import_key_set(json.loads(text))


__all__ = ["jws", "CLIENT_REGISTRY", "PLATFORM_REGISTRY"]
