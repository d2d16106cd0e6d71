"""The optional Redis connection (rate limits, single-use values) shared by a process, and what
a call answers while that Redis cannot be reached.

With QUANLIAN_REDIS_URL set, Redis holds the rate-limit counters and the single-use values
(client assertion and DPoP `jti`s) of every process. While it cannot be reached the platform
fails closed: a call that needs it is a 503 `service_unavailable` with `Retry-After: 1`, with
nothing changed, never a fall-back to per-process memory (which would let a replayed proof
through in another process) and never a 500. Every client has short, bounded timeouts and one
retry, so a hung Redis costs a call at most about a second; after a failure each process
answers the 503 at once, without trying Redis, for `HOLD_SECONDS` (one log line a failure,
no traceback). `/readyz` pings it (`ping`), so a load balancer takes the instance out.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any, NoReturn

from gateway.errors import Problem, ServiceUnavailable

log = logging.getLogger("quanlian.redis")

CONNECT_TIMEOUT = 0.5   # seconds to open a connection
SOCKET_TIMEOUT = 0.5    # seconds to wait for a reply (our commands take well under 1 ms)
RETRIES = 1             # one more try on a fresh connection (a fail-over dropped the pooled one)
HOLD_SECONDS = 1.0      # after a failure, answer 503 without trying Redis for this long
READY_TIMEOUT = 0.5     # /readyz's ping: one try, this long at most


def client_options(*, timeout: float = SOCKET_TIMEOUT, retries: int = RETRIES) -> dict[str, Any]:
    """Keyword arguments for `redis.Redis` (and `limits`' Redis storage, which passes them on):
    bounded timeouts and retries. redis-py's default is ten retries with back-off, which made a
    hung Redis hold a request for tens of seconds."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return {"socket_connect_timeout": min(CONNECT_TIMEOUT, timeout), "socket_timeout": timeout,
            "retry": Retry(NoBackoff(), retries)}


@lru_cache(maxsize=8)
def redis_client(url: str | None) -> Any:
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, **client_options())


@lru_cache(maxsize=8)
def _readiness_client(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, **client_options(timeout=READY_TIMEOUT, retries=0))


def ping(url: str) -> bool:
    """True if the Redis at `url` answers within READY_TIMEOUT (for /readyz)."""
    try:
        return bool(_readiness_client(url).ping())
    except Exception as exc:  # any failure means not ready; say which once a probe
        log.warning("Redis readiness check failed: %s: %s", exc.__class__.__name__, exc)
        return False


def is_outage(exc: BaseException) -> bool:
    """True for an error that says Redis cannot serve now (refused, lost or timed-out
    connection, a replica after a fail-over, loading, out of memory), whether raised by
    redis-py or wrapped by `limits` (`StorageError`); False for anything else (a bug)."""
    from limits.errors import StorageError
    from redis import exceptions as rx

    if isinstance(exc, StorageError):
        exc = exc.storage_error
    return isinstance(exc, rx.ConnectionError | rx.TimeoutError | rx.ReadOnlyError
                      | rx.ClusterDownError | rx.TryAgainError | rx.OutOfMemoryError)


def unavailable() -> Problem:
    return ServiceUnavailable("A service the platform depends on is unavailable; nothing "
                              "changed, retry.", headers={"Retry-After": "1"})


def redis_problem(exc: BaseException) -> Problem | None:
    """The 503 for a Redis outage; None for any other error (a bug stays a 500)."""
    return unavailable() if is_outage(exc) else None


class Outage:
    """One Redis's state in this process: after a failure, calls fail fast for HOLD_SECONDS."""

    def __init__(self) -> None:
        self.until = 0.0

    def check(self) -> None:
        """Raise the 503 at once while Redis was found unreachable less than HOLD_SECONDS ago."""
        if self.until and time.monotonic() < self.until:
            raise unavailable()

    def failed(self, exc: BaseException) -> NoReturn:
        """Called with an error a Redis call raised: raises the 503 for an outage (and holds
        off further calls), or `exc` itself for anything else."""
        if not is_outage(exc):
            raise exc
        cause = getattr(exc, "storage_error", exc)
        self.until = time.monotonic() + HOLD_SECONDS
        log.warning("Redis unavailable (%s: %s); answering 503 service_unavailable",
                    cause.__class__.__name__, cause)
        raise unavailable() from None


def redis_outage(url: str | None) -> Outage:
    """The Outage of the Redis at `url`, shared by this process's users of it (a fresh one,
    never tripped, without a Redis)."""
    return _shared_outage(url) if url else Outage()


@lru_cache(maxsize=8)
def _shared_outage(url: str) -> Outage:
    return Outage()


def redis_errors() -> tuple[type[Exception], ...]:
    """The exception types a Redis call may raise (redis-py's, and `limits`' wrapper)."""
    from limits.errors import StorageError
    from redis.exceptions import RedisError

    return (RedisError, StorageError)
