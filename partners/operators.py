"""Operators (the bank's operations staff): passwords, lockout, TOTP and console sessions.

Passwords are hashed with Argon2id (by default RFC 9106's second recommended option:
64 MiB, 3 passes, 4 lanes; QUANLIAN_PASSWORD_HASH_MEMORY_KIB / _TIME_COST tune it, and a hash
made with other parameters is upgraded at the next successful login). After `login_max_failures` consecutive failures an operator is locked for
`login_lockout_minutes`; while locked even the right password is refused, and the answer
never says whether the user name exists: a locked account, a wrong password and an unknown name
get the same answer (the console shows one message for all three). TOTP (RFC 6238) is optional
per operator; a code is accepted once (its time step must be newer than the last one used).
Resetting a password or TOTP, like disabling, ends the operator's console sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.errors import ValidationFailed
from gateway.ids import new_id
from partners.errors import (
    InvalidRoles,
    InvalidTotpCode,
    InvalidUsername,
    OperatorExists,
    OperatorNotFound,
    RoleRequired,
    TotpSetupExpired,
    WeakPassword,
)
from partners.models import Operator, OperatorSession
from partners.operations import publish_operations_event
from partners.settings import PartnerSettings, get_partner_settings
from partners.workflow import ROLES, Actor


@lru_cache(maxsize=4)
def _hashing(time_cost: int, memory_kib: int) -> tuple[PasswordHasher, str]:
    hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=4)
    # Verified against when the user name does not exist, so that timing does not tell.
    return hasher, hasher.hash(secrets.token_urlsafe(16))


def _hasher() -> PasswordHasher:
    s = get_partner_settings()
    return _hashing(s.password_hash_time_cost, s.password_hash_memory_kib)[0]


def _dummy_hash() -> str:
    s = get_partner_settings()
    return _hashing(s.password_hash_time_cost, s.password_hash_memory_kib)[1]
_USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")

# What each role may do besides the workflow transitions (see partners.workflow.TRANSITIONS).
PERMISSIONS: dict[str, frozenset[str]] = {
    "read": frozenset(ROLES),
    "clients.manage": frozenset({"approver", "admin"}),
    "webhooks.manage": frozenset({"approver", "admin"}),
    "operators.manage": frozenset({"admin"}),
    # Granting, freezing and renewing credit facilities, deciding financing applications and
    # recording risk events: the checker's decisions, as on a partner's application.
    "chain_credit.decide": frozenset({"approver", "admin"}),
}


def actor_of(operator: Operator) -> Actor:
    return Actor(id=operator.id, roles=frozenset(operator.roles), name=operator.display_name)


def can(operator: Operator, permission: str) -> bool:
    return bool(set(operator.roles) & PERMISSIONS[permission])


def require(operator: Operator, permission: str) -> None:
    """Raise RoleRequired unless one of the operator's roles grants `permission`."""
    if not can(operator, permission):
        raise RoleRequired(f"This needs one of the roles: "
                           f"{', '.join(sorted(PERMISSIONS[permission]))}.")


def _check_password(password: str, username: str) -> None:
    if len(password) < 12:
        raise WeakPassword("Passwords have at least 12 characters.")
    if len(password) > 256:
        raise WeakPassword("Passwords have at most 256 characters.")
    if username.lower() in password.lower():
        raise WeakPassword("The password must not contain the user name.")
    if len(set(password)) < 5:
        raise WeakPassword("The password repeats too few different characters.")


def _check_roles(roles: list[str]) -> list[str]:
    unknown = [r for r in roles if r not in ROLES]
    if unknown or not roles:
        raise InvalidRoles(f"Choose at least one role of: {', '.join(ROLES)}.")
    return sorted(set(roles))


def operator_view(operator: Operator) -> dict[str, Any]:
    return {"id": operator.id, "username": operator.username, "roles": list(operator.roles),
            "status": operator.status, "totp_enabled": operator.totp_enabled}


def create_operator(session: Session, *, username: str, display_name: str, roles: list[str],
                    password: str, actor: str = "cli") -> Operator:
    """Create an operator (the CLI bootstraps the first admin; admins add the others)."""
    username = username.strip().lower()
    if not _USERNAME.match(username):
        raise InvalidUsername("User names are 2-64 characters: a-z, 0-9, '.', '_', '-', "
                              "starting with a letter or digit.")
    roles = _check_roles(roles)
    _check_password(password, username)
    if session.scalars(select(Operator).where(Operator.username == username)).first():
        raise OperatorExists(f"The user name {username} is taken.")
    operator = Operator(id=new_id("opr"), username=username,
                        display_name=display_name.strip() or username, roles=roles,
                        password_hash=_hasher().hash(password), totp_secret=None,
                        totp_pending_until=None, totp_enabled=False, totp_last_step=0, failed_logins=0,
                        locked_until=None, status="active", created_at=clock_module.utcnow(),
                        last_login_at=None)
    session.add(operator)
    session.flush()
    publish_operations_event(session, type="operator.created", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator), actor=actor)
    return operator


