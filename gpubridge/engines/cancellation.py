"""A job's cancellation flag, seen by the threads that do its work.

The process running a job (a worker, or the gateway in ``inline`` mode) opens a ``cancel_scope``
around ``Engine.run``; engines need not pass anything down: threads started with
``asyncio.to_thread`` inherit the flag, and every progress report through
``local.threadsafe_emit`` raises ``JobCancelled`` once it is set, which ends a diffusion loop, a
chunked audio loop or a transcription between two steps. Text generation checks the flag in
its stopping criteria.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[threading.Event | None] = ContextVar("gpubridge_job_cancel", default=None)


class JobCancelled(Exception):
    """Raised inside a job's work once its cancellation flag is set."""


@contextmanager
def cancel_scope(flag: threading.Event | None = None) -> Iterator[threading.Event]:
    """Make ``flag`` (a new one when not given) the current job's cancellation flag."""
    flag = flag if flag is not None else threading.Event()
    token = _current.set(flag)
    try:
        yield flag
    finally:
        _current.reset(token)


def current_flag() -> threading.Event | None:
    """The current job's flag (``None`` outside a job)."""
    return _current.get()


def is_cancelled() -> bool:
    flag = _current.get()
    return flag is not None and flag.is_set()


def raise_if_cancelled(flag: threading.Event | None = None) -> None:
    """Raise ``JobCancelled`` when ``flag`` (default: the current job's) is set."""
    flag = flag if flag is not None else _current.get()
    if flag is not None and flag.is_set():
        raise JobCancelled("the job was cancelled")
