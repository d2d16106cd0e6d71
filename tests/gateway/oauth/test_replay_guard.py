"""Single-use checks in groups: one transaction for many concurrent checks, each key accepted
exactly once, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import func, select

from gateway.batching import GroupCommit
from gateway.db import Database
from gateway.oauth.models import UsedNonce
from gateway.oauth.replay import ReplayGuard
from tests.tools.concurrency import run_together


def _expires() -> int:
    return int(time.time()) + 300


def test_a_batch_accepts_the_first_of_equal_keys_and_refuses_used_ones(database: Database):
    guard = ReplayGuard(database)
    assert guard.first_use("used", _expires()) is True
    assert guard._first_uses([("a", _expires()), ("used", _expires()), ("a", _expires()),
                              ("b", _expires())]) == [True, False, False, True]
    with database.transaction() as s:
        assert s.scalar(select(func.count()).select_from(UsedNonce)) == 3


def test_concurrent_checks_share_commits_and_each_key_wins_once(database: Database):
    guard = ReplayGuard(database)
    batches: list[int] = []
    write = guard._first_uses

    def counting(items):  # type: ignore[no-untyped-def]
        batches.append(len(items))
        return write(items)

    guard._batches = GroupCommit(counting)
    keys = [uuid.uuid4().hex for _ in range(20)]
    wins: list[str] = []
    lock = threading.Lock()

    def check_all() -> None:  # each of 10 threads tries every key
        for key in keys:
            if guard.first_use(key, _expires()):
                with lock:
                    wins.append(key)

    run_together(check_all, 10)
    assert sorted(wins) == sorted(keys)
    assert sum(batches) == 200
    assert len(batches) < 200  # some commits carried several checks


def test_a_failed_batch_fails_each_of_its_callers_and_the_next_batch_runs():
    calls: list[list[int]] = []
    gate = threading.Event()

    def write(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            gate.wait(5)
            raise RuntimeError("disk full")
        return [i * 2 for i in items]

    commit: GroupCommit[int, int] = GroupCommit(write)
    outcomes: dict[int, object] = {}

    def submit(i: int) -> None:
        try:
            outcomes[i] = commit.submit(i)
        except RuntimeError as exc:
            outcomes[i] = exc

    first = threading.Thread(target=submit, args=(1,))
    first.start()
    while not calls:
        time.sleep(0.001)
    others = [threading.Thread(target=submit, args=(i,)) for i in (2, 3, 4)]
    for t in others:
        t.start()
    time.sleep(0.05)  # the three queue behind the failing batch
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert isinstance(outcomes[1], RuntimeError)
    assert [outcomes[i] for i in (2, 3, 4)] == [4, 6, 8]
    assert calls[1] == [2, 3, 4]


def test_batches_are_bounded_in_size():
    sizes: list[int] = []
    release = threading.Event()

    def write(items: list[int]) -> list[int]:
        sizes.append(len(items))
        release.wait(5)
        return items

    commit: GroupCommit[int, int] = GroupCommit(write, max_batch=10)
    threads = [threading.Thread(target=commit.submit, args=(i,)) for i in range(35)]
    for t in threads:
        t.start()
    time.sleep(0.2)
    release.set()
    for t in threads:
        t.join(5)
    assert sum(sizes) == 35 and max(sizes) <= 10
