"""`quanlian serve`: what the app it serves is configured with."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from gateway.settings import get_settings


@pytest.mark.parametrize(("flag", "runs_worker"), [("--no-worker", False), ("--worker", True)])
def test_serve_without_the_worker_serves_an_app_that_runs_none(tmp_path, monkeypatch, flag,
                                                                runs_worker):
    """With `--no-worker` the served app must not pay batches or run other due work itself
    (a separate `quanlian worker` does), even when the settings were read before."""
    import uvicorn

    from gateway.cli import app as cli

    monkeypatch.delenv("QUANLIAN_DATABASE_URL", raising=False)  # a new SQLite file, migrated
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("QUANLIAN_RUN_WORKER", raising=False)
    get_settings.cache_clear()
    assert get_settings().run_worker  # read once already, as the app's imports may do
    served: list[bool] = []
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: served.append(get_settings().run_worker))
    try:
        result = CliRunner().invoke(cli, ["serve", flag])
        assert result.exit_code == 0, result.output
        assert served == [runs_worker]
    finally:
        monkeypatch.delenv("QUANLIAN_RUN_WORKER", raising=False)
        get_settings.cache_clear()


def test_serve_with_workers_gives_them_a_fresh_private_metrics_directory(tmp_path, monkeypatch):
    """`--workers N` counts in a directory of this server's own (prometheus-client's
    multiprocess mode), made empty at start even when PROMETHEUS_MULTIPROC_DIR names a directory
    holding another server's files, and removed at the end; one worker counts in memory."""
    import os

    import uvicorn

    from gateway import metrics
    from gateway.cli import app as cli

    # prometheus-client has chosen this test process's mode already, before the variable is set.
    assert not metrics.MULTIPROCESS
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "counter_1.db").write_bytes(b"another server's counts")
    monkeypatch.delenv("QUANLIAN_DATABASE_URL", raising=False)
    monkeypatch.setenv("QUANLIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
    get_settings.cache_clear()
    seen: list[tuple[int, str | None, list[str], int]] = []

    def run(*args, **kwargs):
        path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        listing = sorted(os.listdir(path)) if path else []
        mode = os.stat(path).st_mode & 0o777 if path else 0
        seen.append((kwargs["workers"], path, listing, mode))

    monkeypatch.setattr(uvicorn, "run", run)
    try:
        result = CliRunner().invoke(cli, ["serve", "--workers", "3", "--no-worker"])
        assert result.exit_code == 0, result.output
        [(workers, path, listing, mode)] = seen
        assert workers == 3 and path is not None
        assert os.path.dirname(path) == str(shared) and listing == [] and mode == 0o700
        assert not os.path.exists(path), "removed when the server stops"
        assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ

        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(shared))
        result = CliRunner().invoke(cli, ["serve", "--workers", "1", "--no-worker"])
        assert result.exit_code == 0, result.output
        assert seen[1][:2] == (1, None)
    finally:
        monkeypatch.delenv("QUANLIAN_RUN_WORKER", raising=False)
        get_settings.cache_clear()
