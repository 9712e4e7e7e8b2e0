"""Settings: secrets stay out of their printed form; bad values refuse to start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

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
        object_store_url="s3://files/gpubridge",
        object_store_access_key_id="access-key-id",
        object_store_secret_access_key="object-store-secret-10",
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
            "object-store-secret-10",
        ):
            assert secret not in printed, (secret, printed)


def test_the_starter_profile_is_on_unless_the_operator_turns_it_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GPUBRIDGE_STARTER", raising=False)
    assert Settings().starter is True
    monkeypatch.setenv("GPUBRIDGE_STARTER", "false")
    assert Settings().starter is False


def test_an_object_store_url_names_an_s3_bucket_and_an_optional_prefix() -> None:
    assert Settings().object_store_url == ""
    assert Settings(object_store_url="s3://files").object_store_url == "s3://files"
    assert Settings(object_store_url=" s3://files/a/b ").object_store_url == "s3://files/a/b"
    for bad in ("files/a", "https://files.example.com/a", "s3://", "s3://Bad_Bucket/a"):
        with pytest.raises(ValidationError, match="s3://bucket/prefix"):
            Settings(object_store_url=bad)


def test_object_store_keys_come_as_a_pair() -> None:
    with pytest.raises(ValidationError, match="set both"):
        Settings(object_store_access_key_id="access-key-id")
    with pytest.raises(ValidationError, match="set both"):
        Settings(object_store_secret_access_key="secret")
