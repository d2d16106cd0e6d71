"""Settings from environment variables (QUANLIAN_*). Defaults run on SQLite with no other service."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="QUANLIAN_", extra="ignore")

    data_dir: Path = Field(Path("./var"), description="Where the SQLite file and generated keys live")
    database_url: str | None = Field(None, description="SQLAlchemy URL; default SQLite in data_dir")
    redis_url: str | None = Field(None, description="Redis for rate limits, replay and revocation")
    issuer: str = Field("http://127.0.0.1:8000", description="Public base URL and OAuth issuer")
    evidence_origin: str = Field("quanlian.local/evidence", description="Evidence log origin")
    max_body_bytes: int = Field(1_048_576, description="Largest JSON request body")
    max_upload_bytes: int = Field(64 * 1_048_576, description="Largest file upload (CSV batches)")
    access_token_ttl: int = Field(600, description="Access token lifetime in seconds (max 600)")
    webhook_allow_loopback: bool = Field(
        False, description="Allow loopback/private webhook URLs for sandbox endpoints"
    )
    run_worker: bool = Field(True, description="Run the background worker inside `serve`")
    migrate_on_start: bool = Field(
        True, description="`serve` migrates the database before serving (`--no-migrate`: it "
        "refuses to start on a database behind the code instead)")
    evidence_integrate_interval: float = Field(1.0, description="Seconds between integrations")
    encryption_key: str | None = Field(None, description="Base64 AES-256 key for personal data")
    token_endpoint_limits: str = Field("200/second;20000/hour",
                                       description="Token endpoint limits per address")
    public_endpoint_limits: str = Field("5/minute;100/day",
                                        description="Unauthenticated sign-up/application limits per address")
    checkout_rate_limit: str = Field(
        "60/minute;2000/day",
        description="Payments submitted at the hosted checkout per address (many payers may share "
                    "one address; each order also locks after its own failed logins)")
    console_login_failure_limits: str = Field(
        "20/15 minutes;100/day",
        description="Failed console logins per address before the address is refused for the "
                    "rest of the window (each operator is also locked after its own failures)")
    auth_failure_limits: str = Field(
        "300/minute;10000/day",
        description="Refused authentications (401) at protected routes, refused client "
                    "authentications at the token endpoint (invalid_client), and calls without a "
                    "valid token to paths or methods no route takes (404, 405), per address before "
                    "the address's further refused calls get 429 instead (valid tokens and valid "
                    "clients still work)")
    rate_plans: dict[str, tuple[int, int]] = Field(
        default_factory=lambda: {"sandbox": (25, 100_000), "standard": (100, 1_000_000),
                                 "premium": (1000, 50_000_000),
                                 "unlimited": (1_000_000, 10_000_000_000)},
        description="Client rate plans: name -> [requests per second, requests per day] (JSON)")
    worker_threads: int = Field(
        40, ge=2, description="Threads for synchronous routes; a fifth of them (at least two) "
        "are kept free of requests (see gateway/admission.py)")
    metrics_token: str | None = Field(
        None, description="When set, GET /metrics answers only `Authorization: Bearer <this "
        "token>` (set it wherever the API port is reachable by anyone but the scraper)")
    log_level: str = Field("INFO")
    seed_demo: bool = Field(False, description="Seed a demo sandbox tenant on serve")

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'quanlian.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
