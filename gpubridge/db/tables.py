"""Tables (SQLAlchemy Core). Money columns are integer micro-USD; times are UTC."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

Money = BigInteger
UtcTime = DateTime(timezone=True)

accounts = Table(
    "accounts",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("email", String(320), unique=True, nullable=True),
    Column("api_key_hash", String(64), unique=True, nullable=True),
    Column("api_key_prefix", String(16), nullable=True),
    Column("webhook_secret", String(128), nullable=False),
    # Running total of the ledger's available_delta, kept in the same transaction as each
    # entry so that a guarded UPDATE can refuse an overdraft atomically.
    Column("balance_micros", Money, nullable=False, default=0),
    Column("lifetime_spend_micros", Money, nullable=False, default=0),
    Column("daily_limit_micros", Money, nullable=False),
    # Spend of the UTC day ``spend_day`` (holds of running jobs plus captured costs), kept in
    # the statements that move money so the daily limit costs no aggregate query.
    Column("spend_day", Date, nullable=True),
    Column("spend_day_micros", Money, nullable=False, default=0, server_default="0"),
    Column("created_at", UtcTime, nullable=False),
    # Accounts of x402 payers: the wallet (lowercase 0x address) and the issued-at time of
    # the last signed claim that got an API key (a claim must be newer than it).
    Column("wallet_address", String(42), unique=True, nullable=True),
    Column("wallet_claimed_at", UtcTime, nullable=True),
    # Card top-ups: the Stripe customer whose saved card auto top-up charges off-session.
    Column("stripe_customer_id", String(255), unique=True, nullable=True),
    # Auto top-up: buy ``auto_topup_package`` when a capture takes the balance below the
    # threshold. ``auto_topup_armed`` is cleared by the one charge of a crossing (a guarded
    # UPDATE, so never twice concurrently) and set again once the balance is back above.
    Column("auto_topup_enabled", Integer, nullable=False, default=0, server_default="0"),
    Column("auto_topup_threshold_micros", Money, nullable=True),
    Column("auto_topup_package", String(32), nullable=True),
    Column("auto_topup_armed", Integer, nullable=False, default=1, server_default="1"),
    # No check that the balance stays at or above zero: a refunded or disputed card payment
    # takes its credits back even when they were spent. Holds refuse a short balance.
)

# Double-entry: each movement (``posting_id``) is rows that sum to zero, over
# ``available_delta + held_delta``. A row belongs to a customer account (``account_id``) or to
# a house account (``house``: revenue, grants, card, usdc, x402), never both. Moves inside one
# account (hold, release, job refund) balance within their own row.
ledger_entries = Table(
    "ledger_entries",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=True),
    Column("house", String(16), nullable=True),
    Column("posting_id", String(36), nullable=False),
    Column("job_id", String(36), nullable=True),
    # hold | settle (capture or refund) | release: each at most once per job.
    Column("job_phase", String(8), nullable=True),
    Column("kind", String(16), nullable=False),
    # Effect on the spendable balance and on the amount held for running jobs.
    Column("available_delta", Money, nullable=False),
    Column("held_delta", Money, nullable=False),
    Column("memo", String(200), nullable=False, default=""),
    Column("reference", String(200), nullable=True, unique=True),
    Column("created_at", UtcTime, nullable=False),
    CheckConstraint("(account_id IS NULL) <> (house IS NULL)", name="one_owner"),
    # Also the index of a job's entries (``job_id`` comes first).
    UniqueConstraint("job_id", "job_phase", name="uq_ledger_entries_job_phase"),
    Index("ix_ledger_account_created", "account_id", "created_at"),
    # Posting ids are time-ordered (``ordered_uuid``): new ones go at the index's end.
    Index("ix_ledger_posting", "posting_id"),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("service", String(64), nullable=False),
    Column("model", String(200), nullable=False),
    Column("input", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("priority", String(8), nullable=True),
    Column("webhook_url", Text, nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("request_hash", String(64), nullable=True),
    Column("hold_micros", Money, nullable=False),
    Column("cost_micros", Money, nullable=True),
    Column("discount_percent", Integer, nullable=False, default=0),
    Column("backend", String(100), nullable=True),
    Column("output", JSON, nullable=True),
    Column("error", JSON, nullable=True),
    Column("usage", JSON, nullable=True),
    Column("progress", JSON, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("created_at", UtcTime, nullable=False),
    Column("started_at", UtcTime, nullable=True),
    Column("completed_at", UtcTime, nullable=True),
    Column("updated_at", UtcTime, nullable=False),
    Column("execution_ms", BigInteger, nullable=True),
    Column("expired", Integer, nullable=False, default=0),
    UniqueConstraint("account_id", "idempotency_key", name="uq_jobs_account_idempotency"),
    Index("ix_jobs_status_created", "status", "created_at"),
    Index("ix_jobs_account_created", "account_id", "created_at"),
)

files = Table(
    "files",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("job_id", String(36), ForeignKey("jobs.id"), nullable=True),
    Column("role", String(8), nullable=False),  # input | output
    Column("field", String(64), nullable=True),
    Column("content_type", String(100), nullable=False),
    Column("size_bytes", BigInteger, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime, nullable=False),
    Index("ix_files_job", "job_id"),
    Index("ix_files_expires", "expires_at"),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    Column(
        "id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    ),
    Column("job_id", String(36), ForeignKey("jobs.id"), nullable=False),
    Column("event_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", String(500), nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Index("ix_webhook_attempts_job", "job_id"),
)

# x402 payments, reserved before any work: an EIP-3009 or Permit2 authorization (asset, payer,
# nonce) or a transaction hash can pay once. ``tx_hash`` is the proof of a tx-hash payment, or the
# settlement transaction of an EIP-3009 one. Addresses and hashes are lowercase hex.
x402_payments = Table(
    "x402_payments",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("network", String(64), nullable=False),
    Column("asset", String(42), nullable=False),
    Column("payer", String(42), nullable=False),
    Column("nonce", String(66), nullable=True),
    Column("valid_before", BigInteger, nullable=True),
    Column("tx_hash", String(66), unique=True, nullable=True),
    Column("amount_micros", Money, nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", String(200), nullable=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=True),
    Column("created_at", UtcTime, nullable=False),
    Column("settled_at", UtcTime, nullable=True),
    # A metered (``upto``) payment: the maximum its payer authorized (``amount_micros`` is
    # then what it settled for), the job it pays, and the payload the settlement sends.
    Column("authorized_micros", Money, nullable=True),
    Column("job_id", String(36), nullable=True),
    Column("document", JSON, nullable=True),
    UniqueConstraint("asset", "payer", "nonce", name="uq_x402_payments_authorization"),
    Index("ix_x402_payments_status_created", "status", "created_at"),
    Index("ix_x402_payments_job", "job_id"),
)

# Paid requests that outlive their HTTP exchange: one whose settlement was sent but not
# confirmed in time (``settlement_pending``: its job, under the id given to the client, is
# created once the transfer is confirmed, or the reservation is released), and one whose payer
# named it with a payment identifier (a paid retry with the same identifier gets its job).
x402_requests = Table(
    "x402_requests",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("job_id", String(36), nullable=False),
    Column("payment_id", String(36), ForeignKey("x402_payments.id"), nullable=False),
    Column("payer", String(42), nullable=False),
    Column("payment_identifier", String(128), nullable=True),
    Column("request_hash", String(64), nullable=False),
    Column("service", String(64), nullable=False),
    Column("input", JSON, nullable=False),
    Column("webhook_url", Text, nullable=True),
    Column("priority", String(8), nullable=True),
    Column("idempotency_key", String(255), nullable=True),
    Column("version", Integer, nullable=False),
    Column("status", String(24), nullable=False),
    Column("error", String(200), nullable=True),
    Column("created_at", UtcTime, nullable=False),
    Column("resolved_at", UtcTime, nullable=True),
    UniqueConstraint("payer", "payment_identifier", name="uq_x402_requests_identifier"),
    Index("ix_x402_requests_status", "status"),
    Index("ix_x402_requests_job", "job_id"),
)

# Sign-in-with-x messages already used: each signed message spends its wallet's credit once.
x402_sign_ins = Table(
    "x402_sign_ins",
    metadata,
    Column("nonce", String(128), primary_key=True),
    Column("address", String(42), nullable=False),
    Column("used_at", UtcTime, nullable=False),
)

# Stripe Checkout top-ups: one row per Checkout Session created for an account.
checkout_sessions = Table(
    "checkout_sessions",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("package", String(32), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("credits_micros", Money, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("completed_at", UtcTime, nullable=True),
    # Set when the session is paid: a refund or dispute of the charge names the intent.
    Column("payment_intent_id", String(255), unique=True, nullable=True),
    Index("ix_checkout_sessions_account", "account_id"),
)

# Stripe webhook events taken in: each event id credits at most once.
stripe_events = Table(
    "stripe_events",
    metadata,
    Column("id", String(255), primary_key=True),
    Column("type", String(100), nullable=False),
    Column("received_at", UtcTime, nullable=False),
)

# Off-session charges of auto top-up, with their outcome.
auto_topups = Table(
    "auto_topups",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("package", String(32), nullable=False),
    Column("amount_cents", Integer, nullable=False),
    Column("credits_micros", Money, nullable=False),
    Column("status", String(16), nullable=False),
    Column("payment_intent_id", String(255), unique=True, nullable=True),
    Column("error", String(500), nullable=True),
    Column("created_at", UtcTime, nullable=False),
    Column("completed_at", UtcTime, nullable=True),
    Index("ix_auto_topups_account", "account_id"),
)

# One-time key recovery tokens, stored hashed, sent to the account's email.
recovery_tokens = Table(
    "recovery_tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime, nullable=False),
    Column("used_at", UtcTime, nullable=True),
    Index("ix_recovery_tokens_account", "account_id"),
)

# USDC top-up invoices. A transfer is tied to its invoice by its exact amount: each open
# invoice asks for a distinct amount (``open_amount_units``, unique while open, cleared when
# the invoice is paid or expires), and the transaction hash credits once.
crypto_invoices = Table(
    "crypto_invoices",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("package", String(32), nullable=False),
    Column("credits_micros", Money, nullable=False),
    Column("amount_units", Money, nullable=False),
    Column("open_amount_units", Money, unique=True, nullable=True),
    Column("network", String(64), nullable=False),
    Column("asset", String(42), nullable=False),
    Column("recipient", String(42), nullable=False),
    Column("status", String(16), nullable=False),
    Column("tx_hash", String(66), unique=True, nullable=True),
    Column("created_at", UtcTime, nullable=False),
    Column("expires_at", UtcTime, nullable=False),
    Column("paid_at", UtcTime, nullable=True),
    Index("ix_crypto_invoices_account", "account_id"),
)

# Every token transfer this server has credited, whichever path credited it: an x402 tx-hash
# proof (``x402``), a transfer whose proof was refused and which went to its sender's wallet
# account (``x402_credit``), a USDC top-up invoice (``usdc``). The key is the transfer itself,
# so two paths (or two replicas) crediting one transfer collide on it in the transaction that
# credits, and one of them fails. ``reference`` is the credit's ledger reference.
consumed_transfers = Table(
    "consumed_transfers",
    metadata,
    Column("chain_id", BigInteger, primary_key=True),
    Column("tx_hash", String(66), primary_key=True),
    Column("log_index", Integer, primary_key=True),
    Column("asset", String(42), nullable=False),
    Column("sender", String(42), nullable=False),
    Column("amount_units", Money, nullable=False),
    Column("used_for", String(16), nullable=False),
    Column("reference", String(100), nullable=False),
    Column("account_id", String(36), ForeignKey("accounts.id"), nullable=False),
    Column("consumed_at", UtcTime, nullable=False),
)

# How far each on-chain watcher has read (the last block it scanned).
chain_cursors = Table(
    "chain_cursors",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("last_block", BigInteger, nullable=False),
    Column("updated_at", UtcTime, nullable=False),
)

# Who is alive: each gateway replica (the holder its jobs' ``claimed_by`` names) renews its row
# by heartbeat. A running job whose holder's lease has expired has lost its process; ``info``
# is what the holder last reported of itself (host, pid, worker processes, loaded models).
leases = Table(
    "leases",
    metadata,
    Column("holder", String(64), primary_key=True),
    Column("expires_at", UtcTime, nullable=False),
    Column("renewed_at", UtcTime, nullable=False),
    Column("info", JSON, nullable=True),
)

# Tokens that admit remote workers (hashed), each limited to the services it names.
worker_tokens = Table(
    "worker_tokens",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("services", JSON, nullable=False),
    Column("created_at", UtcTime, nullable=False),
    Column("revoked_at", UtcTime, nullable=True),
)
