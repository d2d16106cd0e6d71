"""Partners and tenants: who owns data, and which clock a tenant lives on.

A partner (an ecosystem platform) has up to two tenants, one per environment. Every business
row carries its tenant id, so sandbox and production never see each other's data and sandbox
tenants never see each other's. A sandbox tenant's test clock is an offset on the base clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import Float, ForeignKey, String, UniqueConstraint, event, select
from sqlalchemy.orm import Mapped, Session, SessionTransaction, mapped_column

from gateway import clock as clock_module
from gateway.bulk import session_rows
from gateway.context import current_state
from gateway.db import Base
from gateway.errors import Conflict, NotFound, ValidationFailed
from gateway.ids import deterministic_ids, new_id

Environment = Literal["sandbox", "production"]

# Partner states where its credentials work (the onboarding workflow owns the transitions).
TOKEN_STATES = frozenset({"submitted", "in_review", "approved", "active", "rejected"})
PRODUCTION_STATES = frozenset({"active"})


def partner_states(environment: str) -> frozenset[str]:
    """The partner states in which a client of this environment gets and uses tokens."""
    return PRODUCTION_STATES if environment == "production" else TOKEN_STATES


class Partner(Base):
    __tablename__ = "partners"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    uscc: Mapped[str | None] = mapped_column(String(18), index=True)
    partner_type: Mapped[str] = mapped_column(String(40), default="software_vendor")
    email: Mapped[str | None] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default="submitted")
    is_operations: Mapped[bool] = mapped_column(default=False)
    rate_plan: Mapped[str] = mapped_column(String(20), default="standard")
    created_at: Mapped[datetime]


class Tenant(Base):
    __tablename__ = "tenants"
    __table_args__ = (UniqueConstraint("partner_id", "environment"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    partner_id: Mapped[str] = mapped_column(ForeignKey("partners.id"), index=True)
    environment: Mapped[str] = mapped_column(String(12))
    clock_offset_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    client_id: str
    partner_id: str
    tenant_id: str
    environment: str
    scopes: frozenset[str]
    token_id: str = ""
    expires_at: int = 0
    is_operations: bool = False
    rate_plan: str = "standard"

    @property
    def is_sandbox(self) -> bool:
        return self.environment == "sandbox"


def create_partner(session: Session, *, name: str, email: str | None = None,
                   uscc: str | None = None, partner_type: str = "software_vendor",
                   status: str = "submitted", is_operations: bool = False) -> Partner:
    """Create a partner row (the onboarding workflow decides its later states)."""
    partner = Partner(id=new_id("ptn"), name=name, email=email, uscc=uscc,
                      partner_type=partner_type, status=status, is_operations=is_operations,
                      created_at=clock_module.utcnow())
    session.add(partner)
    session.flush()
    return partner


def ensure_tenant(session: Session, partner_id: str, environment: str) -> Tenant:
    """The partner's tenant in an environment, created on first use."""
    if environment not in ("sandbox", "production"):
        raise ValidationFailed("environment must be sandbox or production",
                               code="invalid_environment")
    tenant = session.scalars(select(Tenant).where(Tenant.partner_id == partner_id,
                                                  Tenant.environment == environment)).first()
    if tenant is None:
        tenant = Tenant(id=new_id("ten"), partner_id=partner_id, environment=environment,
                        clock_offset_seconds=0.0, created_at=clock_module.utcnow())
        session.add(tenant)
        session.flush()
    return tenant


# A regulator partner the sandbox makes for one sandbox tenant (`POST /sandbox/v1/regulators`),
# so that a developer can try supervision with regulator credentials of their own.
SANDBOX_REGULATOR = "sandbox_regulator"
SANDBOX_REGULATOR_NAME = "沙箱监管部门 (sandbox regulator)"


def _created_ms(tenant: Tenant) -> int:
    created = tenant.created_at
    if created.tzinfo is None:  # SQLite gives back naive UTC
        created = created.replace(tzinfo=UTC)
    return int(created.timestamp() * 1000)


