"""The base of the diffusers video engines: one stoppable pipeline call per job, encoded."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gpubridge.engines.base import Emit, EngineResult
from gpubridge.engines.diffusion.common import (
    DiffusionEngine,
    Send,
    generators,
    step_callback,
    supported_kwargs,
)
from gpubridge.engines.local import threadsafe_emit
from gpubridge.engines.video.common import stoppable, stopping_on_cancel, video_output, video_result


class VideoEngine(DiffusionEngine):
    """A ``DiffusionEngine`` whose jobs make one video clip each."""

    def render(
        self,
        pipe: Any,
        call: dict[str, Any],
        *,
        seed: int,
        steps: int,
        fps: int,
        send: Send,
        stop: threading.Event,
    ) -> dict[str, Any]:
        """Run ``pipe`` with ``call`` (plus the seed's generator, step progress that stops once
        ``stop`` is set, and numpy frames) and encode its clip (blocking; one job at a time)."""
        call = {
            **call,
            "generator": generators(seed, 1)[0],
            "callback_on_step_end": stoppable(step_callback(send, steps), stop),
            "output_type": "np",
        }
        with self._busy:
            frames = pipe(**supported_kwargs(pipe, call)).frames
            return video_output(frames, fps, seed, send)

    async def clip_job(
        self, emit: Emit, work: Callable[[Send, threading.Event], dict[str, Any]]
    ) -> EngineResult:
        """Run ``work(send, stop)`` timed in a worker thread, stopping it when the job is
        cancelled; its clip is the job's result."""
        send = threadsafe_emit(emit)
        output, seconds = await stopping_on_cancel(
            lambda stop: self.timed(lambda: work(send, stop))
        )
        return video_result(output, seconds)
