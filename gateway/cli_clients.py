"""`quanlian clients create|revoke` and `quanlian keys rotate`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from sqlalchemy import select

from gateway.cli_support import cli_database, cli_transaction
from gateway.errors import ValidationFailed
from gateway.oauth.clients import create_client, revoke_client
from gateway.tenancy import Partner, create_partner

clients_app = typer.Typer(no_args_is_help=True, help="OAuth clients")
keys_app = typer.Typer(no_args_is_help=True, help="Platform keys")


@clients_app.command("create")
def create(
    name: str = typer.Option(..., help="Partner (and client) name"),
    environment: str = typer.Option("sandbox", help="sandbox or production"),
    scopes: str = typer.Option(..., help="Space-separated scopes"),
    jwks: Path | None = typer.Option(None, help="File with the client's public JWKS"),
    jwks_uri: str | None = typer.Option(None, help="URL of the client's JWKS"),
    secret: bool = typer.Option(False, "--secret", help="Issue a client secret (sandbox only)"),
    operations: bool = typer.Option(False, "--operations", help="A bank operations client"),
    partner_type: str | None = typer.Option(
        None, help="Type of a partner created here (default software_vendor); supervisor scopes "
                   "(payroll:supervise, egov:supervise) need government_portal"),
) -> None:
    """Create the partner if needed and a client; print JSON with client_id (and secret).
    Supervisor scopes are granted as the console grants them: to government_portal partners
    only (`partners.credentials.check_supervisor_scopes`)."""
    from partners.credentials import check_supervisor_scopes
    from partners.schemas import PARTNER_TYPES

    if partner_type is not None and partner_type not in PARTNER_TYPES:
        raise typer.BadParameter(f"one of {', '.join(PARTNER_TYPES)}", param_hint="--partner-type")
    with cli_transaction() as session:
        partner = session.scalars(select(Partner).where(Partner.name == name)).first()
        if partner is None:
            partner = create_partner(session, name=name,
                                     partner_type=partner_type or "software_vendor",
                                     status="active" if (environment == "production"
                                                         or operations) else "submitted",
                                     is_operations=operations)
        elif partner_type is not None and partner.partner_type != partner_type:
            raise typer.BadParameter(f"partner {name!r} ({partner.id}) exists as a "
                                     f"{partner.partner_type} partner; its type is not changed "
                                     "here", param_hint="--partner-type")
        try:  # nothing is written when refused: the transaction rolls back
            check_supervisor_scopes(partner.partner_type, scopes.split())
        except ValidationFailed as exc:
            raise typer.BadParameter(f"{exc.detail} ({exc.code})", param_hint="--scopes") from exc
        issued = create_client(session, partner=partner, environment=environment, name=name,
                               scopes=scopes.split(),
                               jwks=json.loads(jwks.read_text()) if jwks else None,
                               jwks_uri=jwks_uri, with_secret=secret)
        out = {"client_id": issued.client.id, "partner_id": partner.id,
               "tenant_id": issued.client.tenant_id, "environment": environment,
               "scopes": issued.client.scopes.split()}
        if issued.secret:
            out["client_secret"] = issued.secret
    typer.echo(json.dumps(out, indent=2))


@clients_app.command("revoke")
def revoke(client_id: str) -> None:
    """Revoke a client; its tokens stop working at once."""
    with cli_transaction() as session:
        revoke_client(session, client_id)
    typer.echo(json.dumps({"client_id": client_id, "status": "revoked"}))


@keys_app.command("rotate")
def rotate() -> None:
    """Add a new token signing key; old keys keep validating their tokens."""
    with cli_database() as (_, keys):  # never generates the guarded keys for a database with data
        kid = keys.rotate_signing_key()
    typer.echo(json.dumps({"active_kid": kid}))
