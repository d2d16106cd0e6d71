"""The sandbox API: self-serve sign-up, test clock, sample events, reset, and a regulator of
the tenant's own for trying supervised escrow (`sandbox.regulators`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import Depends, Request
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator, model_validator
from sqlalchemy.orm import Session

from gateway import patterns
from gateway.auth import InsufficientScope, authenticate, require_scope
from gateway.clock import Instant, Timestamp, to_rfc3339
from gateway.db import get_session
from gateway.errors import Problem, ValidationFailed, error_responses
from gateway.event_types import PARTNER_EVENT_TYPES
from gateway.events import publish
from gateway.idempotency import idempotency
from gateway.oauth.scopes import WRITE_SCOPES
from gateway.ratelimit import rate_limit_public
from gateway.routing import Router
from gateway.tenancy import Principal, advance_clock, advance_clock_to, clock_for, create_partner
from products.egov.escrow import regulator_view
from products.egov.schemas import RegulatorOut
from sandbox.provision import provision_sandbox
from sandbox.regulators import issue_regulator_client
from sandbox.reset import reset_sandbox
from sandbox.samples import build_sample

router = Router(prefix="/sandbox/v1", tags=["sandbox"],
                   responses=error_responses(400, 401, 403, 422, 429))

class NotSandbox(Problem):
    status, code, title = 403, "sandbox_only", "Sandbox only"


def sandbox_principal(principal: Principal = Depends(authenticate)) -> Principal:
    if not principal.is_sandbox:
        raise NotSandbox("This call exists in the sandbox only.")
    return principal


def sandbox_changer(principal: Principal = Depends(sandbox_principal)) -> Principal:
    """Moving the test clock, firing events or resetting the tenant changes what every client
    of the tenant sees: a client that may only read (a reporting job, a regulator's user) may
    not. Any write scope of the tenant will do."""
    if principal.scopes.isdisjoint(WRITE_SCOPES):
        raise InsufficientScope("Moving the test clock, firing sample events and resetting the "
                                "sandbox need a client with a write scope (such as "
                                "accounts:write).")
    return principal


sandbox_changer.any_of_scopes = WRITE_SCOPES  # type: ignore[attr-defined]  # for the document


class SignupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200, examples=["Acme Supply Chain Platform"])
    email: str = Field(max_length=320, pattern=patterns.SIMPLE_EMAIL, examples=["dev@acme.example"])
    jwks: dict[str, Any] | None = Field(None, description="Public JWKS for private_key_jwt")


class SignupOut(BaseModel):
    tenant_id: str
    partner_id: str
    client_id: str
    client_secret: str
    scopes: list[str]
    token_endpoint: str
    token_endpoint_auth_methods: list[str]
    seeded: dict[str, Any] = Field(
        description="What the tenant was seeded with, per product (ids, and how to use them: "
                    "`accounts.magic_values`). `egov` says what e-government needs first: the "
                    "portal profile (`PUT /v1/egov/portal`) and, for supervised escrow, a "
                    "regulator: `POST /sandbox/v1/regulators` makes the sandbox's own and issues "
                    "regulator clients (`egov:supervise`)")


@router.post("/signup", summary="Sign up for a seeded sandbox", response_model=SignupOut,
             status_code=201, dependencies=[Depends(rate_limit_public("signup"))])
def sandbox_signup(body: SignupIn, request: Request,
                   session: Session = Depends(get_session)) -> SignupOut:
    partner = create_partner(session, name=body.name, email=str(body.email))
    box = provision_sandbox(session, partner, jwks=body.jwks)
    issuer = request.app.state.settings.issuer.rstrip("/")
    methods = ["client_secret_basic"] + (["private_key_jwt"] if body.jwks else [])
    return SignupOut(tenant_id=box.tenant_id, partner_id=partner.id,
                     client_id=box.issued.client.id, client_secret=box.issued.secret or "",
                     scopes=box.issued.client.scopes.split(), token_endpoint=issuer + "/oauth/token",
                     token_endpoint_auth_methods=methods, seeded=box.seeded)


# The test clock's offset is not whole seconds by design: advancing `to` an instant moves the
# clock by exactly the time to it, fractions of the real clock's second included, so that `now`
# is that instant. The offset is kept as a float and applied as a `timedelta`, which holds
# microseconds: the answer gives it to the microsecond, as the clock applies it.
OFFSET_DECIMALS = 6


class ClockOut(BaseModel):
    now: str = Field(description="The tenant's current time: RFC 3339 in UTC, to the second",
                     examples=["2026-11-23T02:00:00Z"])
    business_date: str = Field(description="Today's business date (YYYY-MM-DD, Asia/Shanghai) "
                                           "on the test clock", examples=["2026-11-23"])
    offset_seconds: float = Field(
        description="How far the test clock is ahead of real time, in seconds: a number with "
                    "up to 6 decimals (microseconds), not always whole, since advancing `to` an "
                    "instant moves the clock by exactly the time to it; 0 on real time",
        examples=[83615.640763])


class AdvanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    seconds: StrictInt | None = Field(None, ge=0, le=3 * 366 * 86400)
    to: Instant | None = Field(None, description="RFC 3339 instant to move to")

    @field_validator("to")
    @classmethod
    def zoned(cls, to: datetime | None) -> datetime | None:
        # Here, not in `one_of`, so that the problem's error names `body.to`.
        if to is not None and to.tzinfo is None:
            raise ValueError("'to' needs a time zone (use Z)")
        return to

    @model_validator(mode="after")
    def one_of(self) -> AdvanceIn:
        if (self.seconds is None) == (self.to is None):
            raise ValueError("give exactly one of 'seconds' or 'to'")
        return self


def _clock_out(session: Session, tenant_id: str) -> ClockOut:
    from gateway.clock import business_date
    from gateway.tenancy import get_tenant

    now = clock_for(session, tenant_id).now()
    return ClockOut(now=to_rfc3339(now), business_date=business_date(now).isoformat(),
                    offset_seconds=round(float(get_tenant(session, tenant_id).clock_offset_seconds),
                                         OFFSET_DECIMALS))


@router.get("/clock", summary="The tenant's test clock", response_model=ClockOut)
def sandbox_clock(principal: Principal = Depends(sandbox_principal),
                  session: Session = Depends(get_session)) -> ClockOut:
    return _clock_out(session, principal.tenant_id)


@router.post("/clock/advance", summary="Advance the test clock (never backwards)",
             response_model=ClockOut, dependencies=[Depends(idempotency())])
def sandbox_clock_advance(body: AdvanceIn, principal: Principal = Depends(sandbox_changer),
                          session: Session = Depends(get_session)) -> ClockOut:
    """Due work (maturities, settlements, scheduled batches, webhook retries) runs on the
    worker's next tick, within about a second."""
    if body.to is not None:
        advance_clock_to(session, principal.tenant_id, body.to)
    else:
        advance_clock(session, principal.tenant_id, float(body.seconds or 0))
    return _clock_out(session, principal.tenant_id)


class SampleEventOut(BaseModel):
    id: str
    type: str
    created_at: Timestamp


@router.post("/events/{event_type}", summary="Fire a sample event to the tenant's webhooks",
             response_model=SampleEventOut, status_code=201, dependencies=[Depends(idempotency())])
def sandbox_fire_event(event_type: str, request: Request,
                       principal: Principal = Depends(sandbox_changer),
                       session: Session = Depends(get_session)) -> SampleEventOut:
    """Any event type the platform delivers to partners; the event is the real one's shape,
    built from the tenant's seeded data, with `"sample": true` added to its `data`."""
    if event_type not in PARTNER_EVENT_TYPES:
        raise ValidationFailed(f"Unknown event type {event_type!r}.", code="invalid_event_type",
                               extra={"known_types": sorted(PARTNER_EVENT_TYPES)})
    now = clock_for(session, principal.tenant_id).now()
    sample = build_sample(session, principal.tenant_id, event_type, now,
                          issuer=str(request.app.state.settings.issuer).rstrip("/"))
    event = publish(session, tenant_id=principal.tenant_id, type=event_type,
                    resource_type=sample.resource_type, resource_id=sample.resource_id,
                    data=sample.data, actor=principal.client_id, at=now)
    return SampleEventOut(id=event.id, type=event.type, created_at=to_rfc3339(now))


class ResetOut(BaseModel):
    deleted_rows: int
    seeded: dict[str, Any]


@router.post("/reset", summary="Restore the sandbox seed", response_model=ResetOut,
             dependencies=[Depends(idempotency())])
def sandbox_reset(principal: Principal = Depends(sandbox_changer),
                  session: Session = Depends(get_session)) -> ResetOut:
    deleted, seeded = reset_sandbox(session, principal.tenant_id)
    return ResetOut(deleted_rows=deleted, seeded=seeded)


def sandbox_egov_writer(principal: Principal = Depends(require_scope("egov:write"))) -> Principal:
    return sandbox_principal(principal)


class RegulatorClientIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, min_length=1, max_length=120, examples=["审批人 张科长"],
                             description="A name for this regulator user's client (default "
                                         "`监管用户 N (regulator user)`)")


