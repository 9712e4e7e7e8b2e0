"""The command's entry point loads the program with the garbage collector off, and every
command turns it back on when its work begins."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from gpubridge import cli

ROOT = Path(__file__).resolve().parents[1]


def test_the_collector_is_off_while_the_command_line_loads() -> None:
    script = (
        "import gc\n"
        "import gpubridge.launch as launch\n"
        "seen = []\n"
        "import gpubridge.cli as cli\n"
        "cli.main = lambda: seen.append(gc.isenabled()) or 7\n"
        "print(launch.main(), seen)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["7", "[False]"]


def test_a_command_other_than_serve_turns_the_collector_back_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPUBRIDGE_DATA_DIR", str(tmp_path))
    gc.disable()
    try:
        assert cli.main(["catalog"]) == 0
        assert gc.isenabled()
    finally:
        gc.enable()
    assert "llm-4090" in capsys.readouterr().out


def test_the_module_runs_the_command_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gpubridge", "catalog", "--no-starter"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "llama-3.3-70b-versatile" in done.stdout.splitlines()[1]
