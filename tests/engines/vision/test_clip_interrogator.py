from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gpubridge.engines.base import EngineContext, EngineRequest, ModelRef
from gpubridge.engines.clip_interrogator import BANKS, ClipInterrogator, create, read_bank
from gpubridge.engines.residency import ModelCache
from gpubridge.errors import InvalidInput
from tests.support.engine_calls import Events, media_input
from tests.support.engine_calls import engine as make_engine
from tests.support.engine_calls import request as make_request
from tests.support.engine_calls import run as run_engine
from tests.support.media_server import png_bytes

pytestmark = pytest.mark.slow


def engine(blip_dir: Path, cache: ModelCache | None = None) -> ClipInterrogator:
    context = EngineContext(models=cache)
    options = {"caption_model": str(blip_dir)}
    return make_engine(create, "clip-interrogator", name="local-clip", context=context, **options)


def request(source: Path, **data: Any) -> EngineRequest:
    media = media_input("image_url", png_bytes(seed=3))
    return make_request("clip", data, media=media, model=ModelRef("tiny-clip", str(source)))


async def run(
    clip: ClipInterrogator, source: Path, *, unload: bool = False, **data: Any
) -> tuple[Any, Events]:
    """Run a job on ``source``'s CLIP; ``unload``: unload the engine afterwards."""
    return await run_engine(clip, request(source, **data), unload=unload)


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
    result, events = await run(engine(tiny_blip_dir), tiny_clip_dir, unload=True, mode="fast")
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
    best, events = await run(engine(tiny_blip_dir), tiny_clip_dir, unload=True, mode="best")
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
