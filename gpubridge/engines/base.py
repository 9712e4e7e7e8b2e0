"""The Engine protocol and the data that crosses it.

Nothing here imports a model runtime: runtimes are loaded lazily by the registry.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from gpubridge.engines.residency import ModelCache


class BackendConfig(BaseModel):
    """One backend that may serve a service, as the catalog declares it."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    type: str = Field(min_length=1, description="Runtime key in the engine registry.")
    concurrency: int = Field(default=4, ge=1, le=1024)
    expected_latency_s: float = Field(default=1.0, ge=0, description="Used by X-Priority: fast.")
    cost_weight: float = Field(default=1.0, ge=0, description="Used by X-Priority: cheap.")
    options: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class ModelRef:
    """The model a job asked for: its public id and where its weights live."""

    id: str
    source: str
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MediaInput:
    """An input file named by a URL field of the job (``image_url``, ``audio_url``, ...).

    The gateway fetched it safely and checked its type before the job was charged; engines
    decode ``data`` themselves (see ``engines.media``).
    """

    field: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class OutputFile:
    """A file a job produced (an image, audio, video). Place it anywhere in
    ``EngineResult.output``; the runner stores it and replaces it with
    ``{"url", "file_id", "content_type", "size_bytes"}`` (plus ``"base64"`` when small)."""

    data: bytes
    content_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    """Extra public fields kept beside the URL (e.g. width, height, duration_seconds)."""


@dataclass(frozen=True)
class EngineRequest:
    """What an engine is asked to do for one job."""

    job_id: str
    service: str
    model: ModelRef
    input: dict[str, Any]
    media: Mapping[str, MediaInput] = field(default_factory=dict)
    """Fetched media inputs by field name."""


@dataclass
class Usage:
    """What a runtime reports it used; feeds metering and the ledger's capture."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    audio_seconds: float = 0.0
    outputs: int = 0
    compute_seconds: float = 0.0


@dataclass
class EngineResult:
    output: dict[str, Any]
    usage: Usage = field(default_factory=Usage)


EventKind = Literal["token", "progress", "log"]


@dataclass(frozen=True)
class EngineEvent:
    """Something a running job reports before it ends (a token, a progress step)."""

    kind: EventKind
    data: dict[str, Any]


Emit = Callable[[EngineEvent], Awaitable[None]]


async def discard_events(event: EngineEvent) -> None:
    """An ``Emit`` that drops every event."""


@runtime_checkable
class Engine(Protocol):
    """A backend able to run jobs for one or more services."""

    name: str

    async def load(self, model: ModelRef) -> None:
        """Make ``model`` ready (download nothing at test time; load from its source)."""

    async def run(self, request: EngineRequest, emit: Emit) -> EngineResult:
        """Run one job; raise ``BackendError`` for a failure the router may fail over."""

    async def health(self) -> bool:
        """Whether the backend can take work now."""

    async def unload(self) -> None:
        """Release models and connections."""


@dataclass
class EngineContext:
    """What every engine of a process shares: secrets (API keys by backend name) and the
    resident-model cache with its memory budget."""

    secrets: dict[str, str] = field(default_factory=dict)
    models: ModelCache | None = None

    def model_cache(self) -> ModelCache:
        """The shared cache (one unbounded cache is made on first use when none was given)."""
        if self.models is None:
            from gpubridge.engines.residency import ModelCache

            self.models = ModelCache()
        return self.models


EngineFactory = Callable[[BackendConfig, EngineContext], Engine]
"""Builds an engine from its backend config and the process's shared engine context."""
