"""`quanlian operators ...` (bootstrap and manage console operators) and `quanlian worker`."""

from __future__ import annotations

import json
import os
import signal
import threading

import typer

from gateway.cli_support import cli_transaction
from gateway.errors import Problem

operators_app = typer.Typer(no_args_is_help=True, help="Operations console operators")
worker_app = typer.Typer(help="Run the background worker (webhook delivery, scheduled jobs)",
                         invoke_without_command=True)


def _fail(exc: Problem) -> None:
    typer.echo(f"error: {exc.detail or exc.title} ({exc.code})", err=True)
    raise typer.Exit(1)


def _password(from_stdin: bool, prompt: str, given: str | None = None) -> str:
    """A password from standard input's first line, `given`, or typed twice at a prompt."""
    if from_stdin:
        return typer.get_text_stream("stdin").readline().rstrip("\n")
    return given or typer.prompt(prompt, hide_input=True, confirmation_prompt=True)


@operators_app.command("create")
def create(
    username: str = typer.Option(..., help="Log-in name (a-z, 0-9, . _ -)"),
    role: list[str] = typer.Option(["admin"], "--role", help="reviewer, approver, auditor, admin "
                                                              "(repeat for several)"),
    name: str = typer.Option("", help="Display name"),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password from standard input"),
) -> None:
    """Create an operator (the first one bootstraps the console: `--role admin`)."""
    from partners.operators import create_operator

    password = _password(password_stdin, "Password",
                         os.environ.get("QUANLIAN_OPERATOR_PASSWORD"))
    try:
        with cli_transaction() as session:
            operator = create_operator(session, username=username, display_name=name or username,
                                       roles=list(role), password=password, actor="cli")
            out = {"id": operator.id, "username": operator.username, "roles": operator.roles}
    except Problem as exc:
        _fail(exc)
    typer.echo(json.dumps(out))


@operators_app.command("list")
def list_() -> None:
    """List operators."""
    from partners.operators import list_operators

    with cli_transaction() as session:
        rows = [{"id": o.id, "username": o.username, "roles": o.roles, "status": o.status,
                 "totp": o.totp_enabled} for o in list_operators(session)]
    typer.echo(json.dumps(rows, indent=2))


def _change(username: str, change: str, password: str | None = None) -> None:
    from partners.operators import find_operator, reset_totp, set_password, set_status, unlock

    try:
        with cli_transaction() as session:
            operator = find_operator(session, username)
            if operator is None:
                typer.echo(f"error: no operator {username}", err=True)
                raise typer.Exit(1)
            if change == "unlock":
                unlock(session, operator, actor="cli")
            elif change == "password":
                set_password(session, operator, password or "", actor="cli")
            elif change == "totp":
                reset_totp(session, operator, actor="cli")
            else:
                set_status(session, operator, change, actor="cli")
    except Problem as exc:
        _fail(exc)
    typer.echo(json.dumps({"username": username, "done": change}))


@operators_app.command("disable")
def disable(username: str) -> None:
    """Disable an operator (ends its console sessions)."""
    _change(username, "disabled")


@operators_app.command("enable")
def enable(username: str) -> None:
    _change(username, "active")


@operators_app.command("unlock")
def unlock_(username: str) -> None:
    """Lift a lockout after failed log-ins."""
    _change(username, "unlock")


@operators_app.command("reset-password")
def reset_password(
    username: str,
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the new password from standard input"),
) -> None:
    """Set a new password (unlocks the operator and ends its console sessions)."""
    _change(username, "password", _password(password_stdin, "New password"))


@operators_app.command("reset-totp")
def reset_totp_(username: str) -> None:
    """Remove an operator's TOTP (a lost authenticator): it logs in with its password and sets
    TOTP up again. Ends its console sessions."""
    _change(username, "totp")


@worker_app.callback()
def worker(once: bool = typer.Option(False, "--once", help="Run every job until idle, then exit"),
           tick: float = typer.Option(0.2, help="Seconds between scheduler ticks")) -> None:
    """Run the registered jobs (webhook fan-out and delivery, usage flush, products' jobs).

    Run one or several beside `quanlian serve --no-worker`; PostgreSQL row locks keep them
    from sending the same attempt twice.
    """
    from gateway.app import create_app
    from gateway.jobs import Worker, registered, run_until_idle
    from gateway.startup import exit_on_refusal

    # Wires every package, which registers jobs; refuses (one sentence, status 1) a database
    # behind or ahead of this release, or keys other than those its data was written under.
    with exit_on_refusal():
        app = create_app(start_background=False)
    database = app.state.database
    if once:
        try:
            typer.echo(json.dumps(run_until_idle(database)))
        finally:
            database.dispose()
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    runner = Worker(database, tick=tick).start()
    typer.echo(f"worker running jobs: {', '.join(registered())}", err=True)
    stop.wait()
    runner.stop()
    database.dispose()
