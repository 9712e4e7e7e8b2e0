from __future__ import annotations

import asyncio
import math
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    ModelRef,
)
from gpubridge.engines.openai_remote import OpenAIRemote, create
from gpubridge.errors import BackendError, ConfigurationError, InvalidInput
from tests.support.openai_upstream import Upstream, closed_port, fake_embedding

EngineMaker = Callable[..., OpenAIRemote]


class Tokens:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    @property
    def text(self) -> str:
        return "".join(e.data["text"] for e in self.events if e.kind == "token")


def chat(data: dict[str, Any], model: ModelRef | None = None) -> EngineRequest:
    return EngineRequest("job-1", "llm-4090", model or ModelRef("tiny", "org/tiny"), data)


def embed(data: dict[str, Any]) -> EngineRequest:
    return EngineRequest("job-2", "embedding-l4", ModelRef("emb", "org/emb"), data)


@pytest.fixture
async def make_engine() -> AsyncIterator[EngineMaker]:
    """Builds engines through the factory, and closes their sessions afterwards."""
    built: list[OpenAIRemote] = []

    def make(base_url: str, *, api_key: str | None = None, **options: Any) -> OpenAIRemote:
        config = BackendConfig(
            name="remote", type="openai", options={"base_url": base_url, **options}
        )
        engine = create(config, EngineContext({"remote": api_key} if api_key else {}))
        built.append(engine)
        return engine

    yield make
    for engine in built:
        await engine.unload()


async def test_a_streamed_chat_streams_tokens_and_reads_usage(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    engine = make_engine(upstream.base_url, model="served-name")
    tokens = Tokens()
    async with asyncio.timeout(10):
        result = await engine.run(chat({"prompt": "say hello to me", "stream": True}), tokens)
    assert [e.data["text"] for e in tokens.events] == ["Hello", ",", " world", "!"]
    assert result.output == {"text": "Hello, world!", "finish_reason": "stop", "model": "tiny"}
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 4)
    assert result.usage.compute_seconds > 0
    body = upstream.behaviour.requests[-1]["body"]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == "served-name"
    assert body["messages"] == [{"role": "user", "content": "say hello to me"}]


