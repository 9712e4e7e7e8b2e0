"""Two worker processes: a job goes only to a worker that serves its service, to the one with
its model loaded first, and a language model's tokens stream back across the process boundary
before its result."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
import pytest_asyncio

from gpubridge.engines.base import BackendConfig, EngineEvent, EngineRequest, ModelRef
from gpubridge.engines.workers.pool import WorkerPool
from gpubridge.errors import ServiceUnavailable
from gpubridge.settings import WorkerSpec

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

LLM = BackendConfig(name="local-llm", type="transformers-llm")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def pool() -> AsyncIterator[WorkerPool]:
    """``text`` serves the language model only; ``any`` serves everything."""
    workers = WorkerPool(
        [
            WorkerSpec(name="text", device="cpu", services=["llm-*"]),
            WorkerSpec(name="any", device="cpu", services=["*"]),
        ],
        default_budget_bytes=None,
    )
    await workers.start()
    try:
        with anyio.fail_after(120):
            for worker in workers.workers:
                await worker.ready.wait()
        yield workers
    finally:
        await workers.close()


def chat(source: Path, job_id: str, service: str = "llm-4090") -> EngineRequest:
    data = {"prompt": "Hello there", "max_tokens": 8, "temperature": 0}
    return EngineRequest(job_id, service, ModelRef("tiny", str(source)), data)


class Order:
    """What arrived, in order: token texts, then the result."""

    def __init__(self) -> None:
        self.items: list[str] = []

    async def __call__(self, event: EngineEvent) -> None:
        if event.kind == "token":
            self.items.append(event.data["text"])


async def test_tokens_stream_back_from_the_worker_before_the_result_and_make_its_text(
    pool: WorkerPool, tiny_llm_dir: Path
) -> None:
    order = Order()
    with anyio.fail_after(120):
        result = await pool.run(LLM, chat(tiny_llm_dir, "stream-1"), order)
    assert order.items, "no token crossed the process boundary"
    assert "".join(order.items) == result.output["text"]
    assert 0 < result.usage.completion_tokens <= 8


async def test_a_job_goes_to_the_worker_that_already_holds_its_model(
    pool: WorkerPool, tiny_llm_dir: Path
) -> None:
    with anyio.fail_after(120):
        await pool.run(LLM, chat(tiny_llm_dir, "warm-1"), Order())
    holders = [w.name for w in pool.workers if w.has_model(LLM.name, str(tiny_llm_dir))]
    assert len(holders) == 1
    for n in range(3):
        picked = await pool.pick("llm-4090", (LLM.name, str(tiny_llm_dir)))
        assert picked.name == holders[0]
        with anyio.fail_after(60):
            await pool.run(LLM, chat(tiny_llm_dir, f"warm-{n + 2}"), Order())
    # Still one copy: every later job went to the worker that had it.
    assert [w.name for w in pool.workers if w.has_model(LLM.name, str(tiny_llm_dir))] == holders


async def test_a_job_goes_only_to_a_worker_that_serves_its_service(
    pool: WorkerPool, tiny_llm_dir: Path
) -> None:
    # The language model's backend, asked for under another service's key: only "any" serves it.
    for n in range(3):
        picked = await pool.pick("caption", (LLM.name, str(tiny_llm_dir)))
        assert picked.name == "any"
        with anyio.fail_after(60):
            await pool.run(LLM, chat(tiny_llm_dir, f"caption-{n}", service="caption"), Order())
    narrow = WorkerPool([WorkerSpec(name="text", services=["llm-*"])], default_budget_bytes=None)
    with pytest.raises(ServiceUnavailable, match="no worker process serves 'caption'"):
        await narrow.pick("caption", (LLM.name, str(tiny_llm_dir)))
