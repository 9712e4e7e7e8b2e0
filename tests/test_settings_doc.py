"""docs/settings.md is generated from the settings' declarations and cannot drift from them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic.fields import FieldInfo

from gpubridge.settings import Settings
from gpubridge.settings_doc import UndescribedSetting, default_text, main, meaning, render

PAGE = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def rows() -> dict[str, list[str]]:
    """The page's table rows by environment variable: [default, meaning]."""
    found = {}
    for line in render().splitlines():
        if line.startswith("| `GPUBRIDGE_"):
            name, default, text = (cell.strip() for cell in line.strip("|").split(" | ", 2))
            found[name.strip("`")] = [default, text]
    return found


def test_the_committed_settings_page_is_the_one_the_settings_generate() -> None:
    assert PAGE.read_text("utf-8") == render(), (
        "docs/settings.md is stale: run ./scripts/settings-doc (or "
        "python -m gpubridge.settings_doc docs/settings.md) and commit it"
    )


def test_every_setting_has_a_row_under_its_environment_name_with_its_meaning() -> None:
    table = rows()
    assert set(table) == {f"GPUBRIDGE_{name.upper()}" for name in Settings.model_fields}
    assert all(text for _, text in table.values())
    assert table["GPUBRIDGE_PORT"] == ["`8000`", "Port to listen on."]


def test_defaults_are_written_as_the_environment_takes_them() -> None:
    table = rows()
    assert table["GPUBRIDGE_STARTER"][0] == "`true`"
    assert table["GPUBRIDGE_JOB_TIMEOUT_S"][0] == "`600`"
    assert table["GPUBRIDGE_DISPATCHER_POLL_S"][0] == "`0.5`"
    assert table["GPUBRIDGE_MCP_ALLOWED_HOSTS"][0] == "`localhost,127.0.0.1,[::1]`"
    assert table["GPUBRIDGE_X402_PAY_TO"][0] == "unset"
    assert table["GPUBRIDGE_PUBLIC_URL"][0] == "empty"
    assert table["GPUBRIDGE_WORKERS"][0] == "empty"


def test_secrets_show_no_default() -> None:
    table = rows()
    secrets = [
        "GPUBRIDGE_SMTP_PASSWORD",
        "GPUBRIDGE_STRIPE_SECRET_KEY",
        "GPUBRIDGE_DASHBOARD_SECRET",
        "GPUBRIDGE_REMOTE_API_KEYS",
        "GPUBRIDGE_X402_SETTLEMENT_KEY",
        "GPUBRIDGE_API_KEY",
    ]
    assert {name: table[name][0] for name in secrets} == dict.fromkeys(secrets, "secret")
    assert default_text(FieldInfo.from_annotated_attribute(int, 5)) == "`5`"


def test_a_description_names_other_settings_by_their_variables() -> None:
    assert "`GPUBRIDGE_X402_PAY_TO`" in rows()["GPUBRIDGE_CRYPTO_TOPUPS_ENABLED"][1]


def test_a_setting_without_a_description_cannot_be_documented() -> None:
    with pytest.raises(UndescribedSetting, match="surprise"):
        meaning("surprise", FieldInfo.from_annotated_attribute(int, 5))


def test_the_command_writes_the_page(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "settings.md"
    assert main([str(target)]) == 0
    assert target.read_text("utf-8") == render()
    assert main(["--check", "x"]) == 2
    assert "usage" in capsys.readouterr().err
