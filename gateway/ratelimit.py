"""Rate limits with slowapi's limiter: per client plan (per second and per day), and per
address for unauthenticated endpoints (token endpoint, applications, sandbox sign-up), and
failures per address: failed console logins, and refused authentications (401) at protected
routes, with which calls without a valid token that no route takes (404, 405) count
(gateway.auth.count_call_of_nobody), and refused client authentications at the token endpoint
(`invalid_client`, gateway.oauth.router.token).

Storage is in memory by default and Redis when QUANLIAN_REDIS_URL is set, so that limits
hold across several server processes. A refused call gets a 429 problem with `Retry-After`
and `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset`. While the configured Redis
cannot be reached a call that would be counted gets a 503 `service_unavailable` with
`Retry-After` (gateway/redis.py): limits are never silently dropped, nor kept per process.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from limits import RateLimitItem, parse_many
from limits.limits import RateLimitItemPerDay, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from slowapi import Limiter
from slowapi.util import get_remote_address

from gateway.errors import TooManyRequests
from gateway.redis import Outage, client_options, redis_errors, redis_outage
from gateway.tenancy import Principal

PURGE_EVERY = 10.0
# Failure buckets (storage key prefixes): only failures count in them, see `count_failure`.
LOGIN_FAILURES = "console_login_failures"
AUTH_FAILURES = "auth_failures"
_STORAGE_ERRORS = redis_errors()


def _quiet_memory_storage(storage: object) -> Callable[[], None] | None:
    """limits' in-memory storage re-arms a 10 ms timer thread on every hit, only to drop
    expired counters; a fixed window already resets an expired counter when it reads it. On
    the hot path that thread start costs more than the count, so the timer is switched off
    and the same purge runs every PURGE_EVERY seconds from `_hit`. Returns the purge, or None
    for other storages (Redis expires keys itself)."""
    if not isinstance(storage, MemoryStorage):
        return None
    purge = getattr(storage, "_MemoryStorage__expire_events", None)
    if purge is None or not hasattr(storage, "_MemoryStorage__schedule_expiry"):
        return None  # a limits release with other internals: keep its own timer
    storage._MemoryStorage__schedule_expiry = lambda: None  # type: ignore[attr-defined]
    return purge


class RateLimiter:
    def __init__(self, storage_uri: str, token_limits: str, public_limits: str,
                 plans: dict[str, tuple[int, int]], login_failure_limits: str = "",
                 auth_failure_limits: str = "") -> None:
        uses_redis = storage_uri.startswith(("redis://", "rediss://", "redis+unix://"))
        # Bounded timeouts and retries (a hung Redis must not hold requests); no fall-back.
        self._slowapi = Limiter(key_func=get_remote_address, storage_uri=storage_uri,
                                key_prefix="quanlian", strategy="fixed-window",
                                storage_options=client_options() if uses_redis else {})
        self.strategy = self._slowapi.limiter
        self.token_limits = parse_many(token_limits)
        self.public_limits = parse_many(public_limits)
        self.login_failure_limits = parse_many(login_failure_limits) if login_failure_limits else []
        self.auth_failure_limits = parse_many(auth_failure_limits) if auth_failure_limits else []
        self._plans = {name: (RateLimitItemPerSecond(per_s), RateLimitItemPerDay(per_day))
                       for name, (per_s, per_day) in plans.items()}
        self._purge_memory = _quiet_memory_storage(self.strategy.storage)
        self._next_purge = time.monotonic() + PURGE_EVERY
        # Shared with the process's single-use guard (gateway.oauth.replay) for the same Redis.
        self.outage: Outage = redis_outage(storage_uri if uses_redis else None)

    def _hit(self, items: list[RateLimitItem] | tuple[RateLimitItem, ...], *identity: str) -> None:
        if self._purge_memory is not None and time.monotonic() >= self._next_purge:
            self._next_purge = time.monotonic() + PURGE_EVERY
            self._purge_memory()
        self.outage.check()
        try:
            for item in items:
                if not self.strategy.hit(item, *identity):
                    raise _too_many(item, self._reset_in(item, identity))
        except _STORAGE_ERRORS as exc:
            self.outage.failed(exc)

    def _reset_in(self, item: RateLimitItem, identity: tuple[str, ...]) -> int:
        """Seconds until the window of `item` for `identity` resets (at least 1)."""
        reset = self.strategy.get_window_stats(item, *identity).reset_time
        return max(1, math.ceil(reset - time.time()))

    def check_client(self, request: Request, principal: Principal) -> None:
        """Count a call against the client's plan (per second, then per day)."""
        plan = self._plans.get(principal.rate_plan) or next(iter(self._plans.values()))
        self._hit(plan, "client", principal.client_id)

    def check_token_endpoint(self, request: Request) -> None:
        self._hit(self.token_limits, "token", get_remote_address(request))

    def check_public(self, request: Request, bucket: str) -> None:
        """Unauthenticated endpoints: per remote address."""
        self._hit(self.public_limits, bucket, get_remote_address(request))

    def refused_for(self, request: Request, bucket: str,
                    limits: list[RateLimitItem]) -> tuple[RateLimitItem, int] | None:
        """The limit of `bucket` this address has used up (the one it must wait longest for)
        and the seconds until it resets; None: it may go on. Asking does not count; failing
        does (`count_failure`), so callers who do well are never slowed."""
        identity = (bucket, get_remote_address(request))
        refused = None
        self.outage.check()
        try:
            for item in limits:
                if not self.strategy.test(item, *identity):
                    wait = self._reset_in(item, identity)
                    if refused is None or wait > refused[1]:
                        refused = (item, wait)
        except _STORAGE_ERRORS as exc:
            self.outage.failed(exc)
        return refused

    def count_failure(self, request: Request, bucket: str, limits: list[RateLimitItem]) -> None:
        self.outage.check()
        try:
            for item in limits:
                self.strategy.hit(item, bucket, get_remote_address(request))
        except _STORAGE_ERRORS as exc:
            self.outage.failed(exc)

    def login_refused_for(self, request: Request) -> int | None:
        """Seconds until this address may try to log in to the console again (None: now)."""
        refused = self.refused_for(request, LOGIN_FAILURES, self.login_failure_limits)
        return None if refused is None else refused[1]

    def count_login_failure(self, request: Request) -> None:
        self.count_failure(request, LOGIN_FAILURES, self.login_failure_limits)

    def count_auth_failure(self, request: Request) -> None:
        """A refused authentication (401) at a protected route, a refused client
        authentication at the token endpoint, or a call of nobody that no route takes: counted
        for its address, or, once the address has used up its failures, answered 429 instead.
        Called on refusals only, so valid calls never pay for it (gateway.auth.authenticate,
        gateway.auth.count_call_of_nobody, gateway.oauth.router.token)."""
        refused = self.refused_for(request, AUTH_FAILURES, self.auth_failure_limits)
        if refused is not None:
            raise _too_many(*refused)
        self.count_failure(request, AUTH_FAILURES, self.auth_failure_limits)


def _too_many(item: RateLimitItem, reset: int) -> TooManyRequests:
    return TooManyRequests(
        f"Rate limit of {item} exceeded; retry after {reset} s.",
        headers={"Retry-After": str(reset), "RateLimit-Limit": str(item.amount),
                 "RateLimit-Remaining": "0", "RateLimit-Reset": str(reset),
                 "RateLimit-Policy": f"{item.amount};w={item.get_expiry()}"})


def setup(app: FastAPI) -> None:
    settings = app.state.settings
    app.state.rate_limiter = RateLimiter(settings.redis_url or "memory://",
                                         settings.token_endpoint_limits,
                                         settings.public_endpoint_limits, settings.rate_plans,
                                         settings.console_login_failure_limits,
                                         settings.auth_failure_limits)


def rate_limit_public(bucket: str):  # type: ignore[no-untyped-def]
    """Dependency for unauthenticated routes."""
    def dependency(request: Request) -> None:
        request.app.state.rate_limiter.check_public(request, bucket)
    dependency.__name__ = f"rate_limit_{bucket}"
    return dependency
