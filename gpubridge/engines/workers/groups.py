"""Process groups, so that a worker's own children end with it.

Model runtimes start processes of their own (vLLM's engine core, compile workers, data loader
workers) that hold the GPU. The supervisor starts each worker as the leader of a new session
and process group; its children join that group, so ending the group ends them all, whether
the worker was killed on purpose or died. A worker that exits on its own ends the rest of its
group the same way, so a gateway killed with ``kill -9`` (its workers then see their socket
close and exit) leaves nothing behind on the GPU either.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal

log = logging.getLogger(__name__)


def kill_group(pgid: int) -> bool:
    """``SIGKILL`` every process in the group ``pgid``; whether any was still there."""
    if pgid <= 1:
        raise ValueError(f"refusing to kill process group {pgid}")
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("not allowed to end process group %d", pgid)
        return False
    return True


def group_members(pgid: int) -> list[int]:
    """The live processes in the group ``pgid`` (zombies left out), read from ``/proc``; empty
    where there is no ``/proc``."""
    members: list[int] = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return members
    for entry in entries:
        if not entry.isdigit():
            continue
        state_and_group = _state_and_group(int(entry))
        if (
            state_and_group is not None
            and state_and_group[1] == pgid
            and state_and_group[0] not in ("Z", "X")
        ):
            members.append(int(entry))
    return members


def is_running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting to be collected is not)."""
    state_and_group = _state_and_group(pid)
    if state_and_group is None:
        return False
    return state_and_group[0] not in ("Z", "X")


def end_own_children_group() -> int:
    """When this process leads its process group (a worker the supervisor started), ``SIGKILL``
    the other processes in it; how many there were. A process that does not lead its group
    (a worker started by hand in a shell) leaves the group alone: it is the shell's."""
    me = os.getpid()
    if os.getpgrp() != me:
        return 0
    others = [pid for pid in group_members(me) if pid != me]
    for pid in others:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return len(others)


def _state_and_group(pid: int) -> tuple[str, int] | None:
    """The state letter and process group of ``pid`` from ``/proc/<pid>/stat``."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            text = stat.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = text[text.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[2])
    except (IndexError, ValueError):
        return None
