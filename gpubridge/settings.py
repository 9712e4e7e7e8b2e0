"""Settings: the only place that reads the environment (prefix ``GPUBRIDGE_``)."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from gpubridge.settings_payments import PaymentSettings, split_names


class WorkerSpec(BaseModel):
    """One worker process: the device it owns, the services it serves (shell-style patterns
    over service keys) and its model memory budget."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="", description="Defaults to worker-<index>.")
    device: str = Field(default="cpu", pattern=r"^(cpu|cuda:\d+)$")
    services: list[str] = Field(default_factory=lambda: ["*"])
    memory_mb: int | None = Field(
        default=None, ge=0, description="Model memory budget; none: 80% of the device's memory."
    )

    def serves(self, service: str) -> bool:
        return any(fnmatch.fnmatchcase(service, pattern) for pattern in self.services)

    def child_environment(self) -> dict[str, str]:
        """What the process sees of the machine's GPUs: only its own (or none)."""
        if self.device == "cpu":
            return {"CUDA_VISIBLE_DEVICES": ""}
        return {"CUDA_VISIBLE_DEVICES": self.device.removeprefix("cuda:")}

    @property
    def runtime_device(self) -> str:
        """The device as the worker's runtimes name it (its one visible GPU is ``cuda``)."""
        return "cpu" if self.device == "cpu" else "cuda"


