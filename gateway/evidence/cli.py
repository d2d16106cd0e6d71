"""`quanlian evidence integrate|export|verify`."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.progress import Progress

from gateway.cli_support import cli_database
from gateway.db import Database
from gateway.evidence import service, verifier
from gateway.settings import get_settings

evidence_app = typer.Typer(no_args_is_help=True, help="The evidence log")


@contextmanager
def _log() -> Iterator[tuple[Database, service.Log]]:
    """The configured database and evidence log, the keys checked against the database."""
    with cli_database() as (database, keys):
        yield database, service.Log(get_settings().evidence_origin, keys.evidence_key)


@evidence_app.command("integrate")
def integrate() -> None:
    """Integrate waiting entries and sign a checkpoint now."""
    with _log() as (database, log):
        added = service.integrate(database, log)
    typer.echo(f"integrated {added} entries")


@evidence_app.command("export")
def export(out: Path = typer.Option(..., "--out", help="Directory to write")) -> None:
    """Write every integrated entry and every checkpoint for offline verification."""
    with _log() as (database, log):
        service.integrate(database, log)
        with database.transaction() as session:
            n, n_cp = verifier.export(session, out, log.verifier_key)
    typer.echo(f"exported {n} entries and {n_cp} checkpoints to {out}")


@evidence_app.command("verify")
def verify(directory: Path | None = typer.Argument(None, help="An exported directory"),
           url: str | None = typer.Option(None, "--url", help="Verify a live log at BASE URL"),
           key: str | None = typer.Option(None, "--key", help="Trusted verifier key")) -> None:
    """Check signatures, the prev chain, every root and every leaf; exit 1 on tampering."""
    if (directory is None) == (url is None):
        raise typer.BadParameter("give a directory or --url")
    with Progress(transient=True) as bar:
        task = bar.add_task("verifying", total=None)

        def progress(n: int) -> None:
            bar.update(task, completed=n)

        report = (verifier.verify_directory(directory, key, progress) if directory is not None
                  else verifier.verify_url(url or "", key, progress))
    if report.ok:
        typer.echo(f"OK: {report.entries} entries, {report.checkpoints} checkpoints verified")
        if key is None:
            # The log is consistent with the key it names, which whoever wrote it chose: only a
            # key obtained separately shows it is the platform's log.
            typer.echo("Note: checked against the key the log itself names; pass --key with the "
                       "platform's verifier key, obtained separately, to check whose log it is.",
                       err=True)
        return
    typer.echo(f"TAMPERED: {report.problem}", err=True)
    raise typer.Exit(1)
