"""Opaque, prefixed, sortable identifiers (`pcert_01J...`): a ULID behind a type prefix.

Under `deterministic_ids` (the sandbox's seeding), ids of the given prefixes are derived from a
key and their order of creation instead, so that seeding a tenant again gives the same ids.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


class _DeterministicIds:
    """The n-th id of a prefix: the fixed time, then n above 48 bits that depend on the key and
    the prefix only. Ids of a prefix sort in creation order; keys (tenants) never share ids."""

    def __init__(self, key: str, ms: int, prefixes: frozenset[str]) -> None:
        self.key, self.ms, self.prefixes = key, ms, prefixes
        self.counts: dict[str, int] = {}

    def next(self, prefix: str) -> str | None:
        if prefix not in self.prefixes:
            return None
        n = self.counts.get(prefix, 0) + 1
        self.counts[prefix] = n
        salt = hashlib.sha256(f"{self.key}\0{prefix}".encode()).digest()[:6]
        return f"{prefix}_{_encode_ulid(self.ms, (n << 48) | int.from_bytes(salt, 'big'))}"


_deterministic: ContextVar[_DeterministicIds | None] = ContextVar("deterministic_ids",
                                                                  default=None)


@contextmanager
def deterministic_ids(key: str, at_ms: int, prefixes: frozenset[str]) -> Iterator[None]:
    """Within the block, `new_id` of one of `prefixes` is a function of `key`, the prefix and
    how many such ids came before, stamped `at_ms`; other prefixes stay random. Only for rows
    that are deleted before the same ids are made again (a sandbox reset)."""
    if not 0 <= at_ms < 1 << 48 or not all(_PREFIX.match(p) for p in prefixes):
        raise ValueError("deterministic ids need a 48-bit time and valid prefixes")
    token = _deterministic.set(_DeterministicIds(key, at_ms, prefixes))
    try:
        yield
    finally:
        _deterministic.reset(token)


def new_id(prefix: str) -> str:
    """A new id: `prefix_` + 26 chars, lexicographically ordered by creation within a process."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"bad id prefix {prefix!r}")
    deterministic = _deterministic.get()
    if deterministic is not None:
        made = deterministic.next(prefix)
        if made is not None:
            return made
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
