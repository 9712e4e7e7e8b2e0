"""The account dashboard: sign-in, the account page, its forms, CSRF, escaping, the cookie."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable

import anyio
import httpx
import pytest
from starlette.applications import Starlette

from gpubridge.payments.accounts import hash_key
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog

PATH = "/account/dashboard"
EMAIL = "you@example.com"
SCRIPT = "<script>alert(1)</script>"
TOKEN_LINE = re.compile(r"^  ([A-Za-z0-9_-]{43})$", re.MULTILINE)
KeyChange = Callable[[Starlette, httpx.AsyncClient, str], Awaitable[str]]


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found, page.text
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, key: str) -> httpx.Response:
    csrf = csrf_of(await client.get(PATH))
    return await client.post(
        f"{PATH}/sign-in",
        data={"csrf_token": csrf, "email": email, "api_key": key},
        follow_redirects=True,
    )


async def funded_account_with_job(app, client: httpx.AsyncClient, prompt: str = "Hello") -> str:
    key = await register(client, EMAIL)
    await app.state.gateway.grant(EMAIL, 5_000_000)
    body = {"service": "llm-4090", "input": {"prompt": prompt, "max_tokens": 8}}
    response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    return key


async def regenerate(app: Starlette, client: httpx.AsyncClient, key: str) -> str:
    response = await client.post("/account/regenerate-key", headers=auth(key))
    assert response.status_code == 200, response.text
    new_key: str = response.json()["api_key"]
    return new_key


async def recover(app: Starlette, client: httpx.AsyncClient, key: str) -> str:
    response = await client.post("/account/recover-reset", json={"email": EMAIL})
    assert response.status_code == 200, response.text
    with anyio.fail_after(10):
        await app.state.recovery.drain()
    outbox = app.state.components.settings.data_dir / "outbox.jsonl"
    mail = json.loads(outbox.read_text().splitlines()[-1])
    token = TOKEN_LINE.findall(mail["body"])[-1]
    response = await client.post("/account/recover-reset", json={"email": EMAIL, "token": token})
    assert response.status_code == 200, response.text
    new_key: str = response.json()["api_key"]
    return new_key


async def test_signing_in_with_email_and_key_shows_the_balance_and_jobs(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, "You@Example.com", key)
    assert page.status_code == 200
    assert "Signed in as <strong>you@example.com</strong>" in page.text
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    assert f"${balance:.6f}" in page.text
    assert "llm-4090" in page.text and "completed" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert key not in page.text


async def test_a_wrong_key_gives_one_generic_error_and_no_session(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    other = await register(client, "other@example.com")
    for email, api_key in [(EMAIL, other), (EMAIL, "gpub_wrong"), ("nobody@example.com", key)]:
        page = await sign_in(client, email, api_key)
        assert page.status_code == 401
        assert "Sign-in failed: check the email and the API key." in page.text
        assert "Signed in as" not in page.text
        assert 'action="/account/dashboard/sign-in"' in (await client.get(PATH)).text


async def test_a_form_without_or_with_a_wrong_csrf_token_is_forbidden(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    await sign_in(client, EMAIL, key)
    for data in [{"daily_limit": "7"}, {"daily_limit": "7", "csrf_token": "forged"}]:
        response = await client.post(f"{PATH}/daily-limit", data=data)
        assert response.status_code == 403
    response = await client.post(f"{PATH}/sign-in", data={"email": EMAIL, "api_key": key})
    assert response.status_code == 403
    limit = (await client.get("/account/balance", headers=auth(key))).json()["daily_limit"]
    assert limit == 50


async def test_changing_the_daily_limit_through_the_form(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    response = await client.post(
        f"{PATH}/daily-limit",
        data={"csrf_token": csrf_of(page), "daily_limit": "12.5"},
        follow_redirects=True,
    )
    assert "Daily limit saved." in response.text
    assert (await client.get("/account/balance", headers=auth(key))).json()["daily_limit"] == 12.5
    response = await client.post(
        f"{PATH}/daily-limit",
        data={"csrf_token": csrf_of(page), "daily_limit": "0"},
        follow_redirects=True,
    )
    assert "daily_limit must be between $1 and $10,000" in response.text


async def test_job_fields_are_rendered_escaped(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client, prompt=SCRIPT)
    page = await sign_in(client, EMAIL, key)
    assert "alert(1)" in page.text
    assert SCRIPT not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text


async def test_a_card_top_up_without_stripe_shows_a_clear_message(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    response = await client.post(
        f"{PATH}/topup",
        data={"csrf_token": csrf_of(page), "package": "credits_10"},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert "card payments are not configured on this server" in response.text


async def test_a_usdc_top_up_shows_the_invoice(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    response = await client.post(
        f"{PATH}/topup-crypto", data={"csrf_token": csrf_of(page), "package": "credits_10"}
    )
    assert response.status_code == 200
    settings = app.state.gateway.settings
    assert settings.x402_pay_to in response.text
    assert re.search(r"Send exactly <strong>10\.05\d* USDC</strong>", response.text)


async def test_signing_out_ends_the_session(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    response = await client.post(
        f"{PATH}/sign-out", data={"csrf_token": csrf_of(page)}, follow_redirects=True
    )
    assert "Signed out." in response.text
    assert "Signed in as" not in (await client.get(PATH)).text
    response = await client.post(
        f"{PATH}/daily-limit",
        data={"csrf_token": csrf_of(response), "daily_limit": "9"},
        follow_redirects=True,
    )
    assert "Please sign in again." in response.text


@pytest.mark.parametrize("change_key", [regenerate, recover])
async def test_replacing_the_key_ends_the_sessions_signed_in_with_the_old_one(
    gateway, change_key: KeyChange
):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    assert "Signed in as" in page.text

    new_key = await change_key(app, client, key)

    assert "Signed in as" not in (await client.get(PATH)).text
    response = await client.post(
        f"{PATH}/daily-limit",
        data={"csrf_token": csrf_of(page), "daily_limit": "9"},
        follow_redirects=True,
    )
    assert "Please sign in again." in response.text
    balance = (await client.get("/account/balance", headers=auth(new_key))).json()
    assert balance["daily_limit"] == 50
    assert "Signed in as" in (await sign_in(client, EMAIL, new_key)).text


async def test_the_session_cookie_is_http_only_same_site_and_holds_no_key(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    csrf = csrf_of(await client.get(PATH))
    response = await client.post(
        f"{PATH}/sign-in", data={"csrf_token": csrf, "email": EMAIL, "api_key": key}
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    flags = [part.strip().lower() for part in cookie.split(";")]
    assert "httponly" in flags and "samesite=lax" in flags
    assert "path=/account/dashboard" in flags
    assert "secure" not in flags  # public_url is not https here
    value = cookie.split(";")[0].split("=", 1)[1]
    payload = value.split(".")[0]
    data = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
    assert set(data) == {"account_id", "key_generation", "csrf"}
    assert key not in cookie and hash_key(key) not in cookie


async def test_the_cookie_is_secure_when_the_public_url_is_https(database, database_url, tmp_path):
    catalog = write_catalog(tmp_path / "catalog.yaml")
    settings = settings_for(
        database_url,
        tmp_path,
        catalog,
        public_url="https://gpubridge.test",
        dashboard_secret="a-dashboard-secret-of-some-length",
    )
    async with running_app(settings) as (_, client):
        response = await client.get(PATH)
    flags = [part.strip().lower() for part in response.headers["set-cookie"].split(";")]
    assert "secure" in flags and "httponly" in flags


async def test_auto_top_up_settings_are_saved_and_errors_are_shown(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    form = {"csrf_token": csrf_of(page), "threshold": "5", "package": "credits_25"}
    response = await client.post(f"{PATH}/auto-topup", data=form, follow_redirects=True)
    assert "Auto top-up is off." in response.text
    settings = (await client.get("/account/auto-topup", headers=auth(key))).json()
    assert settings["threshold"] == 5.0 and settings["package"] == "credits_25"
    response = await client.post(
        f"{PATH}/auto-topup", data={**form, "enabled": "1"}, follow_redirects=True
    )
    assert "card payments are not configured on this server" in response.text


async def test_replacing_the_key_shows_the_new_one_once_and_keeps_this_session(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    response = await client.post(
        f"{PATH}/rotate-key", data={"csrf_token": csrf_of(page), "current_key": key}
    )
    assert response.status_code == 200
    found = re.search(r'<pre id="new-key-value"><code>(gpub_[A-Za-z0-9_-]+)</code>', response.text)
    assert found, response.text
    new_key = found.group(1)
    assert (await client.get("/account/balance", headers=auth(key))).status_code == 401
    assert (await client.get("/account/balance", headers=auth(new_key))).status_code == 200
    again = await client.get(PATH)
    assert "Signed in as" in again.text and new_key not in again.text


async def test_replacing_the_key_needs_the_current_key_of_this_account(gateway):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    other = await register(client, "other@example.com")
    page = await sign_in(client, EMAIL, key)
    for typed in ["gpub_wrong", other, ""]:
        response = await client.post(
            f"{PATH}/rotate-key",
            data={"csrf_token": csrf_of(page), "current_key": typed},
            follow_redirects=True,
        )
        assert "That is not the current API key of this account." in response.text
    for still in (key, other):
        assert (await client.get("/account/balance", headers=auth(still))).status_code == 200


async def test_jobs_show_short_ids_with_copy_buttons_and_errors_in_details(gateway, upstream):
    app, client = gateway
    key = await funded_account_with_job(app, client)
    upstream.behaviour.fail_status = 500
    try:
        body = {"service": "llm-4090", "input": {"prompt": "fail", "max_tokens": 4}}
        failed = (await client.post("/run", json=body, headers=auth(key))).json()
    finally:
        upstream.behaviour.fail_status = None
    assert failed["status"] == "failed"
    page = await sign_in(client, EMAIL, key)
    job_id = failed["id"]
    link = (
        f'<a href="/account/dashboard/jobs/{job_id}" title="{job_id}"><code>{job_id[:8]}</code></a>'
    )
    assert link in page.text
    assert f'data-copy="{job_id}"' in page.text
    summary = re.search(
        r'<details class="error-detail"><summary><code>([a-z_]+)</code>: ([^<]*)</summary>',
        page.text,
    )
    assert summary, page.text
    assert summary.group(1) == failed["error"]["code"]
    assert len(summary.group(2)) <= 120
