"""Email addresses: one spelling per address, and nothing invisible in it."""

from __future__ import annotations

import pytest

from gpubridge.errors import BadRequest, InvalidInput
from gpubridge.payments.accounts import normalize_email


@pytest.mark.parametrize(
    "spelling",
    [
        "alice@example.com",
        "  Alice@Example.COM\n",
        "\uff41lice@example.com",  # full-width a
        "alice@\uff45xample.com",  # full-width e
        "ALICE@EXAMPLE.COM",
    ],
)
def test_look_alike_spellings_normalize_to_one_address(spelling: str) -> None:
    assert normalize_email(spelling) == "alice@example.com"


def test_compatibility_ligatures_are_folded() -> None:
    assert normalize_email("\ufb01le@example.com") == "file@example.com"


@pytest.mark.parametrize(
    "email",
    [
        "a\x00b@example.com",  # NUL (Cc)
        "a\x07b@example.com",  # BEL (Cc)
        "a\u200bb@example.com",  # zero-width space (Cf)
        "a\u202eb@example.com",  # right-to-left override (Cf)
        "a\ud800b@example.com",  # lone surrogate (Cs)
        "a\ue000b@example.com",  # private use (Co)
        "a\u0378b@example.com",  # unassigned (Cn)
        "a\u2028b@example.com",  # line separator
    ],
)
def test_an_address_with_a_control_or_invisible_character_is_a_422(email: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        normalize_email(email)
    assert caught.value.status == 422 and caught.value.code == "invalid_email"
    assert caught.value.details["violations"][0]["path"] == "email"
    caught.value.message.encode("utf-8")  # the message itself can be sent


def test_an_address_without_a_domain_is_still_a_400() -> None:
    with pytest.raises(BadRequest) as caught:
        normalize_email("not-an-email")
    assert caught.value.code == "invalid_email"
