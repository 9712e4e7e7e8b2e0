"""``gpubridge serve --processes N``: several gateway processes on one port, on PostgreSQL
with remote backends only; refused, saying why, anywhere else."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gpubridge.catalog import Catalog
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.cli import main
from gpubridge.serving import refusal
from gpubridge.settings import Settings
from tests.db.test_migrations import empty
from tests.test_cli import cli_env, command, free_port

PG = "postgresql+asyncpg://gpubridge@127.0.0.1:5432/gpubridge"
READY_TIMEOUT_S = 90.0
SHUTDOWN_TIMEOUT_S = 30.0


def remote_only_catalog(path: Path) -> Path:
    """The packaged catalog with llm-4090 sent to an OpenAI-compatible server and every other
    service left without a backend."""
    data: dict[str, Any] = yaml.safe_load(packaged_catalog_text())
    for service in data["services"].values():
        service["backends"] = []
    options = {"base_url": "http://127.0.0.1:9/v1", "model": "m"}
    data["services"]["llm-4090"]["backends"] = [
        {"name": "upstream", "type": "openai", "options": options}
    ]
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_one_process_is_always_allowed() -> None:
    assert refusal(Settings(database_url=None), Catalog.load(starter=True), 1) is None


def test_several_processes_on_sqlite_are_refused_saying_why() -> None:
    reason = refusal(Settings(database_url=None), Catalog.load(starter=True), 2)
    assert reason is not None
    assert reason.startswith("--processes 2 needs PostgreSQL")
    assert "one writer" in reason


def test_several_processes_with_models_on_this_machine_are_refused_naming_them() -> None:
    reason = refusal(Settings(database_url=PG), Catalog.load(starter=True), 4)
    assert reason is not None
    assert "--processes 4 serves remote backends only" in reason
    assert "llm-4090 (" in reason and "more" in reason


def test_several_processes_on_postgresql_with_remote_backends_only_are_allowed(
    tmp_path: Path,
) -> None:
    catalog = Catalog.load(remote_only_catalog(tmp_path / "catalog.yaml"), starter=True)
    assert refusal(Settings(database_url=PG), catalog, 2) is None


def test_serve_refuses_several_processes_on_sqlite_before_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in cli_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GPUBRIDGE_DATABASE_URL", raising=False)
    assert main(["serve", "--processes", "2", "--port", str(free_port())]) == 2
    assert "error: --processes 2 needs PostgreSQL" in capsys.readouterr().err


def test_a_process_count_below_one_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--processes", "0"])
    assert exited.value.code == 2
    assert "expected a whole number of at least 1, got '0'" in capsys.readouterr().err


def pids_answering(base: str, want: int, timeout_s: float) -> set[str]:
    """The pids /metrics names, each scrape on a new connection, until ``want`` differ."""
    pids: set[str] = set()
    deadline = time.monotonic() + timeout_s
    while len(pids) < want and time.monotonic() < deadline:
        with httpx.Client(timeout=5) as client:
            text = client.get(f"{base}/metrics").text
        pids.update(
            line.split('pid="', 1)[1].split('"', 1)[0]
            for line in text.splitlines()
            if line.startswith("gpubridge_process_info{")
        )
    return pids


@pytest.mark.postgres
def test_two_processes_on_postgresql_serve_one_port_and_one_database(
    tmp_path: Path, postgres_url: str
) -> None:
    asyncio.run(empty(postgres_url))  # the session's database, as other tests left it
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = cli_env(
        tmp_path,
        GPUBRIDGE_DATABASE_URL=postgres_url,
        GPUBRIDGE_CATALOG=str(remote_only_catalog(tmp_path / "catalog.yaml")),
    )
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*command(), "serve", "--port", str(port), "--processes", "2"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while log_path.read_text().count("Application startup complete") < 2:
            assert process.poll() is None, log_path.read_text()
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.2)

        pids = pids_answering(base, 2, READY_TIMEOUT_S)
        assert len(pids) == 2, (pids, log_path.read_text())
        assert str(process.pid) not in pids  # the supervisor serves nothing itself

        # An account made through one process is known to whichever answers next.
        with httpx.Client(timeout=10) as client:
            made = client.post(f"{base}/account/register", json={"email": "a@example.com"})
            assert made.status_code == 201, made.text
            key = made.json()["api_key"]
        for _ in range(6):
            with httpx.Client(timeout=10) as client:
                balance = client.get(
                    f"{base}/account/balance", headers={"Authorization": f"Bearer {key}"}
                )
            assert balance.status_code == 200, balance.text

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=SHUTDOWN_TIMEOUT_S) == 0, log_path.read_text()
        assert log_path.read_text().count("Application shutdown complete") == 2
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT_S)
