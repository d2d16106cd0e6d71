"""The database remembers the keys its data was written under (`gateway.keyguard`): a start
with other keys, or with none against a database that holds data, is refused before anything is
written, and keys are never generated for a populated database."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select
from starlette.testclient import TestClient

from gateway.app import create_app
from gateway.db import Database
from gateway.evidence import service as evidence
from gateway.evidence.models import EvidenceCheckpoint, EvidenceEntry
from gateway.keyguard import PlatformKey, open_keys
from gateway.keys import DATA_KEY, EVIDENCE_KEY, PlatformKeys
from gateway.startup import StartupRefused
from gateway.tenancy import Partner
from tests.tools.api import make_app, make_settings

ROOT = Path(__file__).resolve().parents[2]
REMEDY = ("restore the data dir's keys/ or set QUANLIAN_ENCRYPTION_KEY to the key this database "
          "was written with")


def start(database: Database, data_dir: Path, **settings):  # type: ignore[no-untyped-def]
    """The app as a deployment builds it (`gateway.asgi`), start-up checks and all."""
    return create_app(make_settings(data_dir, database.url, **settings), database=database,
                      start_background=False)


def recorded(database: Database) -> dict[str, str]:
    with database.transaction() as s:
        return dict(s.execute(select(PlatformKey.name, PlatformKey.fingerprint)).all())


def counts(database: Database) -> tuple[int, ...]:
    with database.transaction() as s:
        return tuple(s.scalar(select(func.count()).select_from(model)) or 0
                     for model in (Partner, EvidenceEntry, EvidenceCheckpoint, PlatformKey))


def populate(app) -> None:  # type: ignore[no-untyped-def]
    """What a release's users leave behind: a sandbox tenant (personal data, encrypted) and an
    evidence log with a signed checkpoint."""
    with TestClient(app) as http:
        signed_up = http.post("/sandbox/v1/signup", json={"name": "Keyed", "email": "k@example.com"})
        assert signed_up.status_code == 201, signed_up.text
    assert evidence.integrate(app.state.database, app.state.evidence_log) > 0


def a_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def test_a_first_start_records_fingerprints_and_a_restart_with_the_same_keys_starts(database,
                                                                                  tmp_path):
    app = start(database, tmp_path)
    keys: PlatformKeys = app.state.keys
    assert recorded(database) == keys.fingerprints
    assert set(keys.fingerprints) == {DATA_KEY, EVIDENCE_KEY}
    # fingerprints, not keys: neither key file's content nor its base64 is stored
    secrets = {(tmp_path / "keys" / name).read_bytes().decode()
               for name in ("data-encryption.key", "evidence-ed25519.key")}
    assert not secrets & set(recorded(database).values())
    populate(app)
    again = start(database, tmp_path)
    assert again.state.keys.fingerprints == keys.fingerprints
    assert recorded(database) == keys.fingerprints


def test_a_wrong_encryption_key_is_refused_and_writes_nothing(database, tmp_path):
    right = a_key()
    populate(start(database, tmp_path, encryption_key=right))
    before = counts(database)
    with pytest.raises(StartupRefused) as refused:
        start(database, tmp_path, encryption_key=a_key())
    sentence = str(refused.value)
    assert "personal-data encryption key" in sentence and "QUANLIAN_ENCRYPTION_KEY holds" in sentence
    assert sentence.endswith(REMEDY + ".") and "\n" not in sentence
    assert recorded(database)[DATA_KEY][:16] in sentence
    assert counts(database) == before
    start(database, tmp_path, encryption_key=right)  # the right key back: starts


def test_the_key_file_instead_of_the_variable_is_refused_too(database, tmp_path):
    """Unsetting QUANLIAN_ENCRYPTION_KEY on a host that set it: the data dir's own key file
    (generated at some earlier start) is not the key the data was written under."""
    populate(start(database, tmp_path, encryption_key=a_key()))
    PlatformKeys(tmp_path / "other")  # a data key file that exists, but is another key
    (tmp_path / "keys" / "data-encryption.key").write_bytes(
        (tmp_path / "other" / "keys" / "data-encryption.key").read_bytes())
    with pytest.raises(StartupRefused, match="data-encryption.key holds the key with fingerprint"):
        start(database, tmp_path)


def test_another_evidence_key_is_refused(database, tmp_path):
    populate(start(database, tmp_path))
    PlatformKeys(tmp_path / "other")
    (tmp_path / "keys" / "evidence-ed25519.key").write_bytes(
        (tmp_path / "other" / "keys" / "evidence-ed25519.key").read_bytes())
    with pytest.raises(StartupRefused, match="evidence log signing key with fingerprint") as refused:
        start(database, tmp_path)
    assert "restore the data dir's keys/" in str(refused.value)


@pytest.mark.parametrize("recorded_before", [True, False], ids=["recorded", "before-the-table"])
def test_an_empty_data_dir_against_a_populated_database_is_refused_and_generates_nothing(
        database, tmp_path, recorded_before):
    """A new host or a lost volume: no key is generated, nothing is written (no checkpoint
    under a new key), whether or not the database has recorded its keys yet."""
    populate(start(database, tmp_path / "old") if recorded_before
             else make_app(database, tmp_path / "old"))
    assert bool(recorded(database)) is recorded_before
    before = counts(database)
    empty = tmp_path / "new"
    with pytest.raises(StartupRefused) as refused:
        start(database, empty)
    sentence = str(refused.value)
    assert "holds data written under keys that are not in" in sentence
    assert "evidence-ed25519.key" in sentence and "data-encryption.key" in sentence
    assert sentence.endswith(REMEDY + ".")
    assert counts(database) == before
    keys_dir = empty / "keys"
    assert not (keys_dir / "evidence-ed25519.key").exists()
    assert not (keys_dir / "data-encryption.key").exists()
    # the key variable alone does not make up for the evidence key
    with pytest.raises(StartupRefused, match="no evidence-ed25519.key"):
        start(database, empty, encryption_key=a_key())
    assert counts(database) == before


def test_keys_made_before_this_release_are_checked_against_the_data_and_recorded(database,
                                                                                 tmp_path):
    """An upgrade: the table is new and empty, the database holds data, the data dir's keys
    were generated by the former release. They decrypt the data and signed the log: recorded."""
    old = make_app(database, tmp_path)  # the former release: nothing recorded
    populate(old)
    assert recorded(database) == {}
    app = start(database, tmp_path)
    assert recorded(database) == old.state.keys.fingerprints == app.state.keys.fingerprints


def test_before_the_table_keys_that_do_not_match_the_data_are_not_recorded(database, tmp_path):
    """The same upgrade with another data dir's keys (a mistyped variable, another host's
    volume): the personal data does not decrypt under them, so they are refused, not recorded."""
    populate(make_app(database, tmp_path / "old"))
    before = counts(database)
    PlatformKeys(tmp_path / "elsewhere")  # a whole set of keys, none of them this database's
    with pytest.raises(StartupRefused, match="does not decrypt under the key"):
        start(database, tmp_path / "elsewhere")
    PlatformKeys(tmp_path / "other", a_key())  # the right data key below, another evidence key
    old_data_key = (tmp_path / "old" / "keys" / "data-encryption.key").read_bytes().decode()
    with pytest.raises(StartupRefused, match="evidence log in the database .* was not signed"):
        start(database, tmp_path / "other", encryption_key=old_data_key)
    assert counts(database) == before and recorded(database) == {}


def test_starts_racing_on_a_fresh_database_all_start_with_the_keys_recorded_once(database,
                                                                                tmp_path):
    starts = 4
    barrier = threading.Barrier(starts)
    results: list[object] = []

    def start_up(data_dir: Path) -> None:
        db = Database(database.url)
        try:
            barrier.wait(timeout=30)
            results.append(open_keys(make_settings(data_dir, db.url), db).fingerprints)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            results.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=start_up, args=(tmp_path / "shared",)) for _ in range(starts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == starts and all(r == recorded(database) for r in results), results

    # the same race from data dirs of their own: one set of keys wins, the others are refused
    with database.transaction() as s:
        s.execute(delete(PlatformKey))
    results.clear()
    barrier.reset()
    threads = [threading.Thread(target=start_up, args=(tmp_path / f"own-{i}",))
               for i in range(starts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    started = [r for r in results if isinstance(r, dict)]
    assert started == [recorded(database)], results
    assert all(isinstance(r, StartupRefused) for r in results if r not in started)


def test_the_worker_command_refuses_a_wrong_key_with_one_sentence(database, tmp_path):
    """The real command line, in a process of its own: status 1, the sentence, no traceback,
    no job run."""
    populate(start(database, tmp_path, encryption_key=a_key()))
    before = counts(database)
    env = {**os.environ, "QUANLIAN_DATABASE_URL": database.url, "QUANLIAN_DATA_DIR": str(tmp_path),
           "QUANLIAN_ENCRYPTION_KEY": a_key(), "QUANLIAN_LOG_LEVEL": "WARNING"}
    env.pop("QUANLIAN_REDIS_URL", None)
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "worker", "--once"], env=env,
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr
    assert run.stdout == ""
    assert run.stderr.startswith("error: The database at ")
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    assert REMEDY in run.stderr
    assert counts(database) == before


def test_a_server_started_by_uvicorn_with_an_empty_data_dir_exits_before_serving(database,
                                                                               tmp_path):
    """`uvicorn gateway.asgi:app` (or gunicorn): the status that tells a supervisor the worker
    cannot boot (3), the sentence, and no key file written."""
    populate(start(database, tmp_path / "old"))
    env = {**os.environ, "QUANLIAN_DATABASE_URL": database.url,
           "QUANLIAN_DATA_DIR": str(tmp_path / "new"), "QUANLIAN_LOG_LEVEL": "WARNING"}
    env.pop("QUANLIAN_ENCRYPTION_KEY", None)
    run = subprocess.run([sys.executable, "-m", "uvicorn", "gateway.asgi:app", "--port", "9",
                          "--log-level", "warning"], env=env, cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 3, run.stderr
    assert "Traceback" not in run.stderr
    assert run.stderr.strip().splitlines() == [next(
        line for line in run.stderr.splitlines() if line.startswith("error: "))]
    assert "no keys are generated for it" in run.stderr
    assert not (tmp_path / "new" / "keys" / "evidence-ed25519.key").exists()


def test_an_encryption_key_that_is_no_key_is_one_sentence(database, tmp_path):
    with pytest.raises(StartupRefused, match="QUANLIAN_ENCRYPTION_KEY cannot be read as keys"):
        start(database, tmp_path, encryption_key=base64.b64encode(b"short").decode())
