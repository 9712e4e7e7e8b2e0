"""What each built-in backend type needs on the machine that runs it: the Python packages its
runtime imports, and the weights a model of the catalog makes it load.

Nothing here imports a runtime: packages are looked up with ``importlib.util.find_spec``, so the
gateway can say whether a runtime is installed without loading torch or transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib.util import find_spec
from typing import Any

from gpubridge.engines.base import BackendConfig, ModelRef

LOCAL_EXTRA = "the `local` extra (pip install 'gpubridge[local]')"
VLLM = "vllm (pip install vllm; see docs/gpu.md)"


@dataclass(frozen=True)
class Runtime:
    """The modules a backend type's runtime imports, and what to install to get them."""

    modules: tuple[str, ...]
    install: str = LOCAL_EXTRA


_TRANSFORMERS = ("torch", "transformers")
_VISION = (*_TRANSFORMERS, "PIL", "numpy")
_DIFFUSERS = ("torch", "diffusers", "transformers", "accelerate", "PIL", "numpy")
_WHISPER = ("faster_whisper", "ctranslate2", "av", "numpy")

RUNTIMES: dict[str, Runtime] = {
    "transformers-llm": Runtime(_TRANSFORMERS),
    "vllm": Runtime(("vllm", "transformers"), VLLM),
    "sentence-transformers": Runtime(("torch", "sentence_transformers")),
    "transformers-vlm": Runtime(_VISION),
    "blip-caption": Runtime(_VISION),
    "clip-interrogator": Runtime(_VISION),
    "florence-ocr": Runtime(_VISION),
    "sam2-segmentation": Runtime((*_VISION, "cv2")),
    "faster-whisper": Runtime(_WHISPER),
    "transformers-whisper": Runtime((*_TRANSFORMERS, "av", "numpy")),
    "diarized-whisper": Runtime((*_WHISPER, "onnxruntime", *_TRANSFORMERS, "sklearn")),
    "kokoro": Runtime(("torch", "kokoro", "misaki", "numpy")),
    "bark": Runtime((*_TRANSFORMERS, "numpy")),
    "musicgen": Runtime((*_TRANSFORMERS, "numpy")),
    "voice-clone": Runtime((*_TRANSFORMERS, "av", "numpy")),
    "diffusers-text-to-image": Runtime(_DIFFUSERS),
    "diffusers-img2img": Runtime(_DIFFUSERS),
    "diffusers-inpaint": Runtime(_DIFFUSERS),
    "diffusers-controlnet": Runtime((*_DIFFUSERS, "cv2")),
    "diffusers-image-variation": Runtime(_DIFFUSERS),
    "diffusers-portrait": Runtime(_DIFFUSERS),
    "sticker": Runtime((*_DIFFUSERS, "onnxruntime")),
    "ad-inpaint": Runtime((*_DIFFUSERS, "onnxruntime")),
    "diffusers-video": Runtime((*_DIFFUSERS, "av")),
    "diffusers-animate": Runtime((*_DIFFUSERS, "av")),
    "background-removal": Runtime(("onnxruntime", "PIL", "numpy")),
    "super-resolution": Runtime(_VISION),
    "face-restoration": Runtime(("onnxruntime", "cv2", "PIL", "numpy")),
}
"""Every built-in backend type that loads a model on this machine (``openai`` forwards over
the network and needs nothing here)."""


def is_installed(module: str) -> bool:
    """Whether ``module`` can be imported here, found without importing it."""
    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_modules(type_: str) -> list[str]:
    """The modules the runtime of ``type_`` imports that are not installed ([] when all are,
    or when the type is not a built-in local runtime)."""
    runtime = RUNTIMES.get(type_)
    return [m for m in runtime.modules if not is_installed(m)] if runtime else []


# -- weights ----------------------------------------------------------------------------------
CLIP_CAPTION_MODEL = "Salesforce/blip-image-captioning-large"
SPEAKER_MODEL = "microsoft/wavlm-base-plus-sv"
VOCODER = "microsoft/speecht5_hifigan"
REMOVAL_MODEL = "onnx-community/BiRefNet-ONNX"
REMOVAL_ONNX_FILE = "onnx/model.onnx"
RESTORER_ONNX_FILE = "codeformer.onnx"
DETECTOR_FILE = "yunet_2023_mar.onnx"
"""The runtimes' own defaults for weights a model does not name (kept equal to theirs by the
tests)."""


