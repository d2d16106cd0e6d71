"""The optional Redis connection (rate limits, single-use values) shared by a process."""

from __future__ import annotations

from functools import lru_cache
from typing import Any


@lru_cache(maxsize=8)
def redis_client(url: str | None) -> Any:
    if not url:
        return None
    import redis

    return redis.Redis.from_url(url, socket_timeout=2.0, socket_connect_timeout=2.0)
