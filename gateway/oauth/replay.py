"""Atomic single-use checks that hold across processes.

With Redis configured: `SET key NX EX ttl`; while that Redis cannot be reached the check is a
503 `service_unavailable` (gateway/redis.py), never a fall-back to the database or to memory,
which other processes would not see. Otherwise: an INSERT into `used_nonces`, where
the primary key makes the second insert of a key do nothing. Concurrent checks share one
transaction (group commit), written on the driver: on PostgreSQL one
`INSERT .. SELECT FROM unnest(..) ON CONFLICT DO NOTHING RETURNING key` for all of them; on
SQLite, which holds its one writer for the transaction, one `INSERT .. ON CONFLICT DO NOTHING`
per key, its row count telling whether it was new. So that a busy token endpoint or a stream of DPoP proofs costs one commit per batch
rather than one per request, and on SQLite never queues every request behind the writer.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import delete

from gateway.batching import GroupCommit
from gateway.bulk import driver_insert
from gateway.db import Database
from gateway.oauth.models import UsedNonce
from gateway.redis import Outage, redis_errors

_REDIS_ERRORS = redis_errors()

PURGE_EVERY = 1000
# One statement for the whole batch, the keys stored by it returned.
_POSTGRESQL_INSERT = ("INSERT INTO used_nonces (key, expires_at) "
                      "SELECT * FROM unnest(%s::varchar[], %s::bigint[]) "
                      "ON CONFLICT DO NOTHING RETURNING key")


class ReplayGuard:
    def __init__(self, database: Database, redis_client: object | None = None,
                 outage: Outage | None = None) -> None:
        self.database = database
        self.redis = redis_client
        self.outage = outage or Outage()
        self._inserts = 0
        self._batches: GroupCommit[tuple[str, int], bool] = GroupCommit(self._first_uses)

    def first_use(self, key: str, expires_at: int) -> bool:
        """True exactly once per key, in every process, until `expires_at` (epoch seconds).

        Committed before it returns, in a transaction of its own: a key once used stays used
        whatever becomes of the request that used it. Call it before the request's own
        transaction writes (on SQLite that transaction would hold the one writer's place)."""
        ttl = max(1, int(expires_at - time.time()) + 1)
        if self.redis is not None:
            self.outage.check()
            try:
                return bool(self.redis.set("quanlian:nonce:" + key, b"1", nx=True, ex=ttl))  # type: ignore[attr-defined]
            except _REDIS_ERRORS as exc:
                self.outage.failed(exc)  # fail closed: a 503, the value not taken as new
        return self._batches.submit((key, expires_at))

    def _first_uses(self, items: list[tuple[str, int]]) -> Sequence[bool]:
        """One transaction for a batch: True for each key stored by it (the first of equal
        keys within the batch), False for a key already used."""
        rows: dict[str, int] = {}
        for key, expires_at in items:
            rows.setdefault(key, expires_at)
        # On the driver: a token or a DPoP call makes one of these, and SQLAlchemy's statement
        # machinery cost more than the database's work.
        # On PostgreSQL one statement, committed by itself (one round trip); on SQLite one
        # transaction holding the writer.
        with self.database.driver_statement() as cursor:
            if self.database.is_sqlite:
                # The transaction holds SQLite's one writer: each row's count says if it was new.
                dialect = self.database.engine.dialect
                stored = {key for key, expires_at in rows.items()
                          if driver_insert(dialect, cursor, UsedNonce.__table__,
                                           [{"key": key, "expires_at": expires_at}],
                                           skip_conflicts=True)}
            else:
                cursor.execute(_POSTGRESQL_INSERT, (list(rows), list(rows.values())))
                stored = {key for (key,) in cursor.fetchall()}
        results = []
        for key, _ in items:
            results.append(key in stored)
            stored.discard(key)  # a second equal key in the same batch is a replay
        self._inserts += len(rows)
        if self._inserts >= PURGE_EVERY:
            self._inserts = 0
            self.purge()
        return results

    def purge(self) -> None:
        with self.database.engine.begin() as conn:
            conn.execute(delete(UsedNonce).where(UsedNonce.expires_at < int(time.time())))
