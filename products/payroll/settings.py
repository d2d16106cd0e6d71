"""Payroll configuration (environment variables `QUANLIAN_PAYROLL_*`), read on each job run."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class PayrollSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANLIAN_PAYROLL_", extra="ignore")

    chunk_size: int = Field(500, ge=1, le=5000,
                            description="Items paid per worker transaction (one commit each)")
    time_budget_seconds: float = Field(
        2.0, gt=0, description="Seconds of paying per run of the payroll job before other jobs "
                               "get their turn")


def payroll_settings() -> PayrollSettings:
    return PayrollSettings()
