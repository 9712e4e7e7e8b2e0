"""How the gateway takes money: x402 and USDC top-ups only with a recipient the operator set,
said truthfully to callers (the ``payments`` view) and to the operator (the start-up log)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from gpubridge.db import Database
from gpubridge.gateway.payment_rails import PaymentRails
from gpubridge.payments.crypto_topups import CryptoTopups
from gpubridge.payments.stripe_topups import CardTopups
from gpubridge.payments.x402 import X402
from gpubridge.settings import Settings
from tests.support.gateway_app import TEST_RECIPIENT

LOGGER = "gpubridge.gateway.payment_rails"


def rails(tmp_path: Path, **values: Any) -> PaymentRails:
    settings = Settings(data_dir=tmp_path, **values)
    db = Database(settings.resolved_database_url())  # built, never connected
    return PaymentRails(
        settings,
        X402.from_settings(settings, db),
        CardTopups.from_settings(settings, db),
        CryptoTopups.from_settings(settings, db),
    )


def startup_lines(caplog: pytest.LogCaptureFixture, payment_rails: PaymentRails) -> list[str]:
    caplog.set_level(logging.INFO, logger=LOGGER)
    payment_rails.log_startup()
    records = [r for r in caplog.records if r.name == LOGGER]
    # Off is the operator's choice: information, never a warning.
    assert all(r.levelno == logging.INFO for r in records)
    return [r.getMessage() for r in records]


def test_with_no_configuration_x402_and_usdc_top_ups_are_off_and_the_log_says_why(tmp_path, caplog):
    off = rails(tmp_path)
    assert off.x402 is None and off.crypto_topups.config is None
    view = off.view()
    assert view["x402"] == {"offered": False}
    assert view["usdc_topups"] == {"offered": False}
    assert view["card_topups"] == {"offered": False}
    assert view["api_key"] == {"offered": True, "register_url": "/account/register"}
    lines = startup_lines(caplog, off)
    assert lines == [
        "x402 payments off: GPUBRIDGE_X402_PAY_TO (the operator's wallet that receives USDC) "
        "is not set; paid requests without an API key are refused (401)",
        "USDC top-ups off: GPUBRIDGE_X402_PAY_TO (the operator's wallet that receives USDC) "
        "is not set",
    ]


def test_with_a_recipient_the_log_states_it_and_the_network(tmp_path, caplog):
    on = rails(tmp_path, x402_pay_to=TEST_RECIPIENT, public_url="https://gpu.example.com")
    view = on.view()
    assert view["x402"]["offered"] is True
    assert view["x402"]["pay_to"] == TEST_RECIPIENT
    assert view["x402"]["network"] == "eip155:8453" and view["x402"]["chain_id"] == 8453
    assert view["usdc_topups"]["offered"] is True
    assert view["usdc_topups"]["recipient"] == TEST_RECIPIENT
    assert view["api_key"]["register_url"] == "https://gpu.example.com/account/register"
    x402_line, usdc_line = startup_lines(caplog, on)
    assert x402_line.startswith(
        f"x402 payments on: paid to {TEST_RECIPIENT} on eip155:8453 (chain 8453), "
        "asset 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    )
    assert "no settlement key or facilitator" in x402_line
    assert (
        usdc_line
        == f"USDC top-ups on: invoices are paid to {TEST_RECIPIENT} on eip155:8453 (chain 8453)"
    )


def test_x402_enabled_false_keeps_x402_off_while_usdc_top_ups_use_the_recipient(tmp_path, caplog):
    mixed = rails(tmp_path, x402_pay_to=TEST_RECIPIENT, x402_enabled=False)
    assert mixed.view()["x402"] == {"offered": False}
    assert mixed.view()["usdc_topups"]["offered"] is True
    x402_line, usdc_line = startup_lines(caplog, mixed)
    assert x402_line.startswith("x402 payments off: GPUBRIDGE_X402_ENABLED is false")
    assert usdc_line.startswith("USDC top-ups on:")


def test_usdc_top_ups_can_be_turned_off_with_x402_on(tmp_path, caplog):
    mixed = rails(tmp_path, x402_pay_to=TEST_RECIPIENT, crypto_topups_enabled=False)
    assert mixed.view()["x402"]["offered"] is True
    assert mixed.view()["usdc_topups"] == {"offered": False}
    _, usdc_line = startup_lines(caplog, mixed)
    assert usdc_line == "USDC top-ups off: GPUBRIDGE_CRYPTO_TOPUPS_ENABLED is false"
