from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import (
    BackendConfig,
    EngineContext,
    EngineEvent,
    EngineRequest,
    MediaInput,
    ModelRef,
)
from gpubridge.engines.clip_interrogator import BANKS, ClipInterrogator, create, read_bank
from gpubridge.engines.residency import ModelCache
from gpubridge.errors import InvalidInput
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow

WAIT_S = 120


class Events:
    def __init__(self) -> None:
        self.events: list[EngineEvent] = []

    async def __call__(self, event: EngineEvent) -> None:
        self.events.append(event)

    def progress(self) -> list[dict[str, Any]]:
        return [e.data for e in self.events if e.kind == "progress"]


def engine(blip_dir: Path, cache: ModelCache | None = None) -> ClipInterrogator:
    config = BackendConfig(
        name="local-clip", type="clip-interrogator", options={"caption_model": str(blip_dir)}
    )
    return create(config, EngineContext(models=cache))


def request(source: Path, **data: Any) -> EngineRequest:
    media = {"image_url": MediaInput("image_url", png_bytes(seed=3), "image/png")}
    return EngineRequest("job-1", "clip", ModelRef("tiny-clip", str(source)), data, media)


async def run(clip: ClipInterrogator, source: Path, **data: Any) -> tuple[Any, Events]:
    events = Events()
    async with asyncio.timeout(WAIT_S):
        result = await clip.run(request(source, **data), events)
    return result, events


def test_the_phrase_banks_are_real_lists_without_duplicates() -> None:
    sizes = {name: len(read_bank(name)) for name in BANKS}
    assert sizes["artists"] >= 200
    assert sizes["mediums"] >= 90
    assert sizes["movements"] >= 150
    assert sizes["flavors"] >= 250
    for name in BANKS:
        phrases = read_bank(name)
        assert len(set(phrases)) == len(phrases), name


async def test_fast_mode_composes_caption_artist_medium_movement_and_flavors(
    tiny_clip_dir: Path, tiny_blip_dir: Path
) -> None:
    clip = engine(tiny_blip_dir)
    try:
        result, events = await run(clip, tiny_clip_dir, mode="fast")
    finally:
        await clip.unload()
    out = result.output
    assert out["mode"] == "fast" and out["model"] == "tiny-clip"
    assert out["artist"]["text"] in read_bank("artists")
    assert out["medium"]["text"] in read_bank("mediums")
    assert out["movement"]["text"] in read_bank("movements")
    assert len(out["flavors"]) == 6
    assert all(f["text"] in read_bank("flavors") for f in out["flavors"])
    scores = [f["score"] for f in out["flavors"]]
    assert scores == sorted(scores, reverse=True)
    assert out["prompt"] == ", ".join(
        [
            out["caption"],
            f"by {out['artist']['text']}",
            out["medium"]["text"],
            out["movement"]["text"],
            *(f["text"] for f in out["flavors"]),
        ]
    )
    assert result.usage.compute_seconds > 0
    stages = [p["stage"] for p in events.progress()]
    assert stages.count("loading_model") == 2  # CLIP, then BLIP
    assert [p["part"] for p in events.progress() if p["stage"] == "interrogating"] == [
        "caption",
        "ranking",
        "done",
    ]


async def test_best_mode_grows_the_prompt_one_flavor_at_a_time(
    tiny_clip_dir: Path, tiny_blip_dir: Path
) -> None:
    clip = engine(tiny_blip_dir)
    try:
        best, events = await run(clip, tiny_clip_dir, mode="best")
    finally:
        await clip.unload()
    b = best.output
    assert len(b["flavors"]) <= 12
    assert b["prompt"].startswith(f"{b['caption']}, by {b['artist']['text']}, ")
    chain = [p for p in events.progress() if p["stage"] == "ranking_flavors"]
    assert [p["step"] for p in chain] == list(range(1, len(b["flavors"]) + 1))


async def test_classic_mode_reuses_the_resident_models_and_bank_embeddings(
    tiny_clip_dir: Path, tiny_blip_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gpubridge.engines import clip_interrogator

    loads: list[str] = []
    original = clip_interrogator.load_clip

    def counting(source: str, *args: Any) -> Any:
        loads.append(source)
        return original(source, *args)

    monkeypatch.setattr(clip_interrogator, "load_clip", counting)
    cache = ModelCache()
    clip = engine(tiny_blip_dir, cache)
    try:
        await run(clip, tiny_clip_dir, mode="fast")
        classic, events = await run(clip, tiny_clip_dir, mode="classic")
        assert loads == [str(tiny_clip_dir)]
        resident = cache.keys()
        assert {source for _, source in resident} == {str(tiny_clip_dir), str(tiny_blip_dir)}
    finally:
        await clip.unload()
    assert cache.keys() == []
    assert "loading_model" not in [p["stage"] for p in events.progress()]
    c = classic.output
    assert len(c["flavors"]) == 3
    assert c["prompt"].startswith(
        f"{c['caption']}, {c['medium']['text']} by {c['artist']['text']}, "
    )


async def test_an_unknown_mode_is_invalid_input(tiny_clip_dir: Path, tiny_blip_dir: Path) -> None:
    clip = engine(tiny_blip_dir)
    with pytest.raises(InvalidInput):
        await clip.run(request(tiny_clip_dir, mode="slowest"), Events())
