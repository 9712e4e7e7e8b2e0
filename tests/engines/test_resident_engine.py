from __future__ import annotations

import pytest

from gpubridge.engines.base import BackendConfig, EngineEvent, ModelRef
from gpubridge.engines.resident_engine import ResidentEngine, pick_dtype, timed
from gpubridge.errors import BackendError, InvalidInput


class Echo(ResidentEngine[str]):
    """Loads ``loaded:<source>:<device>``; sources named ``broken`` or ``invalid`` fail."""

    def __init__(self, **options: object) -> None:
        super().__init__(BackendConfig(name="echo", type="echo", options=options))
        self.loads: list[str] = []

    def load_model(self, ref: ModelRef) -> str:
        self.loads.append(ref.source)
        if ref.source == "broken":
            raise OSError("no weights here")
        if ref.source == "invalid":
            raise InvalidInput("bad model")
        return f"loaded:{ref.source}:{self.option(ref, 'device')}"


async def test_a_model_loads_once_and_stays_until_unload() -> None:
    engine = Echo(device="cpu")
    events: list[EngineEvent] = []

    async def emit(event: EngineEvent) -> None:
        events.append(event)

    ref = ModelRef("tiny", "src", {"device": "meta"})
    assert await engine.model(ref, emit) == "loaded:src:meta"
    assert await engine.model(ref) == "loaded:src:meta"
    assert engine.loads == ["src"]
    assert [e.data["model"] for e in events] == ["tiny", "tiny"]
    await engine.unload()
    await engine.load(ref)
    assert engine.loads == ["src", "src"]
    assert await engine.health()


async def test_a_failed_load_names_the_engine_and_the_source() -> None:
    engine = Echo()
    with pytest.raises(BackendError, match="echo: could not load broken: no weights here"):
        await engine.model(ModelRef("m", "broken"))
    with pytest.raises(InvalidInput):
        await engine.model(ModelRef("m", "invalid"))


def test_model_options_override_backend_options() -> None:
    engine = Echo(device="cpu", steps=4)
    ref = ModelRef("m", "src", {"steps": 2})
    assert engine.options_for(ref) == {"device": "cpu", "steps": 2}
    assert engine.option(ref, "steps") == 2
    assert engine.option(ref, "device") == "cpu"
    assert engine.option(ref, "missing", 7) == 7


async def test_timed_work_returns_its_seconds_and_wraps_failures() -> None:
    result, seconds = await timed("echo", lambda: 42)
    assert result == 42 and seconds >= 0

    def fail() -> None:
        raise RuntimeError("boom")

    def refuse() -> None:
        raise InvalidInput("no")

    with pytest.raises(BackendError, match="echo: captioning failed: RuntimeError"):
        await Echo().timed(fail, "captioning")
    with pytest.raises(InvalidInput):
        await timed("echo", refuse)


def test_dtypes_default_to_half_precision_on_cuda_only() -> None:
    import torch

    assert pick_dtype(None, "cpu") is torch.float32
    assert pick_dtype("auto", "cuda:0") is torch.float16
    assert pick_dtype("bfloat16", "cpu") is torch.bfloat16
    with pytest.raises(ValueError, match="unknown dtype"):
        pick_dtype("float13", "cuda")
