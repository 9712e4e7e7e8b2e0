"""Drive engines directly in tests: build an engine from its factory, build requests with media,
run them with a bounded wait while collecting what they emit, and build tiny model directories
once per test run.

    captioner = engine(create, "blip-caption")
    req = request("caption", {"max_tokens": 4}, media=media_input("image_url", png_bytes()),
                  model=ModelRef("tiny-blip", str(tiny_blip_dir)))
    result, events = await run(captioner, req, unload=True)
    assert events.stages() == ["loading_model", "model_loaded"]
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    Engine,
    EngineContext,
    EngineEvent,
    EngineRequest,
    EngineResult,
    MediaInput,
    ModelRef,
)

E = TypeVar("E", bound=Engine)


class Events(list[EngineEvent]):
    """A list-collecting ``Emit``: pass it where an engine wants ``emit``, then read it."""

    async def __call__(self, event: EngineEvent) -> None:
        self.append(event)

    def progress(self, stage: str | None = None) -> list[dict[str, Any]]:
        """The data of each progress event (of ``stage`` only, when given)."""
        return [
            e.data
            for e in self
            if e.kind == "progress" and (stage is None or e.data.get("stage") == stage)
        ]

    def stages(self) -> list[str]:
        """The stage of each progress event, in order."""
        return [str(data.get("stage", "")) for data in self.progress()]

    def steps(self, stage: str = "denoising") -> list[tuple[int, int]]:
        """``(step, total)`` of each progress event of ``stage``."""
        return [(data["step"], data["total"]) for data in self.progress(stage)]

    @property
    def text(self) -> str:
        """The streamed token text."""
        return "".join(e.data["text"] for e in self if e.kind == "token")


def media_input(field: str, data: bytes, content_type: str = "image/png") -> MediaInput:
    """A fetched media input, as the gateway hands it to engines."""
    return MediaInput(field, data, content_type)


def request(
    service: str,
    input: dict[str, Any] | None = None,
    *,
    media: MediaInput | Iterable[MediaInput] = (),
    model: ModelRef | Path | str = "tiny",
    job_id: str = "job-1",
) -> EngineRequest:
    """An ``EngineRequest``; ``model`` is a ``ModelRef`` or a source (then the id is "tiny")."""
    if not isinstance(model, ModelRef):
        model = ModelRef("tiny", str(model))
    files = [media] if isinstance(media, MediaInput) else list(media)
    return EngineRequest(job_id, service, model, dict(input or {}), {m.field: m for m in files})


def engine(
    create: Callable[[BackendConfig, EngineContext], E],
    type_key: str,
    *,
    name: str | None = None,
    context: EngineContext | None = None,
    **options: Any,
) -> E:
    """An engine made by its module's ``create`` for a backend of ``type_key`` with ``options``."""
    config = BackendConfig(name=name or f"local-{type_key}", type=type_key, options=options)
    return create(config, context or EngineContext())


def cuda_engine(
    create: Callable[[BackendConfig, EngineContext], E], type_key: str, dtype: str = "float16"
) -> E:
    """``engine(create, type_key)`` on CUDA in ``dtype``; skips the test where CUDA is missing."""
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    return engine(create, type_key, device="cuda", dtype=dtype)


async def run(
    target: Engine, req: EngineRequest, *, timeout_s: float = 120, unload: bool = False
) -> tuple[EngineResult, Events]:
    """Run ``req`` for at most ``timeout_s``; the result and the events emitted (progress
    events sent from worker threads included). ``unload``: unload the engine afterwards,
    whether the run succeeded or not."""
    events = Events()
    try:
        async with asyncio.timeout(timeout_s):
            result = await target.run(req, events)
        await asyncio.sleep(0)  # let callbacks scheduled from worker threads land
        return result, events
    finally:
        if unload:
            await target.unload()


def model_dir_fixture(build: Callable[..., Path], directory: str, **options: Any) -> Any:
    """A session fixture returning ``build(<a fresh temporary directory>, **options)``; assign it
    to the fixture's name in a conftest: ``tiny_blip_dir = model_dir_fixture(build_tiny_blip,
    "tiny-blip")``."""

    @pytest.fixture(scope="session")
    def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
        return build(tmp_path_factory.mktemp(directory), **options)

    return built
