"""The payment settings: read from GPUBRIDGE_ variables like the rest."""

from __future__ import annotations

import pytest

from gpubridge.settings import Settings
from gpubridge.settings_payments import PaymentSettings, split_names


def test_x402_and_usdc_top_ups_have_no_recipient_until_the_operator_names_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("GPUBRIDGE_X402_PAY_TO", raising=False)
    assert PaymentSettings().x402_pay_to is None
    monkeypatch.setenv("GPUBRIDGE_X402_PAY_TO", "0x" + "ab" * 20)
    assert Settings().x402_pay_to == "0x" + "ab" * 20


def test_directory_tags_come_comma_separated_or_as_a_json_list(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUBRIDGE_X402_SERVICE_TAGS", " ai, speech ,,")
    assert Settings().x402_service_tags == ["ai", "speech"]
    monkeypatch.setenv("GPUBRIDGE_X402_SERVICE_TAGS", '["llm", "ocr"]')
    assert Settings().x402_service_tags == ["llm", "ocr"]


def test_a_list_that_is_not_text_is_left_to_validation() -> None:
    assert split_names(["a"]) == ["a"]
