"""Settings of the partners package (QUANLIAN_* environment variables, like the gateway's)."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PartnerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANLIAN_", extra="ignore")

    webhook_timeout_seconds: float = Field(10.0, description="Timeout of one webhook attempt")
    webhook_retry_hours: float = Field(
        72.0, description="How long a delivery is retried, and how long an endpoint may fail "
                          "before it is disabled")
    webhook_batch_size: int = Field(100, description="Deliveries claimed per worker tick")
    webhook_concurrency: int = Field(8, description="Parallel webhook sends per worker")
    console_session_hours: float = Field(8.0, description="Absolute lifetime of a console session")
    console_idle_minutes: float = Field(30.0, description="Idle timeout of a console session")
    login_max_failures: int = Field(5, description="Failed logins before an operator is locked")
    login_lockout_minutes: float = Field(15.0, description="How long a lockout lasts")
    password_hash_memory_kib: int = Field(65536, ge=8192,
                                          description="Argon2id memory per password hash (KiB)")
    password_hash_time_cost: int = Field(3, ge=1, description="Argon2id passes")
    usage_flush_seconds: float = Field(5.0, description="How often call counts are written")


@lru_cache
def get_partner_settings() -> PartnerSettings:
    return PartnerSettings()
