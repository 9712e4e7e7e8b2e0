"""Process groups: killing a group ends every process in it, and a worker leading its group
ends the processes it started when it exits."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from gpubridge.engines.workers.groups import group_members, is_running, kill_group


def wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not is_running(pid):
            return True
        time.sleep(0.02)
    return False


def test_killing_a_group_ends_its_leader_and_the_child_it_started() -> None:
    leader = subprocess.Popen(
        ["sh", "-c", "sleep 300 & echo $!; wait"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    try:
        assert sorted(group_members(leader.pid)) == sorted([leader.pid, child])
        assert kill_group(leader.pid) is True
        assert leader.wait(timeout=10) == -9
        assert wait_gone(child)
        assert group_members(leader.pid) == []
    finally:
        subprocess.run(["kill", "-9", str(child)], capture_output=True)


def test_a_group_of_one_or_below_is_never_killed() -> None:
    for pgid in (0, 1, -5):
        with pytest.raises(ValueError):
            kill_group(pgid)


SCRIPT = """
import subprocess, sys
from gpubridge.engines.workers.groups import end_own_children_group
child = subprocess.Popen(["sleep", "300"])
ended = end_own_children_group()
print(ended, child.wait(timeout=10), flush=True)
"""


def test_a_process_leading_its_group_ends_its_children_when_asked() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["1", "-9"]


def test_a_process_that_does_not_lead_its_group_leaves_the_group_alone() -> None:
    script = SCRIPT.replace("child.wait(timeout=10)", "child.poll()") + "child.kill()\n"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0", "None"]
