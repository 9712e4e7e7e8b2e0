"""GET /metrics exposes the gateway's Prometheus counters."""

from __future__ import annotations

from tests.support.gateway_app import auth, register


async def test_metrics_count_submitted_and_finished_jobs_and_what_they_charged(gateway):
    app, client = gateway
    key = await register(client)
    await app.state.gateway.grant("you@example.com", 10_000_000)
    body = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 8}}
    for _ in range(2):
        assert (await client.post("/run", json=body, headers=auth(key))).status_code == 200
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'gpubridge_jobs_submitted_total{service="llm-4090"} 2.0' in text
    assert 'gpubridge_jobs_finished_total{service="llm-4090",status="completed"} 2.0' in text
    assert 'gpubridge_charged_micro_usd_total{service="llm-4090"} 6000.0' in text
    assert 'gpubridge_job_execution_seconds_count{service="llm-4090"} 2.0' in text


async def test_metrics_show_the_last_ledger_check_and_what_it_found(gateway):
    from sqlalchemy import update

    from gpubridge.db.tables import accounts

    app, client = gateway
    await register(client)
    assert "gpubridge_ledger_check_ok -1.0" in (await client.get("/metrics")).text
    await app.state.gateway.maintenance()  # the first pass checks the ledger
    text = (await client.get("/metrics")).text
    assert "gpubridge_ledger_check_ok 1.0" in text
    assert "gpubridge_ledger_check_findings 0.0" in text

    gateway_ = app.state.gateway
    async with gateway_.db.begin() as conn:
        await conn.execute(update(accounts).values(balance_micros=1))
    await gateway_.check_ledger()
    text = (await client.get("/metrics")).text
    assert "gpubridge_ledger_check_ok 0.0" in text
    assert "gpubridge_ledger_check_findings 1.0" in text
    async with gateway_.db.begin() as conn:
        await conn.execute(update(accounts).values(balance_micros=0))
