"""The database session of the OAuth request being handled (authlib's hooks take none).

The introspection and revocation endpoints bind the request's session (a revocation is
written in the request's transaction). The token endpoint binds none: it only reads. At
every endpoint the assertion's single-use `jti` goes through the replay guard's group
commit, never the request's transaction: it stays used even when the request then fails
and rolls back, and on SQLite no request holds the writer's place while a signature is
being checked.
"""

from __future__ import annotations

import contextvars

from sqlalchemy.orm import Session

_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar("oauth_session",
                                                                       default=None)


def current_session() -> Session:
    session = _session.get()
    if session is None:
        raise RuntimeError("no session is bound to this OAuth request")
    return session


def bind_session(session: Session) -> contextvars.Token[Session | None]:
    return _session.set(session)


def unbind_session(token: contextvars.Token[Session | None]) -> None:
    _session.reset(token)
