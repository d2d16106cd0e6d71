"""Processes starting at the same moment on a fresh data dir make the platform's keys once
and all read the same, whole: a key file created empty and then written was read empty by a
start racing it (JSONDecodeError in two `serve` started together)."""

from __future__ import annotations

import threading
from pathlib import Path

from gateway.keys import PlatformKeys

STARTS = 4


def _start_together(data_dir: Path) -> tuple[list[str], list[BaseException]]:
    start = threading.Barrier(STARTS)
    kids: list[str] = []
    errors: list[BaseException] = []

    def start_up() -> None:
        start.wait(timeout=30)
        try:
            kids.append(PlatformKeys(data_dir).public_jwks()["keys"][0]["kid"])
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=start_up) for _ in range(STARTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return kids, errors


def test_starts_racing_on_a_fresh_data_dir_read_one_whole_key(tmp_path: Path) -> None:
    for round_ in range(30):
        data_dir = tmp_path / str(round_)
        kids, errors = _start_together(data_dir)
        assert not errors, errors
        assert len(kids) == STARTS and len(set(kids)) == 1
        keys = data_dir / "keys"
        assert (keys / "signing-keys.json").stat().st_mode & 0o777 == 0o600
        assert not [p for p in keys.iterdir() if p.name.startswith(".")]  # no leftovers
