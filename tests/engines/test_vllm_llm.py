"""The vLLM runtime on a tiny random Llama: the engine directly, then POST /run on the real app.

vLLM is not in the main environment; ``scripts/test-vllm`` runs this module in its own one.
Starting a vLLM engine takes tens of seconds, so the module starts one and shares it: the app's
engine registry and the engine-level tests use the same resident-model cache.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

pytest.importorskip("vllm")

# vLLM's CPU backend: a small KV cache, and no pinning of threads to cores others share.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")

from gpubridge.db import Database
from gpubridge.engines.base import BackendConfig, EngineEvent, EngineRequest, ModelRef
from gpubridge.engines.vllm_llm import VLLMEngine
from gpubridge.errors import InvalidInput
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.tiny_models import build_tiny_llm

pytestmark = [pytest.mark.vllm, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

WAIT_S = 120
START_S = 300
ASYNC_SERVICE = "llm-4090-async"
BACKEND: dict[str, Any] = {
    "name": "vllm",
    "type": "vllm",
    "concurrency": 2,
    "options": {
        "max_model_len": 256,
        "dtype": "float32",
        "enforce_eager": True,
        # The worker runs inside the engine process: one process start fewer.
        "distributed_executor_backend": "uni",
    },
}


class Tokens:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []
        self.times: list[float] = []
        self.first = asyncio.Event()

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)
        if event.kind == "token":
            self.times.append(time.perf_counter())
            self.first.set()

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.kind == "token")


@pytest.fixture(scope="module")
def tiny_vllm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama, wide enough for vLLM's CPU attention (head size 32)."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-vllm"), hidden_size=64)


def _catalog_edit(source: Path) -> Any:
    def edit(data: dict[str, Any]) -> None:
        service = data["services"]["llm-4090"]
        service["backends"] = [BACKEND]
        for model in service["models"]:
            model["source"] = str(source)
        twin = copy.deepcopy(service)
        twin["mode"] = "async"
        data["services"][ASYNC_SERVICE] = twin

    return edit


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(
    tmp_path_factory: pytest.TempPathFactory, tiny_vllm_dir: Path
) -> AsyncIterator[tuple[Any, Any]]:
    """The real app on SQLite, llm-4090 (sync) and an async twin served by the vLLM backend."""
    root = tmp_path_factory.mktemp("vllm-gateway")
    url = f"sqlite+aiosqlite:///{root / 'gpubridge.db'}"
    db = Database(url)
    await db.create_all()
    await db.dispose()
    catalog = write_catalog(root / "catalog.yaml", _catalog_edit(tiny_vllm_dir))
    async with running_app(settings_for(url, root, catalog)) as pair:
        yield pair


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def llm(gateway: tuple[Any, Any], tiny_vllm_dir: Path) -> VLLMEngine:
    """The app's own vLLM engine, started once."""
    app, _ = gateway
    engine = app.state.components.registry.get(BackendConfig(**BACKEND))
    assert isinstance(engine, VLLMEngine)
    async with asyncio.timeout(START_S):
        await engine.load(model(tiny_vllm_dir))
    return engine


def model(source: Path) -> ModelRef:
    return ModelRef("llama-3.3-70b-versatile", str(source))


def request(source: Path, job_id: str = "job-1", **data: Any) -> EngineRequest:
    return EngineRequest(job_id, "llm-4090", model(source), data)


async def generate(llm: VLLMEngine, source: Path, **data: Any) -> tuple[Any, Tokens]:
    tokens = Tokens()
    async with asyncio.timeout(WAIT_S):
        result = await llm.run(request(source, **data), tokens)
    return result, tokens