@dataclass(frozen=True)
class Weights:
    """Weights a model makes its runtime load: a ``source`` (a hub repo id, a local path or a
    ``package:`` source), the files the runtime reads from it (glob patterns; empty: the whole
    repository), and the revision it asks for."""

    source: str
    files: tuple[str, ...] = ()
    revision: str | None = None
    optional: bool = False
    """Only some inputs use it (a second checkpoint, an enhancer): pulled with the model, but
    the model runs without it."""


def weights_for(backend: BackendConfig, model: ModelRef) -> list[Weights]:
    """The weights a job of ``model`` on ``backend`` loads, the model's own first ([] for a
    type that loads none here, such as ``openai``)."""
    if backend.type not in RUNTIMES:
        return []
    options = {**backend.options, **model.options}
    found = list(_weights(backend.type, model.source, options))
    unique: dict[tuple[str, tuple[str, ...], str | None], Weights] = {}
    for item in found:
        key = (item.source, item.files, item.revision)
        if key not in unique or not item.optional:
            unique[key] = item
    return list(unique.values())


def _weights(type_: str, source: str, options: Mapping[str, Any]) -> Iterator[Weights]:
    text = _text_option(options)
    revision = text("revision") or None
    if type_ in ("faster-whisper", "diarized-whisper"):
        yield Weights(text("ctranslate2_source") or source, revision=revision)
    elif type_ == "background-removal":
        yield Weights(source, (text("onnx_file") or REMOVAL_ONNX_FILE,), revision)
    elif type_ == "face-restoration":
        restorer = text("onnx_file") or RESTORER_ONNX_FILE
        detector = text("detector_file") or DETECTOR_FILE
        detector_source = text("detector_source")
        if detector_source and detector_source != source:
            yield Weights(source, (restorer,), revision)
            yield Weights(detector_source, (detector,))
        else:
            yield Weights(source, (restorer, detector), revision)
    elif type_ == "diffusers-portrait" and text("weight_name"):
        files = ["/".join(p for p in (text("subfolder"), text("weight_name")) if p)]
        encoder = text("image_encoder_folder") or "image_encoder"
        if "/" not in encoder:
            encoder = "/".join(p for p in (text("subfolder"), encoder) if p)
        files.append(f"{encoder}/*")
        yield Weights(source, tuple(files), revision)
    elif text("base_model") and (text("unet_file") or text("lora_file")):
        yield Weights(
            source, tuple(f for f in (text("unet_file"), text("lora_file")) if f), revision
        )
    elif type_ == "transformers-llm" and text("gguf_file"):
        yield Weights(source, (text("gguf_file"),), revision)
    else:
        yield Weights(source, revision=revision)
    yield from _companions(type_, options)


def _companions(type_: str, options: Mapping[str, Any]) -> Iterator[Weights]:
    """The other models a model's options make its runtime load beside it."""
    text = _text_option(options)
    if text("base_model"):
        yield Weights(text("base_model"))
    if type_ == "clip-interrogator":
        yield Weights(text("caption_model") or CLIP_CAPTION_MODEL)
    if type_ == "diarized-whisper":
        yield Weights(text("speaker_model") or SPEAKER_MODEL)
    if type_ == "voice-clone":
        yield Weights(text("vocoder") or VOCODER)
        yield Weights(text("speaker_encoder") or SPEAKER_MODEL)
    if type_ in ("sticker", "ad-inpaint"):
        extra = options.get("background_removal_options")
        onnx_file = extra.get("onnx_file") if isinstance(extra, dict) else None
        files = (str(onnx_file or REMOVAL_ONNX_FILE),)
        yield Weights(text("background_removal") or REMOVAL_MODEL, files)
    if text("background_upscaler"):
        yield Weights(text("background_upscaler"), optional=True)
    for key in ("controlnets", "annotators", "checkpoints"):
        mapping = options.get(key)
        if isinstance(mapping, dict):
            for value in mapping.values():
                if isinstance(value, str) and value:
                    yield Weights(value, optional=True)


def _text_option(options: Mapping[str, Any]) -> Callable[[str], str]:
    """A reader of ``options``' string values ("" for a value absent or of another type)."""

    def text(key: str) -> str:
        value = options.get(key)
        return value if isinstance(value, str) else ""

    return text
