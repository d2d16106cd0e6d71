"""Personal data in one place: masks for responses and logs, keyed digests for look-ups, and
encryption at rest.

Masks (数据脱敏) keep the length of the value, so that a person can still recognise their own
number, and show only what a bank statement shows:

| kind | kept | example |
| --- | --- | --- |
| resident ID number | first 3, last 4 | `110***********7777` |
| account or card number | first 4, last 4 | `6222***********1234` |
| phone number | first 3, last 4 | `138****5678` |
| name | first character | `张**` |

A value too short to keep that much of is masked entirely, never shown in clear.

`Vault` encrypts with AES-256-GCM under the platform's data key (`PlatformKeys.data_key`): a
random 12-byte nonce per value, the token `v1.<base64url(nonce || ciphertext || tag)>` without
padding. Because the nonce is random, equal values encrypt differently, so an encrypted column
cannot be searched; store `Vault.digest(value)` beside it (HMAC-SHA256 under a key derived from
the data key) and look rows up by that. Digests are of the exact string: normalize first (the
validators of `gateway.identifiers` return the normal form).

`EncryptedString` is the SQLAlchemy column type; it uses the process-wide vault that the app
factory installs with `set_vault`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Dialect, Text
from sqlalchemy.types import TypeDecorator

from gateway.keys import PlatformKeys

__all__ = [
    "DecryptionError",
    "EncryptedString",
    "SEALED_PREFIX",
    "Vault",
    "VaultNotConfigured",
    "decrypt",
    "encrypt",
    "get_vault",
    "mask_account_number",
    "mask_card_number",
    "mask_id_number",
    "mask_name",
    "mask_phone",
    "pii_digest",
    "set_vault",
]


# --- masks ------------------------------------------------------------------------------


def _keep(value: str, head: int, tail: int) -> str:
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[len(value) - tail :]


def mask_id_number(value: str | None) -> str:
    """Mask an ID number, keeping the first 3 and last 4 characters: `110***********7777`."""
    return _keep(value or "", 3, 4)


def mask_account_number(value: str | None) -> str:
    """Mask an account or card number, keeping the first 4 and last 4: `6222********1234`."""
    return _keep(value or "", 4, 4)


mask_card_number = mask_account_number


def mask_phone(value: str | None) -> str:
    """Mask a phone number, keeping the first 3 and last 4 characters: `138****5678`."""
    return _keep(value or "", 3, 4)


def mask_name(value: str | None) -> str:
    """Mask a name, keeping its first character: `张三` -> `张*`, `欧阳娜娜` -> `欧***`.

    A one-character value still gets a `*`, so the mask never shows that nothing was hidden.
    """
    value = value or ""
    return value[:1] + "*" * max(1, len(value) - 1) if value else ""


# --- vault ------------------------------------------------------------------------------


class VaultNotConfigured(RuntimeError):
    """Personal data was encrypted or decrypted before the app factory called `set_vault`."""


class DecryptionError(ValueError):
    """A token that is malformed, from another key, or altered."""


_VERSION = "v1"
SEALED_PREFIX = _VERSION + "."  # how every value `encrypt` makes begins
_NONCE_BYTES = 12
_TAG_BYTES = 16
# Binds every ciphertext to this format version; a future v2 cannot be fed a v1 body.
_AAD = b"quanlian:pii:v1"
_TOKEN = re.compile(r"v1\.([A-Za-z0-9_-]+)")
# A nonce reserved for deriving the digest key (see Vault.__init__). Encryption nonces are
# random, so one of them equals it with probability 2^-96 per value: never in practice.
_DERIVATION_NONCE = b"ql-pii-hmac0"


class Vault:
    """Encrypts, decrypts and digests personal data under one AES-256 key."""

    def __init__(self, key: PlatformKeys | bytes) -> None:
        if isinstance(key, PlatformKeys):
            aead = key.data_key
        elif isinstance(key, bytes | bytearray):
            if len(key) != 32:
                raise ValueError("the data key must be 32 bytes (AES-256)")
            aead = AESGCM(bytes(key))
        else:
            raise TypeError("a Vault needs PlatformKeys or a 32-byte key")
        self._aead = aead
        # PlatformKeys exposes the key only as an AESGCM object, so the digest key is derived
        # through it: AES-GCM of zeros under a reserved nonce is AES-CTR keystream, a PRF of
        # the key; HKDF turns it into the HMAC key. The same raw key always yields the same
        # digest key, whichever way the Vault was built.
        prf = aead.encrypt(_DERIVATION_NONCE, bytes(32), b"quanlian:pii-digest-key")
        self._digest_key = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"quanlian/pii-digest/v1"
        ).derive(prf)

    def encrypt(self, value: str) -> str:
        """Encrypt a string: `v1.` + base64url(nonce || ciphertext || tag), no padding."""
        if not isinstance(value, str):
            raise TypeError("only strings are encrypted")
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"), _AAD)
        return f"{_VERSION}." + base64.urlsafe_b64encode(nonce + sealed).rstrip(b"=").decode()

    def decrypt(self, token: str) -> str:
        """Decrypt a token made by `encrypt`; `DecryptionError` if malformed or altered."""
        if not isinstance(token, str):
            raise DecryptionError("an encrypted value is a string")
        match = _TOKEN.fullmatch(token)
        if match is None:
            raise DecryptionError("not an encrypted value of format v1")
        body = match.group(1)
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        except (binascii.Error, ValueError):
            raise DecryptionError("the encrypted value is not valid base64url") from None
        if len(raw) < _NONCE_BYTES + _TAG_BYTES:
            raise DecryptionError("the encrypted value is too short")
        try:
            plain = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], _AAD)
        except InvalidTag:
            raise DecryptionError("the encrypted value was altered or made under another key") from None
        return plain.decode("utf-8")

    def digest(self, value: str) -> str:
        """HMAC-SHA256 of the value's UTF-8 bytes under the derived digest key, as 64 hex."""
        if not isinstance(value, str):
            raise TypeError("only strings are digested")
        return hmac.new(self._digest_key, value.encode("utf-8"), hashlib.sha256).hexdigest()


_vault: Vault | None = None


def set_vault(vault: Vault | None) -> None:
    """Install the process-wide vault (the app factory does, from its PlatformKeys)."""
    global _vault
    _vault = vault


def get_vault() -> Vault:
    """The process-wide vault; `VaultNotConfigured` until `set_vault` was called."""
    if _vault is None:
        raise VaultNotConfigured(
            "no vault for personal data: the app factory must call gateway.pii.set_vault() "
            "before personal data is stored or read"
        )
    return _vault


def encrypt(value: str) -> str:
    """Encrypt with the process-wide vault."""
    return get_vault().encrypt(value)


def decrypt(token: str) -> str:
    """Decrypt with the process-wide vault."""
    return get_vault().decrypt(token)


def pii_digest(value: str) -> str:
    """The process-wide vault's keyed digest of a (normalized) value, 64 hex characters."""
    return get_vault().digest(value)


class EncryptedString(TypeDecorator[str]):
    """A string column stored encrypted by the process-wide vault, decrypted when loaded.

    Equal values encrypt differently, so never filter on this column: filter on a digest
    column beside it.
    """

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_vault().encrypt(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return get_vault().decrypt(value)
