"""Opaque, prefixed, sortable identifiers (`pcert_01J...`): a ULID behind a type prefix."""

from __future__ import annotations

import os
import re
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_lock = threading.Lock()
_last_ms = 0
_last_rand = 0
_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,11}$")


# Two characters per 10 bits: a ULID's 26 characters in 13 look-ups instead of 26 shifts.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_SHIFTS = tuple(range(120, -1, -10))


def _encode_ulid(ms: int, rand: int) -> str:
    """The 26 Crockford base32 characters of a ULID (48-bit time, then 80 bits of randomness),
    most significant first; 13 look-ups rather than 26 shifts, as ids are made several times
    per request."""
    value = (ms << 80) | rand
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])


def new_id(prefix: str) -> str:
    """A new id: `prefix_` + 26 chars, lexicographically ordered by creation within a process."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"bad id prefix {prefix!r}")
    global _last_ms, _last_rand
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            rand = _last_rand + 1
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # leave room to increment
        _last_ms, _last_rand = ms, rand
    return f"{prefix}_{_encode_ulid(ms, rand)}"


def has_prefix(value: str, prefix: str) -> bool:
    return (
        isinstance(value, str)
        and value.startswith(prefix + "_")
        and len(value) == len(prefix) + 27
        and all(c in _ALPHABET for c in value[len(prefix) + 1 :])
    )
