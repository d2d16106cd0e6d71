"""JOSE in one place: which algorithms we accept and how a JWS is checked.

Client assertions and DPoP proofs may use PS256, ES256 or EdDSA (RFC 9864 renames EdDSA
to Ed25519; both names are accepted). RS256, HS* and `none` are refused outright. The keys
behind them meet FAPI 2.0's bar: RSA of at least 2048 bits, EC on P-256, OKP Ed25519.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
from typing import Any

from joserfc import jws
from joserfc.errors import UnsupportedAlgorithmError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

CLIENT_ALGORITHMS = ("PS256", "ES256", "EdDSA", "Ed25519")
PLATFORM_ALGORITHM = "ES256"
# The key type each client algorithm signs with.
ALGORITHM_KEY_TYPES = {"PS256": "RSA", "ES256": "EC", "EdDSA": "OKP", "Ed25519": "OKP"}
MIN_RSA_BITS = 2048
# ES256 is P-256 only, and EdDSA here is Ed25519 only (FAPI 2.0 Security Profile, 5.4.1).
_CURVES = {"EC": "P-256", "OKP": "Ed25519"}


class StrictRegistry(JWSRegistry):
    """Only the listed algorithms, and no library warnings for the ones we chose on purpose."""

    # joserfc's default (512 bytes) is smaller than a DPoP header carrying an RSA-2048 `jwk`
    # (about 640 bytes base64url), so every PS256 proof was refused; RSA-4096 takes about
    # 1,100. Still a bound: a header is parsed before its signature is checked.
    max_header_length = 2048

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


def is_numeric_date(value: Any) -> bool:
    """An RFC 7519 NumericDate: a finite JSON number. Python's json reads NaN and Infinity,
    which pass no comparison and so slip through every time check; a bool is an int."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


class KeyRefused(ValueError):
    """A key below the bar for client signatures; the message is safe to show the caller."""


def check_client_jwk(data: Any) -> None:
    """Refuse a key a client may not sign with: RSA under 2048 bits, EC off P-256, OKP other
    than Ed25519, or any other key type. The one rule for registered, fetched and DPoP keys.
    Read from the JWK before it is imported: joserfc warns as it imports a small RSA key."""
    if not isinstance(data, dict):
        raise ValueError("a JWK must be an object")
    kty = data.get("kty")
    if kty == "RSA":
        modulus = data.get("n")
        if not isinstance(modulus, str):
            raise ValueError("an RSA key needs 'n'")
        bits = int.from_bytes(b64url_decode(modulus), "big").bit_length()
        if bits < MIN_RSA_BITS:
            raise KeyRefused(f"RSA keys need at least {MIN_RSA_BITS} bits (this one has {bits}).")
    elif kty in _CURVES:
        if data.get("crv") != _CURVES[kty]:
            raise KeyRefused(f"{kty} keys must be on {_CURVES[kty]}, not {data.get('crv')}.")
    else:
        raise KeyRefused(f"Keys of type {kty} are not accepted.")


def unverified_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, before any check (for routing only)."""
    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except RecursionError:
        # JSON nested deeper than the parser's stack (a few hundred to a thousand levels,
        # from whoever holds the header): as malformed as any other, not a server error.
        raise ValueError("JWS header or payload nested too deeply") from None
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
    check_client_jwk(data)
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


def client_signing_keys(jwks: dict[str, Any]) -> tuple[Any, ...]:
    """The keys of a client's JWKS that may verify its signatures. Registration refuses a set
    with a weaker key; a set fetched from a `jwks_uri` may also publish keys for other uses
    or parties, which are left out rather than failing the client's own keys."""
    return _client_signing_keys(_canonical(jwks))


@functools.lru_cache(maxsize=1024)
def _client_signing_keys(text: str) -> tuple[Any, ...]:
    usable = []
    for data in json.loads(text)["keys"]:
        if not isinstance(data, dict) or data.get("use") not in (None, "sig"):
            continue
        try:
            check_client_jwk(data)
        except ValueError:
            continue
        usable.append(data)
    return tuple(KeySet.import_key_set({"keys": usable}).keys) if usable else ()


__all__ = ["jws", "CLIENT_REGISTRY", "PLATFORM_REGISTRY"]
