"""SIGTERM for a worker: stop gracefully, and only when the worker itself gets it.

asyncio's signal handling writes each signal's number to a wakeup socket that its event loop
reads. A process forked without exec (vLLM's engine core, multiprocessing's ``fork`` start
method) inherits that socket and the handler; when such a child got SIGTERM, the number went
down the parent's wakeup socket and the *worker* stopped, while the child carried on. So the
child, right after the fork, forgets both: its wakeup socket is unset and SIGTERM is back to its
default (the child ends), as Python 3.12's asyncio does for every fork.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator

log = logging.getLogger(__name__)

_handler_pid: int | None = None
"""The process whose event loop handles SIGTERM (``None``: none here)."""
_fork_hook_registered = False


def _forget_in_child() -> None:
    """After ``os.fork()``, in the child: the parent's SIGTERM handling is not the child's."""
    global _handler_pid
    if _handler_pid is None or _handler_pid == os.getpid():
        return
    _handler_pid = None
    # The thread that forked is the child's main thread, so these are allowed whichever
    # thread of the worker forked; but never let a fork fail over them.
    with contextlib.suppress(ValueError, OSError):
        signal.set_wakeup_fd(-1)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def stop_on_sigterm(stop: Callable[[], None]) -> Iterator[None]:
    """Call ``stop`` on the running event loop when this process gets SIGTERM, for the
    duration of the block; processes forked from it meanwhile do not inherit that."""
    global _handler_pid, _fork_hook_registered
    loop = asyncio.get_running_loop()
    me = os.getpid()

    def handle() -> None:
        if os.getpid() != me:  # an inherited loop in a forked child: not ours to stop
            return
        log.info("SIGTERM: stopping")
        stop()

    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_forget_in_child)
        _fork_hook_registered = True
    loop.add_signal_handler(signal.SIGTERM, handle)
    _handler_pid = me
    try:
        yield
    finally:
        _handler_pid = None
        loop.remove_signal_handler(signal.SIGTERM)
