"""Settings: the only place that reads the environment (prefix ``GPUBRIDGE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Operator settings. Built once in the entrypoint and passed down."""

    model_config = SettingsConfigDict(env_prefix="GPUBRIDGE_", env_file=None, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".gpubridge")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; defaults to a SQLite file in data_dir.",
    )
    database_pool_size: int = 10
    auto_migrate: bool = Field(
        default=True, description="Apply database migrations when the server starts."
    )
    catalog: Path | None = Field(
        default=None, description="Path to an operator catalog.yaml replacing the packaged one."
    )
    public_url: str = Field(
        default="", description="External base URL used in links (empty: relative links)."
    )

    # Jobs
    sync_wait_s: float = Field(
        default=25.0, description="How long POST /run waits for a sync service before 202."
    )
    result_ttl_s: int = 24 * 3600
    dispatcher_poll_s: float = 0.5
    default_backend_concurrency: int = 4
    job_timeout_s: float = 600.0
    stale_job_s: float = Field(
        default=900.0, description="A running job not updated for this long is failed and refunded."
    )

    # Webhooks and untrusted URLs
    allow_private_urls: bool = Field(
        default=False,
        description="Let webhooks and media URLs reach loopback/private networks (development).",
    )
    webhook_timeout_s: float = 10.0
    webhook_retries: int = 3
    webhook_backoff_s: float = 2.0

    # Accounts
    default_daily_limit_usd: int = 50
    api_key_cache_s: float = 5.0

    # Engines
    remote_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="API keys for remote backends, by backend name (JSON object).",
    )
    model_memory_budget_mb: int = 0

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gpubridge.db').resolve()}"