def sandbox_regulator_id(session: Session, tenant_id: str) -> str:
    """The partner id of a sandbox tenant's own regulator: derived from the tenant (its id and
    creation time), so every process finds the same one, a reset keeps it, and no other tenant
    has it. The row exists once the sandbox made it (`ensure_sandbox_regulator`)."""
    tenant = get_tenant(session, tenant_id)
    with deterministic_ids(f"sandbox-regulator:{tenant_id}", _created_ms(tenant),
                           frozenset({"ptn"})):
        return new_id("ptn")


def ensure_sandbox_regulator(session: Session, tenant_id: str) -> tuple[Partner, bool]:
    """The sandbox tenant's own regulator partner, created on first use; also whether it is new.
    The caller holds the tenant's row locked, so two first uses cannot both create it."""
    if get_tenant(session, tenant_id).environment != "sandbox":
        raise Conflict("Only a sandbox tenant has a sandbox regulator.", code="not_sandbox")
    partner_id = sandbox_regulator_id(session, tenant_id)
    partner = session.get(Partner, partner_id)
    if partner is not None:
        return partner, False
    # Its tokens work as a sandbox sign-up's do (`TOKEN_STATES`). It never applied, so it has no
    # production credentials, and even with some it would serve no other tenant
    # (`regulator_serves`).
    partner = Partner(id=partner_id, name=SANDBOX_REGULATOR_NAME, uscc=None,
                      partner_type=SANDBOX_REGULATOR, email=None, status="submitted",
                      is_operations=False, created_at=clock_module.utcnow())
    session.add(partner)
    session.flush()
    return partner, True


def regulator_serves(session: Session, partner_id: str, tenant_id: str) -> bool:
    """Whether a regulator partner may supervise this tenant's business at all. A sandbox
    regulator serves only the sandbox tenant it was made for; any other regulator serves every
    tenant (what it supervises there is the product's own recognition: kinds, regions)."""
    partner = session.get(Partner, partner_id)
    if partner is None:
        return False
    if partner.partner_type != SANDBOX_REGULATOR:
        return True
    return partner_id == sandbox_regulator_id(session, tenant_id)


_HELD = "held_tenants"


def _tenant(session: Session, tenant_id: str) -> Tenant | None:
    """The tenant's row, read once per transaction. The session's identity map holds objects
    weakly: the row read for a tenant's clock was let go before the same call asked for the
    tenant again, and read a second time. A strong reference for the transaction's life
    (dropped when it ends: `_forget_tenants`) keeps one read per transaction."""
    tenant = session.get(Tenant, tenant_id)
    if tenant is not None:
        session.info.setdefault(_HELD, {})[tenant_id] = tenant
    return tenant


@event.listens_for(Session, "after_transaction_end")
def _forget_tenants(session: Session, transaction: SessionTransaction) -> None:
    # When the outermost transaction ends (a flush's or a savepoint's inner one is not the
    # end): the next transaction reads afresh, as another process may have moved a test clock.
    if transaction.parent is None:
        session.info.pop(_HELD, None)
        session.info.pop(_FACTS, None)


