"""The OpenAI-compatible routes, driven by the official ``openai`` client against the real app:
chat (plain and streamed) and embeddings on the loopback OpenAI upstream, transcriptions,
speech and images on recording test doubles; the same jobs, holds and charges as POST /run."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import auth, register, running_app, settings_for, write_catalog
from tests.support.media_doubles import MediaDoubles, speech_bytes, use_media_doubles
from tests.support.media_server import png_bytes, wav_bytes
from tests.support.openai_upstream import fake_embedding, serve_openai_upstream

EMAIL = "openai@example.com"
BASE = "http://gpubridge.test"
CREDIT = 10_000_000
MESSAGES = [{"role": "user", "content": "Say hello"}]
LLM = "llama-3.1-8b-instant"
WAV = wav_bytes(1.0)


@dataclass
class Door:
    app: Any
    http: httpx.AsyncClient
    key: str
    client: openai.AsyncOpenAI
    doubles: MediaDoubles

    async def balance(self) -> int:
        response = await self.http.get("/account/balance", headers=auth(self.key))
        return round(response.json()["balance"] * 1_000_000)

    async def job(self, job_id: str) -> dict[str, Any]:
        body: dict[str, Any] = (await self.http.get(f"/status/{job_id}")).json()
        return body


def openai_client(app: Any, key: str) -> openai.AsyncOpenAI:
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    return openai.AsyncOpenAI(api_key=key, base_url=f"{BASE}/v1", http_client=http, max_retries=0)


@pytest.fixture
async def door(database, database_url: str, tmp_path: Path, upstream) -> AsyncIterator[Door]:
    def edit(data: dict[str, Any]) -> None:
        use_upstream(upstream.base_url)(data)
        use_media_doubles(data)

    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    settings = settings_for(
        database_url, tmp_path, catalog, inline_output_bytes=64, media_max_bytes=100_000
    )
    doubles = MediaDoubles()
    async with running_app(settings) as (app, http):
        for kind, factory in doubles.factories().items():
            app.state.components.registry.register(kind, factory)
        key = await register(http, EMAIL)
        await app.state.gateway.grant(EMAIL, CREDIT)
        client = openai_client(app, key)
        try:
            yield Door(app, http, key, client, doubles)
        finally:
            await client.close()
            upstream.behaviour.reset()


# -- chat -----------------------------------------------------------------------------------------
async def test_a_chat_completion_is_a_job_on_the_ledger(door):
    raw = await door.client.chat.completions.with_raw_response.create(
        model="llama-3.1-8b-instant", messages=MESSAGES, max_tokens=16
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == "Hello, world!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.model == "llama-3.1-8b-instant"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    job_id = raw.headers["x-gpubridge-job-id"]
    assert completion.id == f"chatcmpl-{job_id}"
    job = await door.job(job_id)
    assert job["status"] == "completed" and job["service"] == "llm-4090"
    assert job["cost_usd"] > 0
    assert await door.balance() == CREDIT - round(job["cost_usd"] * 1_000_000)
    history = (await door.http.get("/account/jobs", headers=auth(door.key))).json()
    assert [j["id"] for j in history["jobs"]] == [job_id]


async def test_without_a_model_the_default_one_answers(door):
    response = await door.http.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "developer", "content": [{"type": "text", "text": "Hi"}]}]},
        headers=auth(door.key),
    )
    assert response.status_code == 200, response.text
    assert response.json()["model"] == "llama-3.3-70b-versatile"


async def test_a_streamed_chat_sends_chunks_from_the_token_stream_then_usage_and_done(door):
    stream = await door.client.chat.completions.create(
        model="llama-3.1-8b-instant",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    contents = [
        c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content
    ]
    assert contents == ["Hello", ",", " world", "!"]  # token by token, as the upstream sent them
    assert chunks[0].choices[0].delta.role == "assistant"
    finished = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finished] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0
    assert {c.id for c in chunks} == {chunks[0].id}

    response = await door.http.post(
        "/v1/chat/completions", json={"messages": MESSAGES, "stream": True}, headers=auth(door.key)
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    assert data[-1] == "[DONE]"
    assert all("usage" not in json.loads(d) for d in data[:-1])
    job = await door.job(response.headers["x-gpubridge-job-id"])
    assert job["status"] == "completed"


async def test_a_backend_failing_mid_stream_cancels_and_refunds_the_job(
    database, database_url, tmp_path
):
    with (
        serve_openai_upstream(drop_after=2) as breaking,
        serve_openai_upstream(delay_s=0.5) as healthy,
    ):

        def edit(data: dict[str, Any]) -> None:
            use_upstream(breaking.base_url)(data)
            data["services"]["llm-4090"]["backends"].append(
                {**data["services"]["llm-4090"]["backends"][0], "name": "healthy"}
            )
            data["services"]["llm-4090"]["backends"][1]["options"] = {
                **data["services"]["llm-4090"]["backends"][0]["options"],
                "base_url": healthy.base_url,
            }

        catalog = write_catalog(tmp_path / "catalog.yaml", edit)
        async with running_app(settings_for(database_url, tmp_path, catalog)) as (app, http):
            key = await register(http, EMAIL)
            await app.state.gateway.grant(EMAIL, CREDIT)
            client = openai_client(app, key)
            stream = await client.chat.completions.create(model=LLM, messages=MESSAGES, stream=True)
            received: list[str] = []
            with pytest.raises(openai.APIError, match="cancelled and refunded"):
                async for chunk in stream:
                    received.append(chunk.choices[0].delta.content or "")
            await client.close()
            assert "".join(received) == "Hello,"
            history = (await http.get("/account/jobs", headers=auth(key))).json()["jobs"]
            assert history[0]["status"] == "cancelled"
            balance = (await http.get("/account/balance", headers=auth(key))).json()["balance"]
            assert round(balance * 1_000_000) == CREDIT


# -- embeddings and models ------------------------------------------------------------------------
async def test_embeddings_come_back_in_order_as_floats_or_base64(door):
    texts = ["first text", "second text"]
    floats = await door.client.embeddings.create(
        model="bge-m3", input=texts, encoding_format="float"
    )
    assert [d.index for d in floats.data] == [0, 1]
    assert [d.embedding for d in floats.data] == [fake_embedding(t, 8) for t in texts]
    assert floats.model == "bge-m3" and floats.usage.prompt_tokens > 0
    # The client asks for base64 when no format is given and decodes it itself.
    decoded = await door.client.embeddings.create(model="bge-large-en-v1.5", input="first text")
    assert decoded.data[0].embedding == pytest.approx(fake_embedding("first text", 8), abs=1e-6)


async def test_openai_embedding_model_names_run_the_default_embedding_model(door):
    for name in ("text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"):
        answer = await door.client.embeddings.create(model=name, input="first text")
        assert answer.model == "bge-large-en-v1.5", name
        assert answer.data[0].embedding == pytest.approx(fake_embedding("first text", 8), abs=1e-6)


async def test_models_lists_the_catalog_models_of_the_openai_services(door):
    models = [m async for m in door.client.models.list()]
    ids = {m.id for m in models}
    assert {"llama-3.3-70b-versatile", "bge-m3", "whisper-large-v3-turbo"} <= ids
    assert {"kokoro-82m", "flux-schnell"} <= ids
    assert "blip-large" not in ids  # other services are not on these routes
    model = await door.client.models.retrieve("qwen/qwen3-32b")
    assert model.id == "qwen/qwen3-32b" and model.object == "model"


# -- errors ---------------------------------------------------------------------------------------
async def test_an_unknown_model_is_a_404_model_not_found_in_openai_shape(door):
    with pytest.raises(openai.NotFoundError) as caught:
        await door.client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    error = caught.value.body
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert error["type"] == "invalid_request_error" and "gpt-4o" in error["message"]
    with pytest.raises(openai.NotFoundError) as mistyped:
        await door.client.chat.completions.create(model="llama-3.1-8b", messages=MESSAGES)
    assert mistyped.value.body["code"] == "model_not_found"
    assert "did you mean `llama-3.1-8b-instant`?" in mistyped.value.body["message"]
    assert await door.balance() == CREDIT


async def test_without_a_key_the_answer_is_a_402_with_the_x402_requirements(door):
    response = await door.http.post("/v1/chat/completions", json={"messages": MESSAGES})
    assert response.status_code == 402
    assert response.headers["payment-required"]
    body = response.json()
    assert body["x402Version"] == 1
    assert body["accepts"][0]["resource"] == f"{BASE}/v1/chat/completions"
    assert int(body["accepts"][0]["maxAmountRequired"]) > 0
    # An upload is not decoded for an unpaid request: it is asked the ceiling of any audio,
    # the service's time limit (what the job does not use stays in the wallet account).
    files = {"file": ("speech.wav", WAV, "audio/wav")}
    response = await door.http.post("/v1/audio/transcriptions", files=files)
    assert response.status_code == 402
    catalog = door.app.state.gateway.catalog
    whisper = catalog.service("whisper-l4")
    ceiling = catalog.quote(whisper, whisper.default_model).ceiling_micros
    assert ceiling > 50_000  # more than the minimum a one-second clip would cost
    assert int(response.json()["accepts"][0]["maxAmountRequired"]) == ceiling


async def test_payment_and_key_errors_keep_their_status_in_openai_shape(door):
    broke = await register(door.http, "broke@example.com")
    client = openai_client(door.app, broke)
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(messages=MESSAGES, model="llama-3.1-8b-instant")
    await client.close()
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert caught.value.body["type"] == "insufficient_quota"

    client = openai_client(door.app, "gpub_not-a-key")
    with pytest.raises(openai.AuthenticationError) as unauthorized:
        await client.embeddings.create(model="bge-m3", input="x")
    await client.close()
    assert unauthorized.value.body["code"] == "invalid_api_key"


async def test_bad_parameters_are_4xx_naming_the_parameter_and_charge_nothing(door):
    with pytest.raises(openai.BadRequestError) as unknown:
        await door.client.chat.completions.create(
            model=LLM, messages=MESSAGES, extra_body={"colour": "red"}
        )
    assert unknown.value.body["code"] == "unknown_parameter"
    assert unknown.value.body["param"] == "colour"
    assert "did you mean" not in unknown.value.body["message"]
    with pytest.raises(openai.BadRequestError) as mistyped:
        await door.client.chat.completions.create(
            model=LLM, messages=MESSAGES, extra_body={"max_token": 16}
        )
    assert mistyped.value.body["code"] == "unknown_parameter"
    assert mistyped.value.body["param"] == "max_token"
    assert "did you mean `max_tokens`?" in mistyped.value.body["message"]
    with pytest.raises(openai.BadRequestError) as tools:
        await door.client.chat.completions.create(
            model=LLM, messages=MESSAGES, tools=[{"type": "function", "function": {"name": "f"}}]
        )
    assert tools.value.body["param"] == "tools"
    with pytest.raises(openai.UnprocessableEntityError) as schema:
        await door.client.chat.completions.create(model=LLM, messages=MESSAGES, max_tokens=100_000)
    assert schema.value.body["param"] == "max_tokens"
    with pytest.raises(openai.UnprocessableEntityError) as size:
        await door.client.images.generate(prompt="a cat", size="100x100")
    assert size.value.body["param"] == "size"
    response = await door.http.get("/v1/nothing-here")
    assert response.status_code == 404 and set(response.json()["error"]) == {
        "message",
        "type",
        "code",
        "param",
    }
    assert await door.balance() == CREDIT


async def test_a_failed_job_is_a_5xx_and_refunded(door, upstream):
    upstream.behaviour.fail_status = 500
    with pytest.raises(openai.InternalServerError) as caught:
        await door.client.chat.completions.create(model=LLM, messages=MESSAGES)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "server_error"
    assert "refunded" in caught.value.body["message"]
    assert caught.value.response.headers["x-gpubridge-job-id"]
    assert await door.balance() == CREDIT


# -- audio ----------------------------------------------------------------------------------------
async def test_an_uploaded_file_reaches_the_engine_as_media_without_its_bytes_in_the_job(door):
    raw = await door.client.audio.transcriptions.with_raw_response.create(
        file=("my talk.wav", WAV, "audio/wav"),
        model="whisper-1",
        language="en",
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    transcript = raw.parse()
    assert transcript.text == "hello there"
    assert transcript.duration == 1.25 and transcript.language == "en"
    assert [s.text for s in transcript.segments] == ["hello", "there"]
    assert [w.word for w in transcript.words] == ["hello", "there"]

    request = door.doubles.transcriber.seen[-1]
    assert request.media["audio_url"].data == WAV
    assert request.media["audio_url"].content_type == "audio/wav"
    assert request.input["audio_url"] == "upload:my_talk.wav"
    assert request.input["timestamps"] == "word" and request.input["language"] == "en"
    assert request.model.id == "whisper-large-v3-turbo"
    job_id = raw.headers["x-gpubridge-job-id"]
    async with door.app.state.gateway.db.connect() as conn:
        from gpubridge.jobs import store

        stored = await store.get_job(conn, job_id)
    assert stored.input == {
        "audio_url": "upload:my_talk.wav",
        "task": "transcribe",
        "timestamps": "word",
        "language": "en",
    }
    job = await door.job(job_id)
    assert job["cost_usd"] == 0.05  # 1.25 s of audio, at the minimum charge


async def test_transcripts_come_as_text_srt_and_vtt(door):
    text = await door.client.audio.transcriptions.create(
        file=("a.wav", WAV), model="whisper-1", response_format="text"
    )
    assert text.strip() == "hello there"
    assert door.doubles.transcriber.seen[-1].input["timestamps"] == "none"
    srt = await door.client.audio.transcriptions.create(
        file=("a.wav", WAV), model="whisper-large-v3", response_format="srt"
    )
    assert srt.startswith("1\n00:00:00,000 --> 00:00:00,600\nhello\n\n2\n00:00:00,600")
    vtt = await door.client.audio.transcriptions.create(
        file=("a.wav", WAV), model="whisper-1", response_format="vtt"
    )
    assert vtt.startswith("WEBVTT\n\n00:00:00.000 --> 00:00:00.600\nhello")
    translated = await door.client.audio.translations.create(file=("a.wav", WAV), model="whisper-1")
    assert translated.text == "hello there"
    assert door.doubles.transcriber.seen[-1].input["task"] == "translate"


async def test_uploads_get_the_checks_fetched_media_get_before_any_charge(door):
    with pytest.raises(openai.UnprocessableEntityError) as not_audio:
        await door.client.audio.transcriptions.create(
            file=("notes.wav", b"just some text", "audio/wav"), model="whisper-1"
        )
    assert not_audio.value.body["code"] == "unsupported_media"
    assert not_audio.value.body["param"] == "file"
    with pytest.raises(openai.UnprocessableEntityError) as too_big:
        await door.client.audio.transcriptions.create(
            file=("long.wav", wav_bytes(4.0), "audio/wav"), model="whisper-1"
        )
    assert too_big.value.body["code"] == "media_too_large"
    assert too_big.value.body["param"] == "file"
    assert door.doubles.transcriber.seen == []
    assert await door.balance() == CREDIT


async def test_an_idempotent_retry_of_an_upload_returns_the_same_job(door):
    headers = {"Idempotency-Key": "upload-1"}
    first = await door.client.audio.transcriptions.with_raw_response.create(
        file=("a.wav", WAV), model="whisper-1", extra_headers=headers
    )
    again = await door.client.audio.transcriptions.with_raw_response.create(
        file=("a.wav", WAV), model="whisper-1", extra_headers=headers
    )
    assert first.headers["x-gpubridge-job-id"] == again.headers["x-gpubridge-job-id"]
    assert len(door.doubles.transcriber.seen) == 1
    with pytest.raises(openai.ConflictError):
        await door.client.audio.transcriptions.create(
            file=("a.wav", wav_bytes(0.5)), model="whisper-1", extra_headers=headers
        )


async def test_speech_answers_the_audio_bytes_with_their_content_type(door):
    for fmt, content_type in [("wav", "audio/wav"), ("mp3", "audio/mpeg")]:
        response = await door.client.audio.speech.create(
            model="tts-1", voice="alloy", input="Hello there", response_format=fmt, speed=1.5
        )
        assert response.response.headers["content-type"] == content_type
        assert response.content == speech_bytes(fmt)
    request = door.doubles.speaker.seen[-1]
    assert request.input == {
        "text": "Hello there",
        "format": "mp3",
        "voice": "af_alloy",
        "speed": 1.5,
    }
    kokoro = await door.http.post(
        "/v1/audio/speech",
        json={"input": "Hi", "voice": "bf_emma", "response_format": "wav"},
        headers=auth(door.key),
    )
    assert kokoro.status_code == 200 and kokoro.content == speech_bytes("wav")
    assert door.doubles.speaker.seen[-1].input["voice"] == "bf_emma"


# -- images ---------------------------------------------------------------------------------------
async def test_images_come_back_as_base64_or_urls_to_the_files(door):
    result = await door.client.images.generate(
        prompt="a red square", n=2, size="256x512", response_format="b64_json", model="dall-e-3"
    )
    assert [base64.b64decode(d.b64_json) for d in result.data] == [
        png_bytes(16, 16, seed=0),
        png_bytes(16, 16, seed=1),
    ]
    request = door.doubles.painter.seen[-1]
    assert request.input == {
        "prompt": "a red square",
        "num_outputs": 2,
        "width": 256,
        "height": 512,
    }
    assert request.model.id == "flux-schnell"

    result = await door.client.images.generate(prompt="a blue square", model="sdxl-lightning")
    assert len(result.data) == 1 and result.created > 0
    url = result.data[0].url
    assert url.startswith(f"{BASE}/files/")
    downloaded = await door.http.get(url)
    assert downloaded.content == png_bytes(16, 16, seed=0)
    assert downloaded.headers["content-type"] == "image/png"


async def test_openapi_describes_every_v1_route(door):
    document = (await door.http.get("/openapi.json")).json()
    described = {p for p in document["paths"] if p.startswith("/v1/")}
    mounted = {
        route.path.replace(":path", "")
        for route in door.app.routes
        if getattr(route, "path", "").startswith("/v1/")
    }
    assert described == mounted
    upload = document["paths"]["/v1/audio/transcriptions"]["post"]["requestBody"]["content"]
    assert set(upload) == {"multipart/form-data"}
    assert "OpenAIError" in document["components"]["schemas"]


async def test_a_job_that_does_not_finish_in_time_is_cancelled_refunded_and_a_504(
    door, monkeypatch
):
    gateway = door.app.state.gateway
    wait = gateway.wait
    monkeypatch.setattr(gateway, "wait", lambda job, timeout_s: wait(job, 0.2))
    door.doubles.speaker.gate = asyncio.Event()
    try:
        with pytest.raises(openai.InternalServerError) as caught:
            await door.client.audio.speech.create(model="tts-1", voice="nova", input="Hi")
    finally:
        door.doubles.speaker.gate.set()
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "timeout"
    assert caught.value.response.headers["x-should-retry"] == "false"
    job = await door.job(caught.value.response.headers["x-gpubridge-job-id"])
    assert job["status"] == "cancelled"
    assert await door.balance() == CREDIT
