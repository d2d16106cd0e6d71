"""Atomic single-use checks that hold across processes.

With Redis configured: `SET key NX EX ttl`. Otherwise: an INSERT into `used_nonces` in its
own committed transaction, where the primary key makes the second insert fail.
"""

from __future__ import annotations

import time

from sqlalchemy import delete, insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.db import Database
from gateway.oauth.models import UsedNonce


class ReplayGuard:
    def __init__(self, database: Database, redis_client: object | None = None) -> None:
        self.database = database
        self.redis = redis_client
        self._inserts = 0

    def first_use(self, key: str, expires_at: int, session: Session | None = None) -> bool:
        """True exactly once per key, in every process, until `expires_at` (epoch seconds).

        Given the request's session, the insert joins its transaction (SQLite allows one
        writer, so a second connection would wait on the request itself); a concurrent
        duplicate then blocks on the primary key until the first commits, and fails.
        """
        ttl = max(1, int(expires_at - time.time()) + 1)
        if self.redis is not None:
            return bool(self.redis.set("quanlian:nonce:" + key, b"1", nx=True, ex=ttl))  # type: ignore[attr-defined]
        if session is not None:
            try:
                with session.begin_nested():
                    session.add(UsedNonce(key=key, expires_at=expires_at))
            except IntegrityError:
                return False
            return True
        try:
            with self.database.engine.begin() as conn:
                conn.execute(insert(UsedNonce).values(key=key, expires_at=expires_at))
        except IntegrityError:
            return False
        self._inserts += 1
        if self._inserts % 1000 == 0:
            self.purge()
        return True

    def purge(self) -> None:
        with self.database.engine.begin() as conn:
            conn.execute(delete(UsedNonce).where(UsedNonce.expires_at < int(time.time())))
