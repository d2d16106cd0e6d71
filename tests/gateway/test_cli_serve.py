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
