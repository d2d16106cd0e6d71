"""`quanlian chain-credit ...`: the bank's operations on chain credit from the command line."""

from __future__ import annotations

import getpass
import json
from datetime import date

import typer

from gateway.cli_support import cli_transaction
from gateway.errors import Problem
from gateway.money import MoneyError, parse_fen

chain_credit_app = typer.Typer(no_args_is_help=True, help="Chain credit (operations)")


@chain_credit_app.command("grant-facility")
def grant_facility(
    tenant_id: str = typer.Option(..., help="The partner tenant (ten_...)"),
    core_enterprise_id: str = typer.Option(..., help="The core enterprise's chain member id (cmem_...)"),
    limit: str = typer.Option(..., help='Credit limit in CNY, e.g. "50000000.00"'),
    expires_on: str = typer.Option(..., help="Expiry date, YYYY-MM-DD (Asia/Shanghai)"),
    guarantee_circle: str = typer.Option(..., help="Guarantee circle code, e.g. GC-SZ-ELEC-01"),
    discount_rate: str = typer.Option(..., help='Yearly discount rate as a fraction, e.g. "0.0385"'),
) -> None:
    """Grant a core enterprise its credit facility, or renew it once it has expired; prints the
    facility as JSON."""
    from pydantic import TypeAdapter, ValidationError

    from products.chain_credit import schemas, service, views

    try:
        limit_fen = parse_fen(limit, allow_zero=False)
        expiry = date.fromisoformat(expires_on)
        # The API's rule for circle codes (checked and upper-cased), so both store the same code.
        circle = TypeAdapter(schemas.GuaranteeCircle).validate_python(guarantee_circle)
    except ValidationError as exc:
        typer.echo(f"error: --guarantee-circle: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None
    except (MoneyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        with cli_transaction() as session:
            facility = service.grant_facility(
                session, tenant_id=tenant_id, core_enterprise_id=core_enterprise_id,
                limit_fen=limit_fen, expires_on=expiry, guarantee_circle=circle,
                discount_rate=discount_rate, actor=f"cli:{getpass.getuser()}")
            out = views.data(views.facility_out(facility))
    except (Problem, ValueError) as exc:
        detail = exc.detail if isinstance(exc, Problem) else str(exc)
        code = exc.code if isinstance(exc, Problem) else "invalid"
        typer.echo(f"error ({code}): {detail}", err=True)
        raise typer.Exit(1) from None
    typer.echo(json.dumps(out, indent=2, ensure_ascii=False))