class Settings(PaymentSettings):
    """Operator settings. Built once in the entrypoint and passed down. The ways to pay (Stripe,
    x402, USDC top-ups) are declared in ``PaymentSettings``.

    Every field has a description: docs/settings.md is generated from them
    (``python -m gpubridge.settings_doc``). Secrets are ``SecretStr``; URLs that may carry
    credentials are left out of the repr."""

    model_config = SettingsConfigDict(env_prefix="GPUBRIDGE_", env_file=None, extra="ignore")

    host: str = Field(
        default="127.0.0.1", description="Address to listen on (0.0.0.0: every interface)."
    )
    port: int = Field(default=8000, description="Port to listen on.")
    data_dir: Path = Field(
        default=Path(".gpubridge"),
        description="Where the SQLite database, the output files and the mail outbox live.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; defaults to a SQLite file in data_dir.",
        repr=False,  # may hold a password
    )
    database_pool_size: int = Field(
        default=10,
        description=(
            "PostgreSQL connections a process keeps (as many more at peaks), and at most as "
            "many again for the money path's statements."
        ),
    )
    auto_migrate: bool = Field(
        default=True, description="Apply database migrations when the server starts."
    )
    catalog: Path | None = Field(
        default=None, description="Path to an operator catalog.yaml replacing the packaged one."
    )
    starter: bool = Field(
        default=True,
        description=(
            "Overlay the starter profile on the catalog (the packaged one or the operator's): "
            "llm-4090, embedding-l4 and whisper-l4 default to the small models of the `starter` "
            "extra on local CPU runtimes, except a service whose backends the operator catalog "
            "changed or whose starter package is not installed (see catalog/starter.yaml). "
            "False turns it off."
        ),
    )
    public_url: str = Field(
        default="", description="External base URL used in links (empty: relative links)."
    )

    request_body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="Time limit for receiving a request's whole body; slower clients get 408.",
    )

    # Jobs
    sync_wait_s: float = Field(
        default=25.0, description="How long POST /run waits for a sync service before 202."
    )
    result_ttl_s: int = Field(
        default=24 * 3600, description="How long a job's results and output files are kept."
    )
    dispatcher_poll_s: float = Field(
        default=0.5, description="How often the dispatcher looks for queued jobs it missed."
    )
    job_timeout_s: float = Field(
        default=600.0,
        description=(
            "The longest a job may run; per-second services hold this much time unless the "
            "catalog gives them a shorter max_seconds."
        ),
    )
    lease_ttl_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "A replica renews its lease every third of this; once it has lapsed (a crash), its "
            "running jobs are requeued once (async jobs that reported no progress) or failed "
            "and refunded."
        ),
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description=(
            "On shutdown, how long running jobs may take to finish before they are stopped "
            "(and requeued if not started, else refunded)."
        ),
    )

    # Webhooks and untrusted URLs
    allow_private_urls: bool = Field(
        default=False,
        description="Let webhooks and media URLs reach loopback/private networks (development).",
    )
    webhook_timeout_s: float = Field(
        default=10.0, description="Time limit of one webhook attempt, until the answer's status."
    )
    webhook_retries: int = Field(default=3, description="Retries after a failed first attempt.")
    webhook_backoff_s: float = Field(
        default=2.0, description="Wait before the first retry; it doubles with each retry."
    )

    ledger_check_every_s: float = Field(
        default=600.0,
        ge=0,
        description=(
            "How often the server proves the ledger (as gpubridge ledger check does) for "
            "/metrics; 0 turns it off."
        ),
    )

    # Accounts
    default_daily_limit_usd: int = Field(
        default=50, description="A new account's daily spending limit in USD (UTC day)."
    )
    api_key_cache_s: float = Field(
        default=5.0,
        description=(
            "How long a replica trusts a successful key lookup; another replica may accept a "
            "rotated key that long. 0: look every key up."
        ),
    )

    # Rate limits (0 disables a limit)
    rate_limit_per_key_per_minute: int = Field(
        default=30, ge=0, description="Requests per minute per API key."
    )
    rate_limit_per_ip_per_second: int = Field(
        default=20, ge=0, description="Requests per second per client IP."
    )
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Proxies (IPs or CIDRs, comma-separated) whose X-Forwarded-For is believed; "
            "empty: the client IP is always the socket peer."
        ),
    )
    redis_url: str | None = Field(
        default=None,
        description="Share rate-limit counts between replicas in this Redis (redis://host:port/db).",
        repr=False,  # may hold a password
    )

    # Key recovery
    recovery_token_ttl_s: int = Field(
        default=15 * 60, gt=0, description="How long an emailed recovery token stays valid."
    )
    recovery_per_email_per_hour: int = Field(
        default=5, ge=0, description="Recovery emails (and token attempts) per address per hour."
    )
    smtp_host: str | None = Field(
        default=None,
        description="Send mail through this SMTP server; unset: append to data_dir/outbox.jsonl.",
    )
    smtp_port: int = Field(default=587, description="The SMTP server's port.")
    smtp_user: str | None = Field(default=None, description="SMTP login; unset: no login.")
    smtp_password: SecretStr | None = Field(default=None, description="SMTP password.")
    smtp_from: str = Field(default="gpubridge@localhost", description="The mails' From address.")
    smtp_starttls: bool = Field(default=True, description="Upgrade the connection with STARTTLS.")
    smtp_timeout_s: float = Field(default=30.0, description="Time limit for sending one mail.")

    # Dashboard (GET /account/dashboard)
    dashboard_secret: SecretStr | None = Field(
        default=None,
        description=(
            "Signs the dashboard's session cookie; unset: a random one per start, so "
            "dashboard sessions end when the server restarts."
        ),
    )

    # Engines
    remote_api_keys: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="API keys for remote backends, by backend name (JSON object).",
    )
    worker_mode: Literal["process", "remote", "inline"] = Field(
        default="process",
        description=(
            "process: local models run in supervised `gpubridge worker` child processes; "
            "remote: only in workers that join from other machines (`gpubridge worker "
            "--gateway`); inline: in the gateway process itself (no isolation; for tests)."
        ),
    )
    workers: list[WorkerSpec] = Field(
        default_factory=list,
        description=(
            "The local worker processes (JSON list of {name, device, services, memory_mb}); "
            "empty: one per GPU serving every service, or one CPU worker without a GPU."
        ),
    )
    worker_cancel_grace_s: float = Field(
        default=1.5,
        gt=0,
        description="How long a cancelled job may take to stop before its worker is restarted.",
    )
    worker_start_timeout_s: float = Field(
        default=60.0, gt=0, description="How long a worker process may take to start."
    )
    model_memory_budget_mb: int = Field(
        default=0,
        description=(
            "Memory the resident local models may use; the least recently used are unloaded "
            "beyond it. 0: 80% of the GPU's memory (half the machine's without one); "
            "-1: no limit."
        ),
    )

    # Media: input files fetched from URLs, output files served at /files/{id}
    media_max_bytes: int = Field(
        default=25 * 1024 * 1024, description="Largest media input (image_url, audio_url) in bytes."
    )
    media_timeout_s: float = Field(
        default=20.0, description="Time limit for fetching one input, redirects included."
    )
    media_max_redirects: int = Field(default=3, description="Redirects followed per input URL.")
    files_dir: Path | None = Field(
        default=None, description="Where output files are kept; unset: files/ in data_dir."
    )
    inline_output_bytes: int = Field(
        default=256 * 1024,
        description="Output files up to this size are also inlined as base64 in the job output.",
    )

    # Object store: the files' bytes in an S3-compatible bucket that replicas and workers share
    object_store_url: str = Field(
        default="",
        description=(
            "s3://bucket/prefix: keep job files in this bucket of an S3-compatible object "
            "store (shared by every replica); empty: in files_dir on this machine."
        ),
    )
    object_store_endpoint_url: str | None = Field(
        default=None,
        description="The store's endpoint (MinIO, R2, Ceph: http://host:9000); unset: AWS S3.",
    )
    object_store_region: str = Field(default="us-east-1", description="The store's region.")
    object_store_access_key_id: str | None = Field(
        default=None,
        description="Unset: credentials from the AWS environment variables or the machine's role.",
    )
    object_store_secret_access_key: SecretStr | None = Field(
        default=None, description="Secret of object_store_access_key_id (set both or neither)."
    )
    object_store_path_style: bool = Field(
        default=True,
        description="Address the bucket in the URL's path (MinIO); false: as a subdomain.",
    )
    object_store_timeout_s: float = Field(
        default=30.0, gt=0, description="Time limit for one object store request, retries included."
    )

    # MCP
    api_key: SecretStr | None = Field(
        default=None,
        description="The API key `gpubridge mcp` bills over stdio (and sends with --remote).",
    )
    mcp_wait_s: float = Field(
        default=50.0,
        description=(
            "How long an MCP tool call waits for its job before returning the job id (below "
            "the 60 s request timeout common in MCP clients)."
        ),
    )
    mcp_inline_media_bytes: int = Field(
        default=512 * 1024,
        description="Base64 images and audio larger than this come back as links, not inline.",
    )
    mcp_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["localhost", "127.0.0.1", "[::1]"],
        description="Host names /mcp answers on (any port), comma-separated; '*' allows any.",
    )

    @field_validator("mcp_allowed_hosts", "trusted_proxies", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        return split_names(value)

    @field_validator("object_store_url")
    @classmethod
    def _check_object_store_url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?", value):
            raise ValueError(f"an object store URL is s3://bucket/prefix, not {value!r}")
        return value

    @model_validator(mode="after")
    def _check_object_store_keys(self) -> Settings:
        if (self.object_store_access_key_id is None) != (
            self.object_store_secret_access_key is None
        ):
            raise ValueError(
                "set both object_store_access_key_id and object_store_secret_access_key, or neither"
            )
        return self

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError: a clear validation error
        return value

    def resolved_files_dir(self) -> Path:
        return self.files_dir or self.data_dir / "files"

    def model_memory_budget_bytes(self) -> int | None:
        """The resident-model budget for ``ModelCache``: None (no limit) or bytes (0: auto)."""
        if self.model_memory_budget_mb < 0:
            return None
        return self.model_memory_budget_mb * 1024 * 1024

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'gpubridge.db').resolve()}"
