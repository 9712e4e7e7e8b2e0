"""Long jobs: progress while the tool waits, the job id past the wait, abandoned calls."""

from __future__ import annotations

import anyio

from gpubridge.mcp_server import progress
from tests.mcp_server.conftest import FUNDS_MICROS, LLM_CALL, StartGateway


class Recorder:
    def __init__(self) -> None:
        self.updates: list[tuple[float, str | None]] = []

    async def __call__(self, value: float, total: float | None, message: str | None) -> None:
        self.updates.append((value, message))

    @property
    def messages(self) -> list[str | None]:
        return [message for _, message in self.updates]


async def test_a_long_job_reports_progress_while_the_tool_waits(running, upstream):
    upstream.behaviour.delay_s = 0.5
    key = await running.funded_key()
    recorder = Recorder()
    async with running.client(key) as client:
        with anyio.fail_after(20):
            result = await client.call_tool("llm-4090", LLM_CALL, progress_callback=recorder)
    assert not result.is_error
    assert recorder.messages[0] == "running"
    assert any(m and m.endswith("tokens generated") for m in recorder.messages)
    values = [value for value, _ in recorder.updates]
    assert values == sorted(set(values)), "progress must only grow"


async def test_a_quiet_job_still_reports_that_it_is_running(running, upstream, monkeypatch):
    monkeypatch.setattr(progress, "HEARTBEAT_S", 0.1)
    upstream.behaviour.delay_s = 0.6
    key = await running.funded_key()
    recorder = Recorder()
    async with running.client(key) as client:
        with anyio.fail_after(20):
            await client.call_tool("llm-4090", LLM_CALL, progress_callback=recorder)
    assert any(m and m.startswith("still running after") for m in recorder.messages)


async def test_past_the_wait_the_tool_returns_the_job_id_and_get_job_finishes(
    start_gateway: StartGateway, upstream
):
    upstream.behaviour.delay_s = 1.0
    async with start_gateway(mcp_wait_s=0.2) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            with anyio.fail_after(20):
                started = await client.call_tool("llm-4090", LLM_CALL)
                assert not started.is_error
                job = started.structured_content
                assert job["status"] == "running"
                assert job["status_url"] == f"/status/{job['job_id']}"
                assert job["job_id"] in started.content[0].text  # type: ignore[union-attr]
                assert "get_job" in started.content[0].text  # type: ignore[union-attr]
                while job["status"] != "completed":
                    got = await client.call_tool(
                        "get_job", {"job_id": job["job_id"], "wait_seconds": 0.2}
                    )
                    job = got.structured_content
        assert job["output"]["text"] == "Hello, world!"
        assert await running.balance_micros(key) < FUNDS_MICROS


async def test_get_job_waits_at_most_the_mcp_wait(start_gateway: StartGateway, upstream):
    # Far longer than the waits below, so the job is surely still running on a busy machine.
    upstream.behaviour.delay_s = 5.0
    async with start_gateway(mcp_wait_s=0.2) as running:
        key = await running.funded_key()
        async with running.client(key) as client:
            started = await client.call_tool("llm-4090", LLM_CALL)
            with anyio.fail_after(0.9):
                got = await client.call_tool(
                    "get_job", {"job_id": started.structured_content["job_id"], "wait_seconds": 0.2}
                )
            too_long = await client.call_tool(
                "get_job", {"job_id": started.structured_content["job_id"], "wait_seconds": 9}
            )
    assert got.structured_content["status"] == "running"
    assert too_long.is_error
    assert too_long.structured_content["error"]["violations"][0]["path"] == "wait_seconds"


async def test_an_abandoned_call_cancels_its_job_and_refunds_it(running, upstream):
    upstream.behaviour.delay_s = 1.0
    key = await running.funded_key()
    async with running.client(key) as client:
        with anyio.move_on_after(0.3):
            await client.call_tool("llm-4090", LLM_CALL)
    account = await running.gateway.accounts.authenticate(key)
    jobs, total = await running.gateway.list_jobs(account, 10, 0)
    assert total == 1
    assert jobs[0].status.value == "cancelled"
    assert await running.balance_micros(key) == FUNDS_MICROS
