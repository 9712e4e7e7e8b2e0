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


def _run(script: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_command_loads_the_gateway_without_the_orm() -> None:
    script = (
        "import importlib, sys, types\n"
        "import gpubridge.launch as launch\n"
        "def main():\n"
        "    del sys.modules['gpubridge.cli']\n"
        "    importlib.import_module('gpubridge.cli')\n"
        "    importlib.import_module('gpubridge.app')\n"
        "    return 'sqlalchemy.orm' in sys.modules\n"
        "sys.modules['gpubridge.cli'] = types.SimpleNamespace(main=main)\n"
        "print(launch.main())\n"
    )
    assert _run(script) == ["False"]


def test_the_async_engine_package_answers_every_name_it_has() -> None:
    names = (
        "import sys\n"
        "import sqlalchemy.ext.asyncio as package\n"
        "def said(v): return getattr(v, '__module__', '') + '.' + getattr(v, '__qualname__', '')\n"
        "print(sorted(n + '=' + said(v) for n, v in vars(package).items() if n[0] != '_'))\n"
    )
    plain = _run(names)
    script = (
        "import sys\n"
        "from gpubridge.launch import load_async_engine\n"
        "load_async_engine()\n"
        "from sqlalchemy.ext.asyncio import AsyncEngine, AsyncConnection, create_async_engine\n"
        "print('sqlalchemy.orm' in sys.modules)\n"
        "from sqlalchemy.ext.asyncio import AsyncSession\n"
        "print('sqlalchemy.orm' in sys.modules, AsyncSession.__module__)\n" + names
    )
    loaded, *rest = _run(script)
    assert loaded == "False"
    assert rest[:2] == ["True", "sqlalchemy.ext.asyncio.session"]
    assert rest[2:] == plain