def get_tenant(session: Session, tenant_id: str) -> Tenant:
    tenant = _tenant(session, tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.", code="tenant_not_found")
    return tenant


@dataclass(frozen=True, slots=True)
class _Facts:
    environment: str
    clock_offset_seconds: float


_FACTS = "tenant_facts"


def remember_facts(st: dict[str, Any], tenant_id: str, environment: str,
                   clock_offset_seconds: float | None) -> None:
    """Keep, in a request's state, the facts of its caller's tenant that the authentication
    read with the caller's status: the request's transactions start from them (`_facts`)."""
    st[_FACTS] = {tenant_id: _Facts(str(environment), float(clock_offset_seconds or 0.0))}


def _facts(session: Session, tenant_id: str) -> _Facts | None:
    """What nearly every business call asks of its tenant (its environment, its test clock),
    read once per transaction on the driver: a fraction of an ORM read's cost. A transaction
    of a request starts from what its authentication read (`remember_facts`), as of the
    request's arrival. The test clock is moved only here (`advance_clock`, `reset_clock`),
    which forget what was read, the request's too."""
    held = session.info.get(_FACTS)
    if held is None:
        held = session.info[_FACTS] = dict((current_state() or {}).get(_FACTS, ()))
    facts = held.get(tenant_id)
    if facts is None:
        rows = session_rows(session, "SELECT environment, clock_offset_seconds FROM tenants "
                                     "WHERE id = :id", {"id": tenant_id})
        if not rows:
            return None
        facts = held[tenant_id] = _Facts(str(rows[0][0]), float(rows[0][1] or 0.0))
    return facts


def note_facts(session: Session, tenant: Tenant) -> None:
    """Keep the facts of a tenant row the caller read anyway (with a join), so that
    `is_sandbox` and `clock_for` in the same transaction need no read of their own."""
    session.info.setdefault(_FACTS, {})[tenant.id] = _Facts(
        str(tenant.environment), float(tenant.clock_offset_seconds or 0.0))


def is_sandbox(session: Session, tenant_id: str) -> bool:
    facts = _facts(session, tenant_id)
    if facts is None:
        raise NotFound("No such tenant.", code="tenant_not_found")
    return facts.environment == "sandbox"


def clock_for(session: Session, tenant_id: str) -> clock_module.Clock:
    """The clock a tenant's business rules run on (its sandbox test clock, or real time)."""
    facts = _facts(session, tenant_id)
    offset = facts.clock_offset_seconds if facts is not None else 0.0
    if not offset:
        return clock_module.base_clock()
    return clock_module.OffsetClock(clock_module.base_clock(), offset)


def _clock_moved(session: Session, tenant_id: str) -> None:
    session.flush()
    session.info.get(_FACTS, {}).pop(tenant_id, None)
    (current_state() or {}).pop(_FACTS, None)


def _locked_test_clock(session: Session, tenant_id: str) -> Tenant:
    """The sandbox tenant, its row read afresh and locked: moves of one test clock apply one
    after another, each from where the last one left it (read unlocked, two concurrent moves
    both started from the same offset and the last write won, even moving the clock back)."""
    tenant = get_tenant(session, tenant_id)
    session.refresh(tenant, with_for_update=True)
    if tenant.environment != "sandbox":
        raise Conflict("Only a sandbox tenant has a test clock.", code="not_sandbox")
    return tenant


def _move_clock(session: Session, tenant: Tenant, offset_seconds: float) -> clock_module.Clock:
    tenant.clock_offset_seconds = offset_seconds
    _clock_moved(session, tenant.id)
    return clock_for(session, tenant.id)


def advance_clock(session: Session, tenant_id: str, seconds: float) -> clock_module.Clock:
    """Move a sandbox tenant's test clock forward (never backwards)."""
    if seconds < 0:
        raise ValidationFailed("The test clock never moves backwards.", code="clock_backwards")
    tenant = _locked_test_clock(session, tenant_id)
    return _move_clock(session, tenant, float(tenant.clock_offset_seconds) + float(seconds))


def advance_clock_to(session: Session, tenant_id: str, when: datetime) -> clock_module.Clock:
    """Move a sandbox tenant's test clock to an instant (refused if that is in its past)."""
    tenant = _locked_test_clock(session, tenant_id)
    now = clock_module.OffsetClock(clock_module.base_clock(),
                                   float(tenant.clock_offset_seconds)).now()
    seconds = (when - now).total_seconds()
    if seconds < 0:
        raise ValidationFailed("The test clock never moves backwards.", code="clock_backwards")
    return _move_clock(session, tenant, float(tenant.clock_offset_seconds) + seconds)


def reset_clock(session: Session, tenant_id: str) -> None:
    """Put a sandbox tenant's test clock back on real time (used by the sandbox reset)."""
    get_tenant(session, tenant_id).clock_offset_seconds = 0.0
    _clock_moved(session, tenant_id)
