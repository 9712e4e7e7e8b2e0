"""x402 settings are checked at start-up; the deny-list follows its file; screens refuse."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from gpubridge.errors import ConfigurationError
from gpubridge.payments.x402.config import X402Config, x402_off_reason
from gpubridge.payments.x402.errors import SanctionedPayer
from gpubridge.payments.x402.screening import DenyList, Screening
from gpubridge.settings import Settings

KEY = "0x" + "4c" * 32
DOCUMENT_RECIPIENT = "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381"
"""The recipient in the API document: an example of the operator's own wallet, never a
default."""


def test_with_the_recipient_set_the_defaults_are_the_documents_base_mainnet_terms():
    config = X402Config.from_settings(Settings(x402_pay_to=DOCUMENT_RECIPIENT))
    assert config.network == "eip155:8453" and config.network_v1 == "base"
    assert config.asset == "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913"
    assert config.pay_to == "0xB0FdC6030B9f30652e8B221B8090d443Dd3C6381"
    assert (config.asset_name, config.asset_version) == ("USD Coin", "2")
    assert config.max_timeout_s == 300
    assert config.confirmations_for(10_000_000) == 1
    assert config.confirmations_for(10_000_001) == 5
    assert not config.can_settle


@pytest.mark.parametrize(
    "overrides",
    [
        {"x402_chain_id": 84532},  # network still says 8453
        {"x402_asset": "0x1234"},
        {"x402_pay_to": "not an address"},
        {"x402_sanctions_oracle": "0xzz"},
        {"x402_settlement_key": SecretStr("0x1234")},
        {"x402_max_timeout_s": 5},
        {"x402_confirmations": 0},
    ],
)
def test_wrong_settings_refuse_to_start(overrides):
    with pytest.raises(ConfigurationError):
        X402Config.from_settings(Settings(**{"x402_pay_to": DOCUMENT_RECIPIENT, **overrides}))


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"x402_service_name": ""}, "SERVICE_NAME"),
        ({"x402_service_name": "x" * 33}, "SERVICE_NAME"),
        ({"x402_service_name": "Caf\u00e9 GPUs"}, "SERVICE_NAME"),
        ({"x402_service_tags": ["a", "b", "c", "d", "e", "f"]}, "SERVICE_TAGS"),
        ({"x402_service_tags": ["gpu", "GPU"]}, "SERVICE_TAGS"),
        ({"x402_service_tags": ["t" * 33]}, "SERVICE_TAGS"),
        ({"x402_service_icon_url": "ftp://acme.example.com/icon.png"}, "SERVICE_ICON_URL"),
        ({"x402_service_icon_url": "https://127.0.0.1/icon.png"}, "SERVICE_ICON_URL"),
        ({"x402_service_icon_url": "https://localhost/icon.png"}, "SERVICE_ICON_URL"),
        ({"x402_service_icon_url": "https://me@acme.example.com/icon.png"}, "SERVICE_ICON_URL"),
        ({"x402_service_icon_url": "/icon.png"}, "SERVICE_ICON_URL"),
    ],
)
def test_a_listing_that_directories_would_drop_refuses_to_start(overrides, named):
    settings = Settings(**{"x402_pay_to": DOCUMENT_RECIPIENT, **overrides})
    with pytest.raises(ConfigurationError, match=f"GPUBRIDGE_X402_{named}"):
        X402Config.from_settings(settings)


def test_the_listing_defaults_to_gpubridge_with_tags_and_no_icon(monkeypatch):
    default = X402Config.from_settings(Settings(x402_pay_to=DOCUMENT_RECIPIENT))
    monkeypatch.setenv("GPUBRIDGE_X402_SERVICE_TAGS", "ai, gpu,inference")
    monkeypatch.setenv("GPUBRIDGE_X402_SERVICE_ICON_URL", "https://acme.example.com/icon.png")
    configured = X402Config.from_settings(Settings(x402_pay_to=DOCUMENT_RECIPIENT))
    assert default.service_name == configured.service_name == "gpubridge"
    assert len(default.service_tags) == 5
    assert default.service_icon_url is None
    assert configured.service_tags == ("ai", "gpu", "inference")
    assert configured.service_icon_url == "https://acme.example.com/icon.png"


def test_there_is_no_default_recipient_so_x402_is_off_until_one_is_set():
    assert Settings().x402_pay_to is None
    assert x402_off_reason(Settings()) == (
        "GPUBRIDGE_X402_PAY_TO (the operator's wallet that receives USDC) is not set"
    )
    with pytest.raises(ConfigurationError, match="GPUBRIDGE_X402_PAY_TO must name the wallet"):
        X402Config.from_settings(Settings())
    with pytest.raises(ConfigurationError, match="GPUBRIDGE_X402_PAY_TO must name the wallet"):
        X402Config.from_settings(Settings(x402_pay_to=""))
    with pytest.raises(ConfigurationError, match="zero address"):
        X402Config.from_settings(Settings(x402_pay_to="0x" + "00" * 20))
    assert x402_off_reason(Settings(x402_pay_to=DOCUMENT_RECIPIENT)) is None


def test_x402_enabled_false_keeps_x402_off_even_with_a_recipient():
    settings = Settings(x402_pay_to=DOCUMENT_RECIPIENT, x402_enabled=False)
    assert x402_off_reason(settings) == "GPUBRIDGE_X402_ENABLED is false"


def test_base_sepolia_is_a_matter_of_configuration():
    config = X402Config.from_settings(
        Settings(
            x402_chain_id=84532,
            x402_network="eip155:84532",
            x402_network_v1="base-sepolia",
            x402_asset="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
            x402_asset_name="USDC",
            x402_pay_to=DOCUMENT_RECIPIENT,
            x402_settlement_key=SecretStr(KEY),
        )
    )
    assert config.chain_id == 84532 and config.asset_name == "USDC" and config.can_settle


def test_the_settlement_key_never_shows_in_a_repr():
    config = X402Config.from_settings(
        Settings(x402_pay_to=DOCUMENT_RECIPIENT, x402_settlement_key=SecretStr(KEY))
    )
    assert KEY[2:] not in repr(config) and KEY[2:] not in str(config)
    assert KEY not in repr(Settings(x402_settlement_key=SecretStr(KEY)))


async def test_the_deny_list_reads_its_file_and_follows_its_changes(tmp_path):
    listed = "0x" + "ab" * 20
    path = tmp_path / "deny.txt"
    path.write_text(
        f"# sanctioned\n{listed.upper().replace('0X', '0x')}  # a comment\nnot-an-address\n"
    )
    deny = DenyList(path)
    assert await deny.is_sanctioned(listed)
    assert not await deny.is_sanctioned("0x" + "cd" * 20)

    path.write_text(f"0x{'cd' * 20}\n")
    assert not await deny.is_sanctioned(listed)
    assert await deny.is_sanctioned("0x" + "CD" * 20)
    assert not await DenyList(tmp_path / "missing.txt").is_sanctioned(listed)
    assert not await DenyList(None).is_sanctioned(listed)


async def test_screening_refuses_a_payer_any_screen_lists(tmp_path):
    class Listed:
        async def is_sanctioned(self, address: str) -> bool:
            return address == "0x" + "99" * 20

    screening = Screening([DenyList(None), Listed()])
    await screening.check("0x" + "11" * 20)
    with pytest.raises(SanctionedPayer) as caught:
        await screening.check("0x" + "99" * 20)
    assert caught.value.status == 403 and caught.value.code == "sanctioned_payer"
