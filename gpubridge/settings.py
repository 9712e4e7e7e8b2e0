"""Settings: the only place that reads the environment (prefix ``GPUBRIDGE_``)."""

from __future__ import annotations

import fnmatch
import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


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


class Settings(BaseSettings):
    """Operator settings. Built once in the entrypoint and passed down.

    Secrets are ``SecretStr``; URLs that may carry credentials are left out of the repr."""

    model_config = SettingsConfigDict(env_prefix="GPUBRIDGE_", env_file=None, extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path(".gpubridge")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; defaults to a SQLite file in data_dir.",
        repr=False,  # may hold a password
    )
    database_pool_size: int = 10
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
    result_ttl_s: int = 24 * 3600
    dispatcher_poll_s: float = 0.5
    default_backend_concurrency: int = 4
    job_timeout_s: float = 600.0
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
    webhook_timeout_s: float = 10.0
    webhook_retries: int = 3
    webhook_backoff_s: float = 2.0

    # How often the maintenance loop proves the ledger (gpubridge ledger check), for
    # /metrics; 0 turns it off.
    ledger_check_every_s: float = Field(default=600.0, ge=0)

    # Accounts
    default_daily_limit_usd: int = 50
    api_key_cache_s: float = 5.0

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
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "gpubridge@localhost"
    smtp_starttls: bool = True
    smtp_timeout_s: float = 30.0

    # Card top-ups (Stripe Checkout) and auto top-up; off while the two keys are unset
    stripe_secret_key: SecretStr | None = Field(default=None, description="Stripe secret key.")
    stripe_webhook_secret: SecretStr | None = Field(
        default=None, description="Signing secret (whsec_...) of the /webhooks/stripe endpoint."
    )
    stripe_api_base: str | None = Field(
        default=None, description="Stripe API base URL (tests point it at a local server)."
    )
    stripe_success_url: str = Field(
        default="", description="Where Checkout returns after payment (default: the dashboard)."
    )
    stripe_cancel_url: str = Field(
        default="", description="Where Checkout returns when cancelled (default: the dashboard)."
    )
    stripe_webhook_tolerance_s: int = Field(
        default=300, description="Oldest Stripe-Signature timestamp accepted, in seconds."
    )
    stripe_timeout_s: float = 30.0
    stripe_max_network_retries: int = 2

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
        default=None, description="Where output files are kept (default: <data_dir>/files)."
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
    object_store_region: str = "us-east-1"
    object_store_access_key_id: str | None = Field(
        default=None,
        description="Unset: credentials from the AWS environment variables or the machine's role.",
    )
    object_store_secret_access_key: SecretStr | None = None
    object_store_path_style: bool = Field(
        default=True,
        description="Address the bucket in the URL's path (MinIO); false: as a subdomain.",
    )
    object_store_timeout_s: float = Field(
        default=30.0, gt=0, description="Time limit for one object store request, retries included."
    )

    # x402: pay per request in USDC (defaults: Base mainnet, as the API document says). Off
    # until the operator names the wallet that receives the money (x402_pay_to).
    x402_enabled: bool = Field(
        default=True,
        description=(
            "Answer unauthenticated paid requests with 402 and accept x402, once x402_pay_to "
            "is set; false keeps x402 off even then."
        ),
    )
    x402_network: str = Field(default="eip155:8453", description="CAIP-2 network (x402 v2).")
    x402_network_v1: str = Field(default="base", description="The network's x402 v1 name.")
    x402_chain_id: int = Field(default=8453, description="EVM chain id (the EIP-712 domain's).")
    x402_asset: str = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    x402_asset_name: str = Field(default="USD Coin", description="The token's EIP-712 name.")
    x402_asset_version: str = Field(default="2", description="The token's EIP-712 version.")
    x402_pay_to: str | None = Field(
        default=None,
        description=(
            "The operator's wallet that receives x402 payments and USDC top-ups; unset: both "
            "are off, and requests without an API key are 401."
        ),
    )
    x402_rpc_url: str = Field(
        default="https://mainnet.base.org",
        description="JSON-RPC node.",
        repr=False,  # node providers put an access key in the URL
    )
    x402_settlement_key: SecretStr | None = Field(
        default=None,
        description="Private key that sends transferWithAuthorization (pays gas) to settle.",
    )
    x402_facilitator_url: str | None = Field(
        default=None,
        description="Settle through this x402 facilitator instead of the key.",
        repr=False,  # may hold an access key
    )
    x402_max_timeout_s: int = Field(default=300, description="The payment window in seconds.")
    x402_settle_timeout_s: float = 120.0
    x402_confirmations: int = Field(
        default=1, description="Confirmations a tx-hash payment needs up to the large amount."
    )
    x402_confirmations_large: int = 5
    x402_large_payment_usd: int = 10
    x402_require_tx_signature: bool = Field(
        default=True,
        description=(
            "Tx-hash payments must carry the payer's signature over the request; false "
            "accepts unsigned proofs, which anyone who sees the transfer can send first."
        ),
    )
    x402_deny_list: Path | None = Field(
        default=None, description="File of sanctioned addresses, one per line ('#' comments)."
    )
    x402_sanctions_oracle: str | None = Field(
        default=None, description="On-chain oracle with isSanctioned(address), when set."
    )
    # How x402 directories (Bazaar) list this server: the 402's resource.serviceName, tags
    # and iconUrl. Facilitators drop values outside these rules, so they refuse to start.
    x402_service_name: str = Field(
        default="gpubridge",
        description="The name directories show for this server: 1-32 printable ASCII characters.",
    )
    x402_service_tags: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["ai", "inference", "llm", "image-generation", "speech"],
        description="Up to 5 search tags, each 1-32 printable ASCII characters, comma-separated.",
    )
    x402_service_icon_url: str | None = Field(
        default=None, description="An absolute https:// (or http://) URL of the server's icon."
    )

    # USDC top-ups (POST /account/topup-crypto): chain, token, recipient, RPC node and
    # confirmations are the x402 settings above; off while x402_pay_to is unset
    crypto_topups_enabled: bool = Field(
        default=True,
        description=(
            "Sell credit packages for USDC sent to x402_pay_to, once it is set (whether or not "
            "x402_enabled is)."
        ),
    )
    crypto_invoice_ttl_s: int = Field(
        default=3600, description="How long a USDC invoice's exact amount stays reserved."
    )
    crypto_scan_blocks: int = Field(
        default=2000, description="Most blocks one USDC watcher log query covers."
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

    @field_validator("mcp_allowed_hosts", "x402_service_tags", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [host.strip() for host in text.split(",") if host.strip()]
        return value

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [item.strip() for item in text.split(",") if item.strip()]
        return value

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
