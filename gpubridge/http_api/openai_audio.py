"""``/v1/audio/transcriptions`` and ``/translations`` (whisper-l4, a multipart upload) and
``/v1/audio/speech`` (tts-l4, answered with the audio bytes)."""

from __future__ import annotations

import base64
import math
import re
from typing import Any

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Message

from gpubridge.engines.base import MediaInput
from gpubridge.errors import BackendError, BadRequest
from gpubridge.http_api.openai_door import (
    caller,
    checked_fields,
    finish,
    invalid,
    model_for,
    read_json,
    submit,
    unsupported,
)
from gpubridge.http_api.openai_errors import name_params
from gpubridge.http_api.requests import gateway_of

TRANSCRIPTION_SERVICE = "whisper-l4"
SPEECH_SERVICE = "tts-l4"

TRANSCRIPT_FORMATS = {"json", "text", "srt", "verbose_json", "vtt"}
SPEECH_FORMATS = {"mp3", "wav", "flac", "opus"}
OPENAI_VOICES = {
    "alloy": "af_alloy",
    "ash": "am_adam",
    "ballad": "bm_george",
    "coral": "af_heart",
    "echo": "am_echo",
    "fable": "bm_fable",
    "nova": "af_nova",
    "onyx": "am_onyx",
    "sage": "af_sarah",
    "shimmer": "af_bella",
    "verse": "am_michael",
}
"""OpenAI's voice names and the Kokoro voice each stands for; Kokoro names work as they are."""

_FORM_FIELDS = {
    "file",
    "model",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "timestamp_granularities",
    "stream",
}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


# -- transcriptions -----------------------------------------------------------------------------
async def transcriptions(request: Request) -> Response:
    return await _transcribe(request, "transcribe")


async def translations(request: Request) -> Response:
    return await _transcribe(request, "translate")


async def _transcribe(request: Request, task: str) -> Response:
    account = await caller(request)
    name_params(request, {"audio_url": "file", "timestamps": "timestamp_granularities"})
    request, form = await _read_form(request)
    try:
        fields = {k: v for k, v in form.multi_items() if not isinstance(v, UploadFile)}
        upload = form.get("file")
        granularities = {
            str(value)
            for name in ("timestamp_granularities[]", "timestamp_granularities")
            for value in form.getlist(name)
        }
        allowed = _FORM_FIELDS - ({"language"} if task == "translate" else set())
        checked_fields(
            {**fields, "file": upload}, allowed=allowed, required={"file"}, ignored=frozenset()
        )
        if not isinstance(upload, UploadFile):
            raise invalid("file", "file must be an uploaded audio file")
        data = await upload.read()
        declared = upload.content_type or "application/octet-stream"
        filename = _UNSAFE_NAME.sub("_", upload.filename or "")[:100].strip("._") or "audio"
    finally:
        await form.close()
    response_format = fields.get("response_format", "json")
    if response_format not in TRANSCRIPT_FORMATS:
        raise invalid("response_format", f"response_format must be one of {TRANSCRIPT_FORMATS}")
    if fields.get("stream", "false").lower() != "false":
        raise unsupported("stream", "streamed transcription is not supported")
    if not granularities <= {"word", "segment"}:
        raise invalid("timestamp_granularities", "timestamp_granularities: word and/or segment")
    if response_format != "verbose_json":
        granularities = set()  # only verbose_json carries timestamps: asked for, they are unused
    service = gateway_of(request).catalog.service(TRANSCRIPTION_SERVICE)
    payload: dict[str, Any] = {"audio_url": f"upload:{filename}", "task": task}
    payload["timestamps"] = (
        "word"
        if "word" in granularities
        else "none"
        if response_format in ("json", "text")
        else "segment"
    )
    model = model_for(service, fields.get("model"))
    if model is not None:
        payload["model"] = model
    for name in ("language", "prompt"):
        if name in fields:
            payload[name] = fields[name]
    if "temperature" in fields:
        payload["temperature"] = _number("temperature", fields["temperature"])
    media = {"audio_url": MediaInput("audio_url", data, declared)}
    door = await submit(request, account, TRANSCRIPTION_SERVICE, payload, media=media)
    job = await finish(request, door)
    return _transcript(job.output or {}, response_format, task, granularities, door.headers)


