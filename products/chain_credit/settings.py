"""Chain credit configuration (environment variables `QUANLIAN_CHAIN_CREDIT_*`).

Read again whenever the process's `QUANLIAN_CHAIN_CREDIT_*` environment changes (a cached
parse per distinct environment), so that a changed share takes effect without a restart.
"""

from __future__ import annotations

import os
from decimal import Decimal
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ChainCreditSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANLIAN_CHAIN_CREDIT_", extra="ignore")

    bank_wide_limit_fen: int = Field(
        10_000_000_000_000,
        description="The bank-wide chain credit limit in fen (default 100 billion CNY)")
    guarantee_circle_share: Decimal = Field(
        Decimal("0.10"), gt=0, le=1,
        description="Largest share of the bank-wide limit granted to one guarantee circle")
    quote_validity_seconds: int = Field(
        900, gt=0, description="How long a financing quote can be accepted (tenant clock)")
    max_split_parts: int = Field(100, gt=1, description="Most parts in one split")

    @property
    def guarantee_circle_cap_fen(self) -> int:
        return int(Decimal(self.bank_wide_limit_fen) * self.guarantee_circle_share)


PREFIX = "QUANLIAN_CHAIN_CREDIT_"


@lru_cache(maxsize=8)
def _parsed(environment: tuple[tuple[str, str], ...]) -> ChainCreditSettings:
    return ChainCreditSettings()


def chain_credit_settings() -> ChainCreditSettings:
    """The product's settings as the environment has them now."""
    return _parsed(tuple(sorted((k, v) for k, v in os.environ.items() if k.upper().startswith(PREFIX))))
