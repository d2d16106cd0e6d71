"""The `quanlian` command line."""

from __future__ import annotations

import importlib
import json
import logging
import sys
from pathlib import Path

import typer

from gateway import migrate
from gateway.settings import get_settings
from gateway.startup import exit_on_refusal

app = typer.Typer(no_args_is_help=True, help="Quanlian: open-banking API platform")
db_app = typer.Typer(no_args_is_help=True, help="Database migrations")
app.add_typer(db_app, name="db")

# Sub-commands contributed by packages: (module, typer attribute, name)
SUBCOMMANDS: list[tuple[str, str, str]] = [
    ("gateway.cli_clients", "clients_app", "clients"),
    ("gateway.cli_clients", "keys_app", "keys"),
    ("gateway.evidence.cli", "evidence_app", "evidence"),
    ("partners.cli", "operators_app", "operators"),
    ("partners.cli", "worker_app", "worker"),
    ("products.chain_credit.cli", "chain_credit_app", "chain-credit"),
]

OPENAPI_PATH = Path(__file__).resolve().parents[1] / "openapi" / "openapi.json"


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database to the newest schema (each revision run is logged)."""
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)  # quanlian.migrate says what ran
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with exit_on_refusal():
        revision = migrate.upgrade(settings.effective_database_url)
    typer.echo("database is at " + revision)


@app.command()
def serve(host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          worker: bool = typer.Option(True, help="Run the background worker in-process"),
          migrate_first: bool | None = typer.Option(
              None, "--migrate/--no-migrate", show_default=False,
              help="Migrate the database before serving; with --no-migrate, refuse to start on "
                   "a database behind this release instead [default: QUANLIAN_MIGRATE_ON_START, "
                   "true]")) -> None:
    """Migrate (unless told not to), check the schema and keys, then serve the platform with
    uvicorn."""
    import os

    import uvicorn

    from gateway.cli_support import cli_database, metrics_directory

    if not worker:
        # Before the settings are first read: they are read once per process and kept, and
        # the app reads them in this process (one worker) or in uvicorn's (which inherit it).
        os.environ["QUANLIAN_RUN_WORKER"] = "false"
        get_settings.cache_clear()
    # Several workers count requests in one directory, so that /metrics reports the server's
    # totals whichever worker answers: set before the seeding below imports the metrics.
    with metrics_directory(workers):
        settings = get_settings()
        if settings.migrate_on_start if migrate_first is None else migrate_first:
            db_upgrade()
        # Refused here, before the demo is seeded or the port bound: the served app checks the
        # same again in each worker process (gateway.asgi).
        with cli_database(settings):
            pass
        if settings.seed_demo:
            from sandbox.demo import ensure_demo, quickstart

            typer.echo(quickstart(settings, ensure_demo(settings)))
        uvicorn.run("gateway.asgi:app", host=host, port=port, workers=workers,
                    proxy_headers=True, access_log=False, log_level="warning")


def openapi_document() -> str:
    from gateway.app import create_app

    application = create_app(start_background=False, startup_checks=False)  # needs no database
    return json.dumps(application.openapi(), indent=2, ensure_ascii=False, sort_keys=True) + "\n"


@app.command()
def openapi(check: bool = typer.Option(False, "--check", help="Fail if the file is stale"),
            out: Path = OPENAPI_PATH) -> None:
    """Write the OpenAPI document (or check that the committed one is current)."""
    document = openapi_document()
    if check:
        current = out.read_text() if out.exists() else ""
        if current != document:
            typer.echo(f"{out} is out of date: run `quanlian openapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is current")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    typer.echo(f"wrote {out}")


for _module, _attr, _name in SUBCOMMANDS:
    app.add_typer(getattr(importlib.import_module(_module), _attr), name=_name)


if __name__ == "__main__":
    sys.exit(app())