async def _read_form(request: Request) -> tuple[Request, FormData]:
    """The multipart form, and a request that replays its body (the x402 binding digests it).
    ``bodylimit.BodyLimitMiddleware`` caps the body at the media size cap plus the form's
    overhead as it arrives."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise BadRequest(
            "send multipart/form-data with the audio in the file field",
            code="invalid_content_type",
        )
    body = await request.body()
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:  # past the body, what the client does next (its disconnect, once it leaves)
            return await request.receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    replayed = Request(request.scope, replay)
    await replayed.body()
    return replayed, await replayed.form(max_files=1, max_fields=32)


def _number(param: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise invalid(param, f"{param} must be a number") from None
    if not math.isfinite(number):
        raise invalid(param, f"{param} must be a finite number")
    return number


def _transcript(
    output: dict[str, Any],
    response_format: str,
    task: str,
    granularities: set[str],
    headers: dict[str, str],
) -> Response:
    text = str(output.get("text", ""))
    segments = [s for s in output.get("segments") or [] if isinstance(s, dict)]
    duration = float(output.get("duration_seconds") or 0.0)
    if response_format == "text":
        return PlainTextResponse(text, headers=headers)
    if response_format in ("srt", "vtt"):
        body = subtitles(segments, vtt=response_format == "vtt")
        media_type = "text/vtt" if response_format == "vtt" else "text/plain"
        return Response(body, media_type=media_type, headers=headers)
    if response_format == "json":
        usage = {"type": "duration", "seconds": math.ceil(duration)}
        return JSONResponse({"text": text, "usage": usage}, headers=headers)
    verbose: dict[str, Any] = {
        "task": task,
        "language": output.get("language"),
        "duration": duration,
        "text": text,
    }
    if "segment" in granularities or not granularities:
        verbose["segments"] = [
            {"id": i, "start": s.get("start"), "end": s.get("end"), "text": s.get("text", "")}
            for i, s in enumerate(segments)
        ]
    if "word" in granularities:
        verbose["words"] = [
            {"word": w.get("word"), "start": w.get("start"), "end": w.get("end")}
            for s in segments
            for w in s.get("words") or []
        ]
    return JSONResponse(verbose, headers=headers)


def subtitles(segments: list[dict[str, Any]], *, vtt: bool) -> str:
    """SubRip (``srt``) or WebVTT text of timed segments."""
    blocks = ["WEBVTT\n"] if vtt else []
    for i, segment in enumerate(segments, start=1):
        start = _clock(float(segment.get("start") or 0.0), vtt)
        end = _clock(float(segment.get("end") or 0.0), vtt)
        number = "" if vtt else f"{i}\n"
        blocks.append(f"{number}{start} --> {end}\n{str(segment.get('text', '')).strip()}\n")
    return "\n".join(blocks)


def _clock(seconds: float, vtt: bool) -> str:
    millis = round(max(seconds, 0.0) * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{'.' if vtt else ','}{millis:03d}"


# -- speech -------------------------------------------------------------------------------------
async def speech(request: Request) -> Response:
    account = await caller(request)
    body = await read_json(
        request,
        allowed={
            "model",
            "input",
            "voice",
            "response_format",
            "speed",
            "instructions",
            "stream_format",
        },
        required={"input"},
    )
    if body.get("stream_format", "audio") != "audio":
        raise unsupported("stream_format", "only stream_format audio is supported")
    response_format = body.get("response_format", "mp3")
    if not isinstance(response_format, str) or response_format not in SPEECH_FORMATS:
        raise unsupported("response_format", f"response_format must be one of {SPEECH_FORMATS}")
    if body.get("instructions"):
        raise unsupported("instructions", "these voices take no instructions")
    service = gateway_of(request).catalog.service(SPEECH_SERVICE)
    payload: dict[str, Any] = {"text": body["input"], "format": response_format}
    if "voice" in body:
        voice = body["voice"]
        payload["voice"] = OPENAI_VOICES.get(voice, voice) if isinstance(voice, str) else voice
    if "speed" in body:
        payload["speed"] = body["speed"]
    model = model_for(service, body.get("model"))
    if model is not None:
        payload["model"] = model
    name_params(request, {"text": "input", "format": "response_format"})
    door = await submit(request, account, SPEECH_SERVICE, payload)
    job = await finish(request, door)
    audio = (job.output or {}).get("audio")
    if not isinstance(audio, dict) or "file_id" not in audio:
        raise BackendError(f"job {job.id} produced no audio file", code="no_audio")
    if "base64" in audio:
        data = base64.b64decode(audio["base64"])
    else:
        _, data = await gateway_of(request).file(str(audio["file_id"]))
    return Response(data, media_type=str(audio["content_type"]), headers=door.headers)
