"""Accounts: email addresses have one spelling and nothing invisible in them; a replaced API
key stops working at once, however long the key cache."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account as EthAccount
from eth_account.messages import encode_defunct
from eth_account.signers.local import LocalAccount

from gpubridge.db.engine import utcnow
from gpubridge.errors import BadRequest, InvalidInput
from gpubridge.payments.accounts import normalize_email
from gpubridge.payments.x402.wallets import claim_message, ensure_wallet_account
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

SERVER = "http://gpubridge.test"


@pytest.fixture
async def gateway(database, database_url: str, tmp_path: Path) -> AsyncIterator[Any]:
    catalog = write_catalog(tmp_path / "catalog.yaml")
    # A long key cache: a replaced key must stop working at once all the same.
    settings = settings_for(database_url, tmp_path, catalog, api_key_cache_s=60.0)
    async with running_app(settings) as pair:
        yield pair


async def status_with(client: httpx.AsyncClient, key: str) -> int:
    return (await client.get("/account/balance", headers=auth(key))).status_code


async def claim(client: httpx.AsyncClient, wallet: LocalAccount, issued_ago_s: int) -> str:
    message = claim_message(wallet.address, SERVER, utcnow() - timedelta(seconds=issued_ago_s))
    signature = wallet.sign_message(encode_defunct(text=message)).signature
    response = await client.post(
        "/account/wallet/claim",
        json={"address": wallet.address, "message": message, "signature": "0x" + signature.hex()},
    )
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


async def test_a_new_wallet_claim_revokes_the_previous_claims_key_at_once(gateway) -> None:
    app, client = gateway
    wallet: LocalAccount = EthAccount.create()
    await ensure_wallet_account(app.state.gateway.db, wallet.address)
    old_key = await claim(client, wallet, issued_ago_s=60)
    assert await status_with(client, old_key) == 200  # now cached

    new_key = await claim(client, wallet, issued_ago_s=0)

    assert await status_with(client, old_key) == 401
    assert await status_with(client, new_key) == 200


async def test_a_regenerated_key_revokes_the_old_one_at_once(gateway) -> None:
    _, client = gateway
    old_key = await register(client, "owner@example.com")
    assert await status_with(client, old_key) == 200  # now cached

    response = await client.post("/account/regenerate-key", headers=auth(old_key))
    assert response.status_code == 200, response.text

    assert await status_with(client, old_key) == 401
    assert await status_with(client, response.json()["api_key"]) == 200


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


async def test_requests_that_find_a_lapsed_key_in_the_cache_share_one_lookup(database) -> None:
    import asyncio

    from sqlalchemy import event

    from gpubridge.errors import Unauthorized
    from gpubridge.payments.accounts import Accounts

    accounts = Accounts(database, default_daily_limit_micros=50_000_000, cache_s=0.0)
    new = await accounts.register("many@example.com")
    lookups: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "FROM accounts" in statement:
            lookups.append(statement)

    event.listen(database.engine.sync_engine, "before_cursor_execute", count)
    try:
        found = await asyncio.gather(*(accounts.authenticate(new.api_key) for _ in range(16)))
        assert {a.id for a in found} == {new.account.id}
        assert len(lookups) == 1  # one query, every request answered
        await accounts.authenticate(new.api_key)
        assert len(lookups) == 2  # the entry lapsed (cache_s=0): read again
        unknown = "gpub_" + "x" * 43
        refused = await asyncio.gather(
            *(accounts.authenticate(unknown) for _ in range(4)), return_exceptions=True
        )
        assert all(isinstance(r, Unauthorized) for r in refused)
        assert len(lookups) == 3
    finally:
        event.remove(database.engine.sync_engine, "before_cursor_execute", count)
