"""Masking of contacts' personal data: gateway.pii's masks, plus e-mail addresses."""

from __future__ import annotations

from gateway.pii import mask_name, mask_phone


def mask_email(value: str) -> str:
    """`zh***@example.com`: the first two characters of the local part and the domain."""
    local, _, domain = (value or "").partition("@")
    return (local[:2] + "***@" + domain) if domain else "***"


__all__ = ["mask_name", "mask_phone", "mask_email"]
