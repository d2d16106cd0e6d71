"""One-time form tokens: a console form that creates something acts once, however often it is
posted (double click, reload, back and resubmit, a retry after a timeout).

Such a form (issue a client, rotate credentials, record a risk event) carries a random
`form_token`. Its first successful post records the token's digest with where its result is
shown, and answers with a redirect there (Post/Redirect/Get); a later post of the same form
finds the record and is sent to that first result without acting again. A failed post rolls
back with its transaction, so the corrected form can be sent with the same token.

A secret to show once (a client secret) waits on the record, encrypted, until its result page
shows it, and for at most SECRET_TTL; the page then clears it, so a reload does not show it
again. Records go when no session that could post their form is left.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from gateway import clock as clock_module
from gateway.db import advisory_lock
from gateway.errors import ValidationFailed
from gateway.ids import new_id
from partners.console.session import CSRFFailed
from partners.models import ConsoleFormSubmission, Operator
from partners.settings import get_partner_settings

SECRET_TTL = timedelta(minutes=10)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def earlier_result(session: Session, operator: Operator, token: str) -> str | None:
    """Where the first post of this form was answered, or None when this post is the first.

    Holds the token until the transaction ends (PostgreSQL; SQLite serializes writers), so
    that two posts at once act once."""
    if not token:
        raise ValidationFailed("The form is incomplete: reload it and submit it again.",
                               code="form_token_missing")
    digest = _digest(token)
    advisory_lock(session, "console-form:" + digest)
    row = session.scalars(select(ConsoleFormSubmission).where(
        ConsoleFormSubmission.token_sha256 == digest)).first()
    if row is None:
        return None
    if row.operator_id != operator.id:  # another operator's form: never theirs to replay
        raise CSRFFailed("This form was already used; reload it and retry.")
    return row.result_url


def record(session: Session, operator: Operator, token: str, result_url: str,
           secret: str | None = None) -> ConsoleFormSubmission:
    """Record the first post of a form (after its work is done) and what to show once."""
    now = clock_module.utcnow()
    # Housekeeping: unseen secrets expire; records outlive every session that could post again.
    session.execute(update(ConsoleFormSubmission).where(
        ConsoleFormSubmission.created_at < now - SECRET_TTL,
        ConsoleFormSubmission.secret.is_not(None)).values(secret=None))
    keep = timedelta(hours=get_partner_settings().console_session_hours)
    session.execute(delete(ConsoleFormSubmission).where(ConsoleFormSubmission.created_at < now - keep))
    row = ConsoleFormSubmission(id=new_id("cform"), token_sha256=_digest(token),
                                operator_id=operator.id, result_url=result_url, secret=secret,
                                created_at=now)
    session.add(row)
    session.flush()
    return row


def take_secret(session: Session, operator: Operator, submission_id: str) -> str | None:
    """The secret a submission holds, once: cleared as it is read (only by its operator)."""
    row = session.get(ConsoleFormSubmission, submission_id)
    if row is None or row.operator_id != operator.id or row.secret is None:
        return None
    secret = row.secret if row.created_at > clock_module.utcnow() - SECRET_TTL else None
    row.secret = None
    session.flush()
    return secret