async def test_a_chat_nobody_streams_asks_for_one_completion(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    engine = make_engine(upstream.base_url, model="served-name")
    tokens = Tokens()
    async with asyncio.timeout(10):
        result = await engine.run(chat({"prompt": "say hello to me"}), tokens)
    assert [e.data["text"] for e in tokens.events] == ["Hello, world!"]
    assert result.output == {"text": "Hello, world!", "finish_reason": "stop", "model": "tiny"}
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (4, 4)
    body = upstream.behaviour.requests[-1]["body"]
    assert body["stream"] is False
    assert "stream_options" not in body


async def test_an_upstream_that_streams_a_chat_nobody_streams_is_read_as_a_stream(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.always_stream = True
    tokens = Tokens()
    async with asyncio.timeout(10):
        result = await make_engine(upstream.base_url).run(chat({"prompt": "a b"}), tokens)
    assert result.output["text"] == tokens.text == "Hello, world!"
    assert [e.data["text"] for e in tokens.events] == ["Hello", ",", " world", "!"]


async def test_chat_passes_sampling_parameters_and_reports_length(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    engine = make_engine(upstream.base_url)
    data = {
        "prompt": "hi",
        "system": "be brief",
        "max_tokens": 2,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": "\n",
    }
    async with asyncio.timeout(10):
        result = await engine.run(chat(data), Tokens())
    assert result.output["text"] == "Hello,"
    assert result.output["finish_reason"] == "length"
    body = upstream.behaviour.requests[-1]["body"]
    assert {k: body[k] for k in ("max_tokens", "temperature", "top_p", "seed", "stop")} == {
        "max_tokens": 2,
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["\n"],
    }
    assert body["messages"][0] == {"role": "system", "content": "be brief"}


async def test_the_upstream_model_is_mapped_by_public_id_else_the_source(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    engine = make_engine(upstream.base_url, model_map={"big": "org/big-awq"})
    async with asyncio.timeout(10):
        await engine.run(chat({"prompt": "x"}, ModelRef("big", "org/big")), Tokens())
        await engine.run(chat({"prompt": "x"}, ModelRef("small", "org/small")), Tokens())
    sent = [r["body"]["model"] for r in upstream.behaviour.requests]
    assert sent == ["org/big-awq", "org/small"]


async def test_messages_are_sent_as_given(upstream: Upstream, make_engine: EngineMaker) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "again"},
    ]
    async with asyncio.timeout(10):
        await make_engine(upstream.base_url).run(chat({"messages": messages}), Tokens())
    assert upstream.behaviour.requests[-1]["body"]["messages"] == messages


async def test_without_upstream_usage_a_streams_token_counts_are_estimated(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.send_usage = False
    prompt = "twelve chars"
    async with asyncio.timeout(10):
        request = chat({"prompt": prompt, "stream": True})
        result = await make_engine(upstream.base_url).run(request, Tokens())
    assert result.usage.completion_tokens == 4  # one a chunk
    assert result.usage.prompt_tokens == math.ceil(len(prompt) / 4)


async def test_without_upstream_usage_one_completions_token_counts_are_estimated(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.send_usage = False
    upstream.behaviour.reply = ("A longer answer than one chunk would suggest.",)
    prompt = "twelve chars"
    async with asyncio.timeout(10):
        result = await make_engine(upstream.base_url).run(chat({"prompt": prompt}), Tokens())
    assert result.usage.completion_tokens == math.ceil(len(upstream.behaviour.reply[0]) / 4)
    assert result.usage.prompt_tokens == math.ceil(len(prompt) / 4)


async def test_an_upstream_that_ignores_streaming_still_yields_the_completion(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.ignore_stream = True
    tokens = Tokens()
    async with asyncio.timeout(10):
        request = chat({"prompt": "a b", "stream": True})
        result = await make_engine(upstream.base_url).run(request, tokens)
    assert result.output["text"] == tokens.text == "Hello, world!"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (2, 4)


async def test_a_malformed_stream_is_a_backend_error(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.garbage = True
    async with asyncio.timeout(10):
        with pytest.raises(BackendError, match="malformed"):
            await make_engine(upstream.base_url).run(chat({"prompt": "hi"}), Tokens())


async def test_the_api_key_is_sent_as_a_bearer_token(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.api_key = "sk-right"
    engine = make_engine(upstream.base_url, api_key="sk-right")
    async with asyncio.timeout(10):
        result = await engine.run(chat({"prompt": "hi"}), Tokens())
    assert result.output["text"] == "Hello, world!"
    assert upstream.behaviour.requests[-1]["authorization"] == "Bearer sk-right"


async def test_a_rejected_api_key_is_a_backend_error_that_does_not_leak_it(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.api_key = "sk-right"
    engine = make_engine(upstream.base_url, api_key="sk-wrong-secret")
    async with asyncio.timeout(10):
        with pytest.raises(BackendError) as caught:
            await engine.run(chat({"prompt": "hi"}), Tokens())
    assert caught.value.details["status"] == 401
    assert "sk-wrong-secret" not in str(caught.value.to_dict())


async def test_an_upstream_500_is_a_backend_error_with_its_status(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.fail_status = 500
    async with asyncio.timeout(10):
        with pytest.raises(BackendError) as caught:
            await make_engine(upstream.base_url).run(chat({"prompt": "hi"}), Tokens())
    assert caught.value.details["status"] == 500
    assert "HTTP 500: upstream failure" in caught.value.message


async def test_an_upstream_told_to_fail_every_third_request_fails_those_in_turn(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.fail_every = 3
    upstream.behaviour.fail_every_how = (500, "drop")
    engine = make_engine(upstream.base_url)
    outcomes = []
    async with asyncio.timeout(10):
        for _ in range(6):
            try:
                await engine.run(chat({"prompt": "hi"}), Tokens())
            except BackendError as exc:
                outcomes.append(exc.details.get("status", "dropped"))
            else:
                outcomes.append("ok")
    assert outcomes == ["ok", "ok", 500, "ok", "ok", "dropped"]
    assert (upstream.behaviour.posts, upstream.behaviour.failed) == (6, 2)


async def test_a_refused_connection_is_a_backend_error(make_engine: EngineMaker) -> None:
    engine = make_engine(f"http://127.0.0.1:{closed_port()}/v1")
    async with asyncio.timeout(10):
        with pytest.raises(BackendError, match="remote"):
            await engine.run(chat({"prompt": "hi"}), Tokens())
        with pytest.raises(BackendError):
            await engine.run(embed({"text": "hi"}), Tokens())


async def test_a_connection_closed_mid_stream_is_a_backend_error(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.drop_after = 2
    tokens = Tokens()
    async with asyncio.timeout(10):
        with pytest.raises(BackendError):
            request = chat({"prompt": "hi", "stream": True})
            await make_engine(upstream.base_url).run(request, tokens)
    assert tokens.text == "Hello,"


async def test_an_upstream_that_never_answers_times_out_as_a_backend_error(
    make_engine: EngineMaker,
) -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        engine = make_engine(f"http://127.0.0.1:{port}/v1", timeout_s=0.3)
        async with asyncio.timeout(10):
            with pytest.raises(BackendError, match="timed out"):
                await engine.run(chat({"prompt": "hi"}), Tokens())


async def test_one_text_embeds_to_one_vector(upstream: Upstream, make_engine: EngineMaker) -> None:
    async with asyncio.timeout(10):
        result = await make_engine(upstream.base_url).run(embed({"text": "a cat"}), Tokens())
    assert result.output == {"embedding": fake_embedding("a cat", 8), "dimensions": 8}
    assert result.usage.prompt_tokens == 2
    assert upstream.behaviour.requests[-1]["body"]["input"] == "a cat"


async def test_a_list_of_texts_embeds_to_vectors_in_order(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    texts = ["one", "two words", "three"]
    async with asyncio.timeout(10):
        result = await make_engine(upstream.base_url).run(embed({"text": texts}), Tokens())
    assert result.output["embeddings"] == [fake_embedding(t, 8) for t in texts]
    assert result.output["dimensions"] == 8
    assert result.usage.prompt_tokens == 4


async def test_an_embeddings_connection_closed_early_is_a_backend_error(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.drop_after = 0
    async with asyncio.timeout(10):
        with pytest.raises(BackendError):
            await make_engine(upstream.base_url).run(embed({"text": "x"}), Tokens())


async def test_health_asks_the_models_endpoint(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    async with asyncio.timeout(10):
        assert await make_engine(upstream.base_url).health() is True
        assert await make_engine(f"http://127.0.0.1:{closed_port()}/v1").health() is False
    assert upstream.behaviour.requests[-1]["path"] == "/v1/models"


async def test_input_without_a_prompt_is_invalid(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    async with asyncio.timeout(10):
        with pytest.raises(InvalidInput):
            await make_engine(upstream.base_url).run(chat({"max_tokens": 3}), Tokens())
    assert not upstream.behaviour.requests


async def test_a_service_it_does_not_serve_is_a_backend_error(make_engine: EngineMaker) -> None:
    request = EngineRequest("j", "whisper-l4", ModelRef("w", "w"), {"audio_url": "x"})
    async with asyncio.timeout(10):
        with pytest.raises(BackendError, match="whisper-l4"):
            await make_engine("http://127.0.0.1:1/v1").run(request, Tokens())


def test_options_without_a_base_url_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="remote"):
        OpenAIRemote(BackendConfig(name="remote", type="openai", options={"model": "x"}))


async def test_a_slow_upstream_is_waited_for_within_the_timeout(
    upstream: Upstream, make_engine: EngineMaker
) -> None:
    upstream.behaviour.delay_s = 0.2
    async with asyncio.timeout(10):
        result = await make_engine(upstream.base_url, timeout_s=5).run(
            chat({"prompt": "x"}), Tokens()
        )
    assert result.output["text"] == "Hello, world!"
    assert result.usage.compute_seconds >= 0.2
