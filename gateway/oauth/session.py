"""The database session of the OAuth request being handled (authlib's hooks take none)."""

from __future__ import annotations

import contextvars

from sqlalchemy.orm import Session

_session: contextvars.ContextVar[Session] = contextvars.ContextVar("oauth_session")


def current_session() -> Session:
    return _session.get()


def bind_session(session: Session) -> contextvars.Token[Session]:
    return _session.set(session)


def unbind_session(token: contextvars.Token[Session]) -> None:
    _session.reset(token)
