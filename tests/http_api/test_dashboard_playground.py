"""The playground: a schema-drawn form that runs a paid job on the signed-in account, and the
job's page with its result, error and curl."""

from __future__ import annotations

import re

import httpx

from tests.http_api.test_dashboard import EMAIL, csrf_of, funded_account_with_job, sign_in
from tests.support.gateway_app import auth, register

PLAYGROUND = "/account/dashboard/playground"
JOB_PAGE = re.compile(r"/account/dashboard/jobs/([0-9a-f-]{36})$")


async def balance_of(client: httpx.AsyncClient, key: str) -> float:
    value: float = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    return value


async def total_jobs(client: httpx.AsyncClient, key: str) -> int:
    count: int = (await client.get("/account/jobs", headers=auth(key))).json()["total"]
    return count


async def signed_in_client(app, client: httpx.AsyncClient) -> tuple[str, str]:
    """(API key, CSRF token) of a funded account signed in to the dashboard."""
    key = await funded_account_with_job(app, client)
    page = await sign_in(client, EMAIL, key)
    return key, csrf_of(page)


async def test_the_form_is_drawn_from_the_services_schema_with_its_curl(gateway) -> None:
    app, client = gateway
    await signed_in_client(app, client)
    page = await client.get(PLAYGROUND, params={"service": "embedding-l4"})
    assert page.status_code == 200
    assert 'action="/account/dashboard/playground/embedding-l4"' in page.text
    assert 'enctype="multipart/form-data"' in page.text
    assert '<textarea id="f-text" name="text"' in page.text
    assert '<input type="checkbox" id="f-normalize" name="normalize" value="true" checked>' in (
        page.text
    )
    assert "curl -X POST http://gpubridge.test/run" in page.text
    assert "&#34;service&#34;: &#34;embedding-l4&#34;" in page.text
    whisper = await client.get(PLAYGROUND, params={"service": "whisper-l4"})
    assert 'name="audio_url__file" type="file" accept="audio/*"' in whisper.text
    unknown = await client.get(PLAYGROUND, params={"service": "nope"})
    assert 'action="/account/dashboard/playground/llm-4090"' in unknown.text


async def test_running_a_service_charges_the_account_and_shows_the_result(
    gateway, upstream
) -> None:
    app, client = gateway
    key, csrf = await signed_in_client(app, client)
    before = await balance_of(client, key)
    response = await client.post(
        f"{PLAYGROUND}/llm-4090",
        files={
            "prompt": (None, "Say hello"),
            "max_tokens": (None, "8"),
            "csrf_token": (None, csrf),
        },
    )
    assert response.status_code == 303, response.text
    found = JOB_PAGE.search(response.headers["location"])
    assert found, response.headers["location"]
    job_id = found.group(1)

    # The job runs on after the redirect (the page follows it); wait for its end here.
    gateway = app.state.gateway
    await gateway.wait(await gateway.get(job_id), 30)
    status = (await client.get(f"/status/{job_id}")).json()
    page = await client.get(response.headers["location"])
    assert status["status"] == "completed"
    assert "".join(upstream.behaviour.reply) in page.text
    assert 'id="job-output"' in page.text and "completed" in page.text
    assert f"${status['cost_usd']:.6f}" in page.text
    assert "&#34;prompt&#34;: &#34;Say hello&#34;" in page.text  # the job's own curl
    assert await balance_of(client, key) < before
    account_page = await client.get("/account/dashboard")
    assert 'id="spending-chart"' in account_page.text
    assert re.search(r"<td>llm-4090</td><td class=\"num\">2</td>", account_page.text)


async def test_a_form_sent_twice_runs_and_charges_once(gateway) -> None:
    app, client = gateway
    key, csrf = await signed_in_client(app, client)
    page = await client.get(PLAYGROUND, params={"service": "llm-4090"})
    found = re.search(r'name="run_id" value="([0-9a-f-]{36})"', page.text)
    assert found, "the form carries a run id"
    fields = {
        "prompt": (None, "Say hello"),
        "max_tokens": (None, "8"),
        "csrf_token": (None, csrf),
        "run_id": (None, found.group(1)),
    }
    jobs = await total_jobs(client, key)
    first = await client.post(f"{PLAYGROUND}/llm-4090", files=fields)
    second = await client.post(f"{PLAYGROUND}/llm-4090", files=fields)  # a double click
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == second.headers["location"]
    assert await total_jobs(client, key) == jobs + 1
    again = await client.get(PLAYGROUND, params={"service": "llm-4090"})
    assert found.group(1) not in again.text  # the next form runs anew


async def test_invalid_input_shows_the_form_again_with_the_fields_error_and_charges_nothing(
    gateway,
) -> None:
    app, client = gateway
    key, csrf = await signed_in_client(app, client)
    before, jobs = await balance_of(client, key), await total_jobs(client, key)
    response = await client.post(
        f"{PLAYGROUND}/llm-4090",
        files={"prompt": (None, "Hi"), "max_tokens": (None, "0"), "csrf_token": (None, csrf)},
    )
    assert response.status_code == 422
    assert 'class="field invalid"' in response.text
    assert 'value="0"' in response.text and ">Hi</textarea>" in response.text
    assert (await balance_of(client, key), await total_jobs(client, key)) == (before, jobs)


async def test_a_service_without_a_backend_says_so_and_charges_nothing(gateway) -> None:
    app, client = gateway
    key, csrf = await signed_in_client(app, client)
    before = await balance_of(client, key)
    response = await client.post(
        f"{PLAYGROUND}/whisper-l4",
        files={
            "audio_url__file": (
                "talk.wav",
                b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(28),
                "audio/wav",
            ),
            "csrf_token": (None, csrf),
        },
    )
    assert response.status_code == 503
    assert 'class="flash error"' in response.text
    assert await balance_of(client, key) == before


async def test_the_playground_needs_a_session_and_the_csrf_token(gateway) -> None:
    app, client = gateway
    page = await client.get(PLAYGROUND)
    assert page.status_code == 303 and page.headers["location"] == "/account/dashboard"
    key, _ = await signed_in_client(app, client)
    jobs = await total_jobs(client, key)
    for token in [None, "forged"]:
        files = {"prompt": (None, "Hi")}
        if token:
            files["csrf_token"] = (None, token)
        response = await client.post(f"{PLAYGROUND}/llm-4090", files=files)
        assert response.status_code == 403
    assert await total_jobs(client, key) == jobs


async def test_a_job_page_shows_only_the_signed_in_accounts_jobs(gateway) -> None:
    app, client = gateway
    await signed_in_client(app, client)
    other = await register(client, "other@example.com")
    await app.state.gateway.grant("other@example.com", 1_000_000)
    body = {"service": "llm-4090", "input": {"prompt": "mine", "max_tokens": 4}}
    job_id = (await client.post("/run", json=body, headers=auth(other))).json()["job_id"]
    page = await client.get(f"/account/dashboard/jobs/{job_id}", follow_redirects=True)
    assert f"no job {job_id}" in page.text
    assert "mine" not in page.text
