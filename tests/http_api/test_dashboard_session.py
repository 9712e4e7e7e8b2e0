"""What every dashboard page shares: its security headers, its stylesheet and script (served
from the package), and one-time notices."""

from __future__ import annotations

from tests.http_api.test_dashboard import EMAIL, PATH, csrf_of, funded_account_with_job, sign_in

STATIC = f"{PATH}/static"


async def test_pages_allow_only_this_servers_styles_scripts_and_media(gateway) -> None:
    _, client = gateway
    page = await client.get(PATH)
    policy = {
        part.split()[0]: part.split()[1:]
        for part in page.headers["content-security-policy"].split("; ")
    }
    assert policy["default-src"] == ["'none'"]
    assert policy["script-src"] == ["'self'"]  # no inline script runs
    assert policy["connect-src"] == ["'self'"]  # the job's event stream
    assert policy["frame-ancestors"] == ["'none'"]
    assert page.headers["cache-control"] == "no-store"
    assert f'<link rel="stylesheet" href="{STATIC}/dashboard.css">' in page.text
    assert f'<script src="{STATIC}/dashboard.js" defer></script>' in page.text
    assert "<script>" not in page.text


async def test_the_stylesheet_and_script_are_served_from_the_package(gateway) -> None:
    _, client = gateway
    css = await client.get(f"{STATIC}/dashboard.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert ".card" in css.text
    script = await client.get(f"{STATIC}/dashboard.js")
    assert script.status_code == 200 and "EventSource" in script.text
    assert (await client.get(f"{STATIC}/../dashboard.py")).status_code == 404


async def test_a_notice_shows_once(gateway) -> None:
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    saved = await client.post(
        f"{PATH}/daily-limit",
        data={"csrf_token": csrf_of(page), "daily_limit": "20"},
        follow_redirects=True,
    )
    assert "Daily limit saved." in saved.text
    assert "Daily limit saved." not in (await client.get(PATH)).text


async def test_a_signed_out_visitor_sees_the_sign_in_form_without_navigation(gateway) -> None:
    _, client = gateway
    page = await client.get(PATH)
    assert 'action="/account/dashboard/sign-in"' in page.text
    assert "Playground</a>" not in page.text


async def test_only_the_dashboards_paths_carry_a_session(gateway) -> None:
    """The session cookie is read and written on the dashboard alone; the API beside it
    never sets one, even for a signed-in browser that calls it."""
    app, client = gateway
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    assert "Sign out" in page.text and "gpubridge_dashboard" in client.cookies
    for response in (
        await client.get("/catalog"),
        await client.get("/account/balance", headers={"Authorization": f"Bearer {key}"}),
    ):
        assert response.status_code == 200
        assert "set-cookie" not in response.headers
    # Still signed in: the API calls left the dashboard's session as it was.
    assert "Sign out" in (await client.get(PATH)).text