def get_operator(session: Session, operator_id: str) -> Operator:
    operator = session.get(Operator, operator_id)
    if operator is None:
        raise OperatorNotFound(f"No operator {operator_id}.")
    return operator


def find_operator(session: Session, username: str) -> Operator | None:
    return session.scalars(select(Operator).where(
        Operator.username == username.strip().lower())).first()


def list_operators(session: Session) -> list[Operator]:
    return list(session.scalars(select(Operator).order_by(Operator.username)))


def _end_sessions(session: Session, operator: Operator) -> None:
    """Log the operator out everywhere: after a reset the old credentials' sessions must not
    outlive them (the account may have been taken over)."""
    now = clock_module.utcnow()
    for row in session.scalars(select(OperatorSession).where(
            OperatorSession.operator_id == operator.id, OperatorSession.ended_at.is_(None))):
        row.ended_at = now


def set_password(session: Session, operator: Operator, password: str, *, actor: str) -> None:
    """Set a new password (and unlock the operator); ends its console sessions."""
    _check_password(password, operator.username)
    operator.password_hash = _hasher().hash(password)
    operator.failed_logins = 0
    operator.locked_until = None
    _end_sessions(session, operator)
    session.flush()
    publish_operations_event(session, type="operator.password_changed", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator), actor=actor)


def set_status(session: Session, operator: Operator, status: str, *, actor: str) -> None:
    """Disable or re-enable an operator; disabling ends its sessions."""
    if status not in ("active", "disabled"):
        raise ValidationFailed("status is active or disabled", code="invalid_status")
    operator.status = status
    operator.failed_logins = 0
    operator.locked_until = None
    if status == "disabled":
        _end_sessions(session, operator)
    session.flush()
    publish_operations_event(session, type=f"operator.{'enabled' if status == 'active' else 'disabled'}",
                             resource_type="operator", resource_id=operator.id,
                             data=operator_view(operator), actor=actor)


@dataclass
class LoginResult:
    operator: Operator | None
    failure: str | None = None  # bad_credentials | locked | disabled


def _verify_password(hash_: str, password: str) -> bool:
    try:
        return _hasher().verify(hash_, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _match_totp(operator: Operator, code: str, now: datetime) -> int | None:
    """The time step a code belongs to (now, or one step either side), or None."""
    if not operator.totp_secret or not re.fullmatch(r"\d{6}", code or ""):
        return None
    totp = pyotp.TOTP(operator.totp_secret)
    step = totp.timecode(now)
    for offset in (0, -1, 1):
        if hmac.compare_digest(totp.generate_otp(step + offset), code):
            return step + offset
    return None


def attempt_login(session: Session, username: str, password: str, totp_code: str | None = None,
                  settings: PartnerSettings | None = None) -> LoginResult:
    """Check a login. Counts failures and locks; the caller commits even when it failed."""
    settings = settings or get_partner_settings()
    now = clock_module.utcnow()
    operator = session.scalars(select(Operator).where(
        Operator.username == username.strip().lower()).with_for_update()).first()
    if operator is None:
        _verify_password(_dummy_hash(), password)
        return LoginResult(None, "bad_credentials")
    if operator.locked_until is not None and operator.locked_until > now:
        _verify_password(_dummy_hash(), password)
        return LoginResult(None, "locked")
    ok = _verify_password(operator.password_hash, password)
    step = None
    if ok and operator.totp_enabled:
        # A missing code is a failure like a wrong one: the answer must not confirm that
        # the password was right.
        step = _match_totp(operator, totp_code or "", now)
        ok = step is not None and step > operator.totp_last_step
    if not ok:
        return _fail(session, operator, now, settings, "bad_credentials")
    if operator.status != "active":
        return LoginResult(None, "disabled")
    if step is not None:
        operator.totp_last_step = step
    if _hasher().check_needs_rehash(operator.password_hash):
        operator.password_hash = _hasher().hash(password)
    operator.failed_logins = 0
    operator.locked_until = None
    operator.last_login_at = now
    session.flush()
    return LoginResult(operator)


def _fail(session: Session, operator: Operator, now: datetime, settings: PartnerSettings,
          failure: str) -> LoginResult:
    operator.failed_logins += 1
    if operator.failed_logins >= settings.login_max_failures:
        operator.locked_until = now + timedelta(minutes=settings.login_lockout_minutes)
        operator.failed_logins = 0
        session.flush()
        publish_operations_event(session, type="operator.locked", resource_type="operator",
                                 resource_id=operator.id,
                                 data=operator_view(operator)
                                 | {"locked_until": clock_module.to_rfc3339(operator.locked_until)},
                                 actor="system")
        return LoginResult(None, "locked")
    session.flush()
    return LoginResult(None, failure)


def unlock(session: Session, operator: Operator, *, actor: str) -> None:
    operator.failed_logins = 0
    operator.locked_until = None
    session.flush()
    publish_operations_event(session, type="operator.unlocked", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator), actor=actor)


