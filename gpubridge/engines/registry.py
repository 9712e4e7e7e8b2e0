"""Backend types to engine factories, imported lazily, and one engine instance per backend.

A factory is named by a ``"module:callable"`` path, so a runtime's module (and torch, or
transformers behind it) is imported only when a backend of its type is first built.
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, cast

from gpubridge.engines.base import BackendConfig, Engine, EngineContext, EngineFactory
from gpubridge.errors import ServiceUnavailable

if TYPE_CHECKING:
    from gpubridge.engines.workers.pool import WorkerPool

log = logging.getLogger(__name__)

BUILTIN_TYPES: dict[str, str] = {
    "openai": "gpubridge.engines.openai_remote:create",
    "transformers-llm": "gpubridge.engines.transformers_llm:create",
    "vllm": "gpubridge.engines.vllm_llm:create",
    "sentence-transformers": "gpubridge.engines.sentence_embedder:create",
    # vision-language
    "transformers-vlm": "gpubridge.engines.vision_language:create",
    "blip-caption": "gpubridge.engines.captioner:create",
    "clip-interrogator": "gpubridge.engines.clip_interrogator:create",
    "florence-ocr": "gpubridge.engines.florence_ocr:create",
    "sam2-segmentation": "gpubridge.engines.segmenter:create",
    # speech in
    "faster-whisper": "gpubridge.engines.speech.faster_whisper_stt:create",
    "transformers-whisper": "gpubridge.engines.speech.transformers_whisper:create",
    "diarized-whisper": "gpubridge.engines.speech.diarization:create",
    # audio out
    "kokoro": "gpubridge.engines.audio.kokoro_tts:create",
    "bark": "gpubridge.engines.audio.bark_tts:create",
    "musicgen": "gpubridge.engines.audio.musicgen:create",
    "voice-clone": "gpubridge.engines.audio.voice_clone:create",
    # images (diffusers)
    "diffusers-text-to-image": "gpubridge.engines.diffusion.text_to_image:create",
    "diffusers-img2img": "gpubridge.engines.diffusion.img2img:create",
    "diffusers-inpaint": "gpubridge.engines.diffusion.inpaint:create",
    "diffusers-controlnet": "gpubridge.engines.diffusion.controlnet:create",
    "diffusers-image-variation": "gpubridge.engines.diffusion.variation:create",
    "diffusers-portrait": "gpubridge.engines.diffusion.portrait:create",
    "sticker": "gpubridge.engines.diffusion.sticker:create",
    "ad-inpaint": "gpubridge.engines.diffusion.ad_inpaint:create",
    # video (diffusers)
    "diffusers-video": "gpubridge.engines.video.text_to_video:create",
    "diffusers-animate": "gpubridge.engines.video.animate:create",
    # image utilities
    "background-removal": "gpubridge.engines.imaging.background_removal:create",
    "super-resolution": "gpubridge.engines.imaging.upscale:create",
    "face-restoration": "gpubridge.engines.imaging.face_restore:create",
}


GATEWAY_TYPES = frozenset({"openai"})
"""Backend types that only forward over the network: they run in the gateway process. Every
other built-in type loads a model runtime, so with worker processes it runs in one of them."""


def _key(backend: BackendConfig) -> tuple[str, str]:
    return backend.name, json.dumps(backend.model_dump(mode="json"), sort_keys=True, default=str)


class EngineRegistry:
    """Builds engines on first use and keeps them until ``close``.

    Engines are cached by backend name (and its configuration, so two services that declare
    different backends under one name never share an engine). Given a ``WorkerPool``, a
    backend whose runtime is named by module path (and is not a network forwarder) gets a
    ``WorkerEngine`` that runs its jobs in the worker processes; a factory registered as an
    object can only run here, in this process.
    """

    def __init__(
        self,
        secrets: Mapping[str, str] | None = None,
        context: EngineContext | None = None,
        workers: WorkerPool | None = None,
    ) -> None:
        self.context = context or EngineContext()
        self.workers = workers
        self.context.secrets.update(secrets or {})
        self._factories: dict[str, str | EngineFactory] = dict(BUILTIN_TYPES)
        self._engines: dict[tuple[str, str], Engine] = {}
        # Each backend's key, by the config object itself (configs are not changed once
        # loaded): serializing a config for every job cost more than the rest of ``get``.
        self._keys: dict[int, tuple[BackendConfig, tuple[str, str]]] = {}
        self._missing: dict[str, str] = {}
        self._replaced: set[str] = set()

    def register(self, type: str, factory: str | EngineFactory) -> None:
        """Add or replace a backend type: a ``"module:callable"`` path or the factory itself."""
        self._factories[type] = factory
        self._missing.pop(type, None)
        if factory == BUILTIN_TYPES.get(type):
            self._replaced.discard(type)
        else:
            self._replaced.add(type)

    def is_known(self, type_: str) -> bool:
        """Whether backends of this type can be built here at all."""
        return type_ in self._factories

    def is_builtin(self, type_: str) -> bool:
        """Whether backends of this type run gpubridge's own runtime for it (rather than a
        factory registered in its place), whose needs ``engines.runtimes`` knows."""
        return type_ in BUILTIN_TYPES and type_ not in self._replaced

    @property
    def types(self) -> list[str]:
        return sorted(self._factories)

    def get(self, backend: BackendConfig) -> Engine:
        """The engine for ``backend``, built the first time it is asked for."""
        known = self._keys.get(id(backend))
        if known is not None and known[0] is backend:
            key = known[1]
        else:
            key = _key(backend)
            self._keys[id(backend)] = (backend, key)
        engine = self._engines.get(key)
        if engine is None:
            if self.workers is not None and self.runs_in_worker(backend.type):
                from gpubridge.engines.workers.pool import WorkerEngine

                engine = WorkerEngine(backend, self.workers)
            else:
                engine = self._factory(backend.type)(backend, self.context)
            self._engines[key] = engine
        return engine

    def runs_in_worker(self, type_: str) -> bool:
        """Whether jobs of backends of this type go to the worker processes."""
        return self.workers is not None and self.is_local_runtime(type_)

    def is_local_runtime(self, type_: str) -> bool:
        """Whether this type loads a model runtime (rather than forwarding over the network)
        from a module a worker process can import."""
        return type_ not in GATEWAY_TYPES and isinstance(self._factories.get(type_), str)

    def _factory(self, type_: str) -> EngineFactory:
        spec = self._factories.get(type_)
        if spec is None:
            known = ", ".join(self.types)
            raise ServiceUnavailable(f"unknown backend type {type_!r} (known: {known})")
        if not isinstance(spec, str):
            return spec
        missing = self._missing.get(type_)
        if missing is not None:  # its runtime is not installed: do not retry the import
            raise ServiceUnavailable(missing, backend_type=type_)
        module_name, _, attr = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            self._missing[type_] = f"backend type {type_!r} is not available here: {exc}"
            log.warning("a backend's runtime is not installed", extra={"type": type_})
            raise ServiceUnavailable(self._missing[type_], backend_type=type_) from exc
        factory = getattr(module, attr or "create", None)
        if not callable(factory):
            raise ServiceUnavailable(f"backend type {type_!r}: {spec} is not a factory")
        self._factories[type_] = factory
        return cast(EngineFactory, factory)

    async def close(self) -> None:
        """Unload every engine built so far; one failing to unload does not stop the others."""
        engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            try:
                await engine.unload()
            except Exception:
                log.exception("engine failed to unload", extra={"backend": engine.name})
