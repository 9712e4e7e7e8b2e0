"""Settings: secrets stay out of their printed form."""

from __future__ import annotations

import pytest

from gpubridge.settings import Settings


def test_the_printed_settings_hold_no_password_key_or_secret() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://gpubridge:db-password-1@db.internal/gpubridge",
        redis_url="redis://:redis-password-2@cache.internal:6379/0",
        x402_rpc_url="https://base-mainnet.example.com/v2/rpc-key-3",
        x402_facilitator_url="https://facilitator.example.com/?key=facilitator-key-4",
        smtp_password="smtp-password-5",
        stripe_secret_key="sk_test_stripe-key-6",
        dashboard_secret="dashboard-secret-7",
        remote_api_keys={"upstream": "remote-key-8"},
        api_key="gpub_api-key-9",
    )
    for printed in (repr(settings), str(settings)):
        for secret in (
            "db-password-1",
            "redis-password-2",
            "rpc-key-3",
            "facilitator-key-4",
            "smtp-password-5",
            "stripe-key-6",
            "dashboard-secret-7",
            "remote-key-8",
            "api-key-9",
        ):
            assert secret not in printed, (secret, printed)


def test_the_starter_profile_is_on_unless_the_operator_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GPUBRIDGE_STARTER", raising=False)
    assert Settings().starter is True
    monkeypatch.setenv("GPUBRIDGE_STARTER", "false")
    assert Settings().starter is False