async def test_tokens_stream_as_events_and_usage_matches_the_tokenizer(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    from transformers import AutoTokenizer

    result, tokens = await generate(
        llm, tiny_vllm_dir, prompt="Hello there", system="Be brief", max_tokens=12, temperature=0
    )
    assert len([e for e in tokens.events if e.kind == "token"]) > 1, "the output was not streamed"
    assert tokens.text == result.output["text"]
    assert result.output["model"] == "llama-3.3-70b-versatile"
    tokenizer = AutoTokenizer.from_pretrained(tiny_vllm_dir)
    conversation = [
        {"role": "system", "content": "Be brief"},
        {"role": "user", "content": "Hello there"},
    ]
    text = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert result.usage.prompt_tokens == len(tokenizer(text, add_special_tokens=False).input_ids)
    assert 0 < result.usage.completion_tokens <= 12
    if result.output["finish_reason"] == "length":
        assert result.usage.completion_tokens == 12
    assert result.usage.compute_seconds > 0


async def test_max_tokens_bounds_the_completion(llm: VLLMEngine, tiny_vllm_dir: Path) -> None:
    result, _ = await generate(llm, tiny_vllm_dir, prompt="fox", max_tokens=3, temperature=0)
    assert 0 < result.usage.completion_tokens <= 3
    assert result.output["finish_reason"] in {"length", "stop"}


async def test_greedy_and_seeded_sampling_repeat_exactly(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    greedy = [
        (await generate(llm, tiny_vllm_dir, prompt="dog", max_tokens=8, temperature=0))[0]
        for _ in range(2)
    ]
    seeded = [
        (await generate(llm, tiny_vllm_dir, prompt="dog", max_tokens=8, temperature=1, seed=5))[0]
        for _ in range(2)
    ]
    assert greedy[0].output["text"] == greedy[1].output["text"]
    assert seeded[0].output["text"] == seeded[1].output["text"]


async def test_a_stop_string_ends_the_output_before_it(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    free, _ = await generate(llm, tiny_vllm_dir, prompt="cat", max_tokens=32, temperature=0)
    text = free.output["text"]
    starts = [i for i in range(len(text) // 3, len(text) - 2) if "\ufffd" not in text[i : i + 2]]
    assert starts, f"no clean stop string to pick from {text!r}"
    stop = text[starts[0] : starts[0] + 2]
    stopped, tokens = await generate(
        llm, tiny_vllm_dir, prompt="cat", max_tokens=32, temperature=0, stop=[stop]
    )
    assert stopped.output["text"] == text[: text.find(stop)]
    assert tokens.text == stopped.output["text"]
    assert stopped.output["finish_reason"] == "stop"


async def test_two_requests_at_once_are_batched_and_both_complete(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    first, second = Tokens(), Tokens()
    async with asyncio.timeout(WAIT_S):
        results = await asyncio.gather(
            llm.run(request(tiny_vllm_dir, "job-a", prompt="a", max_tokens=24), first),
            llm.run(request(tiny_vllm_dir, "job-b", prompt="b", max_tokens=24), second),
        )
    assert all(r.usage.completion_tokens > 0 for r in results)
    assert first.text == results[0].output["text"]
    assert second.text == results[1].output["text"]
    # Decoded side by side: each began streaming before the other had finished.
    assert first.times[0] < second.times[-1] and second.times[0] < first.times[-1]


async def test_cancelling_a_job_aborts_its_vllm_request(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    tokens = Tokens()
    job = asyncio.create_task(
        llm.run(request(tiny_vllm_dir, "job-cancel", prompt="story", max_tokens=240), tokens)
    )
    async with asyncio.timeout(WAIT_S):
        await tokens.first.wait()
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job
    running = await llm.model(model(tiny_vllm_dir))
    assert running.engine.get_num_unfinished_requests() == 0
    # The engine goes on serving.
    result, _ = await generate(llm, tiny_vllm_dir, prompt="again", max_tokens=2)
    assert result.usage.completion_tokens > 0


async def test_a_prompt_longer_than_the_context_is_invalid(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    with pytest.raises(InvalidInput):
        await generate(llm, tiny_vllm_dir, prompt="quick brown fox " * 200, max_tokens=4)


@pytest.mark.gpu
async def test_the_engine_runs_on_cuda_when_there_is_a_gpu(
    llm: VLLMEngine, tiny_vllm_dir: Path
) -> None:
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    running = await llm.model(model(tiny_vllm_dir))
    assert running.engine.vllm_config.device_config.device_type == "cuda"
    result, tokens = await generate(llm, tiny_vllm_dir, prompt="Hello", max_tokens=4)
    assert tokens.text == result.output["text"]
    assert result.usage.completion_tokens > 0


async def test_post_run_generates_with_vllm_and_charges_the_tokens(
    gateway: tuple[Any, Any], llm: VLLMEngine
) -> None:
    app, client = gateway
    key = await register(client, "sync@example.com")
    await app.state.gateway.grant("sync@example.com", 10_000_000)
    body = {"service": "llm-4090", "input": {"prompt": "Hello world", "max_tokens": 6}}
    async with asyncio.timeout(WAIT_S):
        response = await client.post("/run", json=body, headers=auth(key))
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "completed", job
    assert job["backend"] == "vllm"
    assert isinstance(job["output"]["text"], str)
    assert job["output"]["finish_reason"] in {"stop", "length"}
    assert 0 < job["usage"]["completion_tokens"] <= 6
    assert job["usage"]["prompt_tokens"] > 0
    assert job["cost_usd"] == 0.003  # a few tokens cost less than the minimum charge
    balance = (await client.get("/account/balance", headers=auth(key))).json()["balance"]
    assert balance == pytest.approx(10 - 0.003, abs=1e-9)


async def test_the_event_stream_of_an_async_job_carries_its_tokens(
    gateway: tuple[Any, Any], llm: VLLMEngine
) -> None:
    app, client = gateway
    key = await register(client, "async@example.com")
    await app.state.gateway.grant("async@example.com", 10_000_000)
    body = {"service": ASYNC_SERVICE, "input": {"prompt": "Tell me a story", "max_tokens": 10}}
    submitted = await client.post("/run", json=body, headers=auth(key))
    assert submitted.status_code in {200, 201, 202}, submitted.text
    job_id = submitted.json()["job_id"]
    async with asyncio.timeout(WAIT_S):
        response = await client.get(f"/status/{job_id}/stream")
    assert response.status_code == 200
    events: list[tuple[str, dict[str, Any]]] = []
    name = None
    for line in response.text.splitlines():
        if line.startswith("event:"):
            name = line.split(":", 1)[1].strip()
        elif line.startswith("data:") and name:
            events.append((name, json.loads(line.split(":", 1)[1])))
    tokens = [data["text"] for kind, data in events if kind == "token"]
    final = [data for kind, data in events if kind == "status"][-1]
    assert final["status"] == "completed", final
    assert tokens, "no token event reached the stream"
    assert "".join(tokens) == final["output"]["text"]
    assert final["usage"]["completion_tokens"] > 0