# --- TOTP enrolment -----------------------------------------------------------------------

# How long a TOTP set-up may wait for its first code: the secret shown is kept until then, so
# that a mistyped code does not make the operator scan a new one.
TOTP_SETUP_MINUTES = 30


def pending_totp(operator: Operator) -> str | None:
    """The secret of a TOTP set-up in progress (not yet required at login), if not expired."""
    if operator.totp_enabled or not operator.totp_secret or operator.totp_pending_until is None:
        return None
    return operator.totp_secret if operator.totp_pending_until > clock_module.utcnow() else None


def begin_totp(session: Session, operator: Operator) -> str:
    """Start setting up TOTP: a new secret, or the one of a set-up still in progress."""
    if operator.totp_enabled:
        raise OperatorExists("TOTP is already enabled; disable it first.", code="totp_enabled")
    pending = pending_totp(operator)
    if pending is not None:
        return pending
    operator.totp_secret = pyotp.random_base32()
    operator.totp_pending_until = clock_module.utcnow() + timedelta(minutes=TOTP_SETUP_MINUTES)
    session.flush()
    return operator.totp_secret


def totp_uri(operator: Operator, issuer: str = "Quanlian console") -> str:
    return pyotp.TOTP(operator.totp_secret or "").provisioning_uri(name=operator.username,
                                                                   issuer_name=issuer)


def confirm_totp(session: Session, operator: Operator, code: str) -> None:
    """Require TOTP from now on, once the operator proves the authenticator works (a second
    confirmation, e.g. a form sent twice, changes nothing)."""
    if operator.totp_enabled:
        return
    if pending_totp(operator) is None:
        raise TotpSetupExpired("The set-up expired: start again and scan the new code.")
    now = clock_module.utcnow()
    step = _match_totp(operator, code, now)
    if step is None:
        raise InvalidTotpCode("That code does not match; check the authenticator's clock and "
                              "enter the code it shows now.")
    operator.totp_enabled = True
    operator.totp_pending_until = None
    operator.totp_last_step = step
    session.flush()
    publish_operations_event(session, type="operator.totp_enabled", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator),
                             actor=operator.id)


def _clear_totp(operator: Operator) -> None:
    operator.totp_enabled = False
    operator.totp_secret = None
    operator.totp_pending_until = None
    operator.totp_last_step = 0


def disable_totp(session: Session, operator: Operator, *, actor: str) -> None:
    _clear_totp(operator)
    session.flush()
    publish_operations_event(session, type="operator.totp_disabled", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator), actor=actor)


def reset_totp(session: Session, operator: Operator, *, actor: str) -> None:
    """An administrator removes a lost authenticator: the operator logs in with the password
    alone and sets TOTP up again; the sessions opened with the old device end."""
    _clear_totp(operator)
    _end_sessions(session, operator)
    session.flush()
    publish_operations_event(session, type="operator.totp_reset", resource_type="operator",
                             resource_id=operator.id, data=operator_view(operator), actor=actor)


# --- console sessions ---------------------------------------------------------------------

def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session: Session, operator: Operator,
                  settings: PartnerSettings | None = None) -> tuple[str, OperatorSession]:
    """A new console session; returns the cookie token (only its hash is stored)."""
    settings = settings or get_partner_settings()
    now = clock_module.utcnow()
    token = secrets.token_urlsafe(32)
    row = OperatorSession(id=new_id("osess"), token_sha256=_token_hash(token),
                          operator_id=operator.id, csrf_token=secrets.token_urlsafe(32),
                          created_at=now, last_seen_at=now,
                          expires_at=now + timedelta(hours=settings.console_session_hours),
                          ended_at=None)
    session.add(row)
    session.flush()
    return token, row


def load_session(session: Session, token: str | None,
                 settings: PartnerSettings | None = None) -> tuple[OperatorSession, Operator] | None:
    """The live session and operator behind a cookie token, or None (expired, idle, ended)."""
    if not token:
        return None
    settings = settings or get_partner_settings()
    now = clock_module.utcnow()
    row = session.scalars(select(OperatorSession).where(
        OperatorSession.token_sha256 == _token_hash(token))).first()
    if row is None or row.ended_at is not None or row.expires_at <= now:
        return None
    if row.last_seen_at + timedelta(minutes=settings.console_idle_minutes) <= now:
        row.ended_at = now
        session.flush()
        return None
    operator = session.get(Operator, row.operator_id)
    if operator is None or operator.status != "active":
        return None
    if now - row.last_seen_at > timedelta(seconds=60):
        row.last_seen_at = now
        session.flush()
    return row, operator


def end_session(session: Session, token: str | None) -> None:
    if not token:
        return
    row = session.scalars(select(OperatorSession).where(
        OperatorSession.token_sha256 == _token_hash(token))).first()
    if row is not None and row.ended_at is None:
        row.ended_at = clock_module.utcnow()
        session.flush()
