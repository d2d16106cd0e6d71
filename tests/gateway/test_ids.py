"""Identifiers: `prefix_` + a 26-character ULID, ordered by creation, checked by has_prefix."""

from __future__ import annotations

import re
import threading
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gateway.ids
from gateway.ids import has_prefix, new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def test_format() -> None:
    value = new_id("pcert")
    assert re.fullmatch(r"pcert_[0-9A-HJKMNP-TV-Z]{26}", value)
    assert len(new_id("k")) == 28


@pytest.mark.parametrize("prefix", ["", "Pcert", "p_cert", "p-cert", "1abc", "abcdefghijklm", "pcért"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="bad id prefix"):
        new_id(prefix)


def test_ids_created_in_sequence_sort_in_order() -> None:
    ids = [new_id("pbatch") for _ in range(5000)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def _fake_clock(monkeypatch: pytest.MonkeyPatch, times_ms: list[int]) -> None:
    """Replace the OS clock new_id reads, and start from a clean generator state (restored
    after the test, so other tests keep the real sequence)."""
    steps = iter(times_ms)
    monkeypatch.setattr(gateway.ids, "time", SimpleNamespace(time_ns=lambda: next(steps) * 10**6))
    monkeypatch.setattr(gateway.ids, "_last_ms", 0)
    monkeypatch.setattr(gateway.ids, "_last_rand", 0)


def test_order_holds_across_milliseconds_and_when_the_clock_steps_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base = 1_800_000_000_000
    times = [base, base, base + 1, base + 1, base + 7, base + 3, base + 3, base + 8, base + 8]
    _fake_clock(monkeypatch, times)
    ids = [new_id("pcert") for _ in times]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # The time part is the millisecond (never moved backwards).
    stamps = [sum(CROCKFORD.index(c) << (5 * (9 - i)) for i, c in enumerate(v[6:16])) for v in ids]
    assert stamps == [base, base, base + 1, base + 1, base + 7, base + 7, base + 7, base + 8, base + 8]


def test_ids_from_many_threads_are_unique_and_each_threads_are_ordered() -> None:
    results: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        for _ in range(2000):
            out.append(new_id("ptx"))

    threads = [threading.Thread(target=work, args=(out,)) for out in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for out in results:
        assert out == sorted(out)
    assert len({v for out in results for v in out}) == 8000


def test_has_prefix() -> None:
    value = new_id("pcert")
    assert has_prefix(value, "pcert")
    assert not has_prefix(value, "pcer")
    assert not has_prefix(value, "pbatch")
    assert not has_prefix(value[:-1], "pcert")
    assert not has_prefix(value + "0", "pcert")
    assert not has_prefix(value[:-1] + "U", "pcert")  # U is not in Crockford base32
    assert not has_prefix(value[:-1] + "a", "pcert")  # ids are upper case
    assert not has_prefix("pcert-" + value[6:], "pcert")
    assert not has_prefix(None, "pcert")  # type: ignore[arg-type]
    assert not has_prefix(12345, "pcert")  # type: ignore[arg-type]


@settings(max_examples=2000)
@given(st.integers(0, 2**48 - 1), st.integers(0, 2**80 - 1))
def test_ulid_encoding_is_crockford_base32_of_time_then_randomness(ms: int, rand: int) -> None:
    value = (ms << 80) | rand
    naive = "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))
    assert gateway.ids._encode_ulid(ms, rand) == naive


def test_deterministic_ids_repeat_for_the_listed_prefixes_only() -> None:
    from gateway.ids import deterministic_ids

    def seeding(key: str) -> tuple[list[str], list[str]]:
        with deterministic_ids(key, 1_796_000_000_000, frozenset({"acct"})):
            return [new_id("acct") for _ in range(3)], [new_id("evt") for _ in range(2)]

    first, kept = seeding("ten_A")
    again, kept_again = seeding("ten_A")
    assert first == again and first == sorted(first) and len(set(first)) == 3
    assert all(has_prefix(i, "acct") for i in first)
    assert not set(kept) & set(kept_again)  # other prefixes stay random
    assert not set(seeding("ten_B")[0]) & set(first)  # per key
    assert new_id("acct") not in first  # only inside the block
    assert first[0] < new_id("acct")  # stamped with the given (earlier) time