class SandboxRegulatorOut(BaseModel):
    regulator: RegulatorOut = Field(
        description="The tenant's sandbox regulator: name its `partner_id` as "
                    "`regulator_partner_id` when opening an escrow scheme. It is recognised for "
                    "every kind of scheme, and for this sandbox tenant's schemes only")
    created: bool = Field(description="Whether this call made the regulator (false: it existed, "
                                      "and this call only issued a new client)")
    client_id: str = Field(description="A new client of the regulator: one regulator user. "
                                       "Approvals count per client, so call again for a second "
                                       "user when a scheme needs two approvals")
    client_secret: str
    client_name: str
    scopes: list[str] = Field(examples=[["egov:supervise"]])
    token_endpoint: str
    token_endpoint_auth_methods: list[str]


@router.post("/regulators", summary="A sandbox regulator and a new regulator client",
             description="Makes the tenant's own sandbox regulator on first use (later calls find "
                         "it) and issues a new client of it each call, with `egov:supervise`: the "
                         "regulator's side of supervised escrow (`/v1/egov/supervision/…`), which "
                         "sign-up's credentials cannot play. Sandbox tenants only; a reset keeps the "
                         "regulator and its clients. Payroll supervision is not offered: a payroll "
                         "regulator's regions span every tenant of its environment.",
             response_model=SandboxRegulatorOut, status_code=201,
             dependencies=[Depends(idempotency())])
def sandbox_regulator(request: Request, body: RegulatorClientIn | None = None,
                      principal: Principal = Depends(sandbox_egov_writer),
                      session: Session = Depends(get_session)) -> SandboxRegulatorOut:
    made = issue_regulator_client(session, principal.tenant_id, actor=principal.client_id,
                                  name=body.name if body is not None else None)
    issuer = request.app.state.settings.issuer.rstrip("/")
    client = made.issued.client
    return SandboxRegulatorOut(
        regulator=RegulatorOut.model_validate(regulator_view(made.recognition)),
        created=made.created, client_id=client.id, client_secret=made.issued.secret or "",
        client_name=client.name, scopes=client.scopes.split(),
        token_endpoint=issuer + "/oauth/token", token_endpoint_auth_methods=["client_secret_basic"])


def setup(app: Any) -> None:
    """Register the worker's watch on the test clocks: due work runs on the worker's next tick
    after a clock moves (`sandbox.clock_watch`)."""
    from sandbox import clock_watch

    clock_watch.register()
