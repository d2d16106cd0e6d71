"""Several processes migrating one fresh database at once (servers or container replicas
starting together, each running `quanlian serve`): the migration is serialized across them, so
each succeeds and the schema ends at the head revision."""

from __future__ import annotations

import os
import subprocess
import sys

from sqlalchemy import create_engine

from gateway import migrate
from tests.tools.databases import empty_database_url

# Each process imports everything first, says so, and migrates when told to, so that their
# migrations overlap (the import takes far longer than a migration's first statement).
_MIGRATE = """
import sys
import gateway.app, gateway.migrate
print("ready", flush=True)
sys.stdin.readline()
gateway.migrate.upgrade(sys.argv[1])
"""
PROCESSES = 2


def test_processes_migrating_a_fresh_database_together_all_succeed() -> None:
    with empty_database_url() as url:
        env = {**os.environ, "PYTHONPATH": os.getcwd()}
        runs = [subprocess.Popen([sys.executable, "-c", _MIGRATE, url], env=env, text=True,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE) for _ in range(PROCESSES)]
        try:
            for run in runs:
                assert run.stdout is not None and run.stdout.readline().strip() == "ready"
            for run in runs:  # go, all at once
                assert run.stdin is not None
                run.stdin.write("go\n")
                run.stdin.flush()
            results = [(run.wait(timeout=120), run.stderr.read() if run.stderr else "")
                       for run in runs]
        finally:
            for run in runs:
                if run.poll() is None:
                    run.kill()
                    run.wait()
                for stream in (run.stdin, run.stdout, run.stderr):
                    if stream is not None:
                        stream.close()
        assert [rc for rc, _ in results] == [0] * PROCESSES, "\n".join(err for _, err in results)
        engine = create_engine(url)
        try:
            assert migrate.current_revision(engine) == migrate.head_revision()
        finally:
            engine.dispose()


def test_an_upgrade_of_a_current_database_does_nothing() -> None:
    with empty_database_url() as url:
        migrate.upgrade(url)
        migrate.upgrade(url)  # the second process's case, once the first has migrated
        engine = create_engine(url)
        try:
            assert migrate.current_revision(engine) == migrate.head_revision()
        finally:
            engine.dispose()
