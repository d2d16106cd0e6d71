"""Column type for secrets and personal data the partners package must read back: contacts,
TOTP seeds and webhook signing secrets are stored encrypted (gateway.pii's vault, which the
app factory installs)."""

from __future__ import annotations

from gateway.pii import EncryptedString

SecretText = EncryptedString
