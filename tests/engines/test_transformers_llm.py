from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines import transformers_llm
from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    ModelRef,
)
from gpubridge.engines.transformers_llm import TransformersLLM, create
from gpubridge.errors import BackendError, InvalidInput

pytestmark = pytest.mark.slow

WAIT_S = 60


class Tokens:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.kind == "token")


def engine() -> TransformersLLM:
    return create(BackendConfig(name="local", type="transformers-llm"), EngineContext())


def request(source: Path, **data: Any) -> EngineRequest:
    return EngineRequest("job-1", "llm-4090", ModelRef("tiny", str(source)), data)


async def generate(llm: TransformersLLM, source: Path, **data: Any) -> tuple[Any, Tokens]:
    tokens = Tokens()
    async with asyncio.timeout(WAIT_S):
        result = await llm.run(request(source, **data), tokens)
    return result, tokens


async def test_generation_streams_tokens_that_make_up_the_output(tiny_llm_dir: Path) -> None:
    llm = engine()
    try:
        result, tokens = await generate(llm, tiny_llm_dir, prompt="Hello there", max_tokens=6)
    finally:
        await llm.unload()
    assert tokens.events, "no token was streamed"
    assert tokens.text == result.output["text"]
    assert result.output["model"] == "tiny"
    assert result.output["finish_reason"] in {"stop", "length"}
    assert 0 < result.usage.completion_tokens <= 6
    assert result.usage.prompt_tokens > 0
    assert result.usage.compute_seconds > 0


async def test_a_tokenizer_without_chat_template_gets_the_plain_prompt(
    tiny_plain_llm_dir: Path,
) -> None:
    llm = engine()
    try:
        result, tokens = await generate(
            llm, tiny_plain_llm_dir, prompt="Hello", system="Be brief", max_tokens=4
        )
    finally:
        await llm.unload()
    assert tokens.text == result.output["text"]
    assert 0 < result.usage.completion_tokens <= 4


async def test_greedy_and_seeded_sampling_repeat_exactly(tiny_llm_dir: Path) -> None:
    llm = engine()
    try:
        greedy = [
            (await generate(llm, tiny_llm_dir, prompt="fox", max_tokens=8, temperature=0))[0]
            for _ in range(2)
        ]
        seeded = [
            (
                await generate(
                    llm, tiny_llm_dir, prompt="fox", max_tokens=8, temperature=1.0, seed=3
                )
            )[0]
            for _ in range(2)
        ]
    finally:
        await llm.unload()
    assert greedy[0].output["text"] == greedy[1].output["text"]
    assert seeded[0].output["text"] == seeded[1].output["text"]


async def test_a_stop_string_ends_the_output_before_it(tiny_llm_dir: Path) -> None:
    llm = engine()
    try:
        free, _ = await generate(llm, tiny_llm_dir, prompt="dog", max_tokens=24, temperature=0)
        text = free.output["text"]
        assert len(text) >= 6, f"too short to pick a stop string from: {text!r}"
        stop = text[len(text) // 2 : len(text) // 2 + 2]
        stopped, tokens = await generate(
            llm, tiny_llm_dir, prompt="dog", max_tokens=24, temperature=0, stop=[stop]
        )
    finally:
        await llm.unload()
    assert stopped.output["text"] == text[: text.find(stop)]
    assert tokens.text == stopped.output["text"]
    assert stopped.output["finish_reason"] == "stop"


async def test_two_runs_starting_together_load_the_model_once(
    tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = transformers_llm.load_causal_lm

    def counting_load(*args: Any) -> Any:
        loads.append(args[0])
        return real_load(*args)

    monkeypatch.setattr(transformers_llm, "load_causal_lm", counting_load)
    llm = engine()
    try:
        async with asyncio.timeout(WAIT_S):
            results = await asyncio.gather(
                llm.run(request(tiny_llm_dir, prompt="a", max_tokens=3), Tokens()),
                llm.run(request(tiny_llm_dir, prompt="b", max_tokens=3), Tokens()),
            )
    finally:
        await llm.unload()
    assert loads == [str(tiny_llm_dir)]
    assert all(r.usage.completion_tokens > 0 for r in results)


async def test_unload_frees_the_model_and_a_later_run_loads_it_again(
    tiny_llm_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    real_load = transformers_llm.load_causal_lm

    def counting_load(*args: Any) -> Any:
        loads.append(args[0])
        return real_load(*args)

    monkeypatch.setattr(transformers_llm, "load_causal_lm", counting_load)
    llm = engine()
    try:
        async with asyncio.timeout(WAIT_S):
            await llm.load(ModelRef("tiny", str(tiny_llm_dir)))
            await llm.unload()
        await generate(llm, tiny_llm_dir, prompt="a", max_tokens=2)
    finally:
        await llm.unload()
    assert len(loads) == 2


async def test_a_missing_model_directory_is_a_backend_error(tmp_path: Path) -> None:
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(BackendError, match="could not load"):
            await engine().run(request(tmp_path / "nothing-here", prompt="x"), Tokens())


async def test_input_without_prompt_is_invalid(tiny_llm_dir: Path) -> None:
    async with asyncio.timeout(WAIT_S):
        with pytest.raises(InvalidInput):
            await engine().run(request(tiny_llm_dir, max_tokens=3), Tokens())
