"""Shared fixtures: databases on SQLite and PostgreSQL, settings, catalogs, apps."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import uuid
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests' models are tiny: one thread each runs them fastest, and several threads spinning
# on two cores slow everything else down (set before torch and ONNX Runtime start).
os.environ.setdefault("OMP_NUM_THREADS", "1")

from tests.support.tiny_models import build_tiny_llm, build_tiny_sentence_model

IN_CI = bool(os.environ.get("CI"))

# The vLLM runtime's tests run in their own environment (scripts/test-vllm), not this one.
collect_ignore = [] if importlib.util.find_spec("vllm") else ["engines/test_vllm_llm.py"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    """In CI only tests that need CUDA (marked ``gpu``) may skip: a missing service, command or
    package fails there instead of hiding behind a skip."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if not IN_CI or not report.skipped or hasattr(report, "wasxfail"):
        return
    if item.get_closest_marker("gpu") is not None:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"skipped in CI, where only tests that need CUDA may skip: {reason}"


PG_ADMIN_DSN = os.environ.get("GPUBRIDGE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_reachable() -> bool:
    import asyncpg

    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(PG_ADMIN_DSN, timeout=3)
        except (OSError, asyncpg.PostgresError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own, dropped at the end."""
    import asyncpg

    if not _pg_reachable():
        pytest.skip("PostgreSQL is not reachable")
    name = f"gpubridge_test_{uuid.uuid4().hex[:10]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(PG_ADMIN_DSN)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    yield f"{base}/{name}"
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each database test runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[object]:
    from gpubridge.db import Database

    db = Database(database_url, pool_size=20)
    await db.drop_all()
    await db.create_all()
    yield db
    # Whatever a test did with money, the ledger still proves itself afterwards.
    from gpubridge.payments.ledger_check import check_ledger

    async with db.connect() as conn:
        report = await check_ledger(conn)
    await db.dispose()
    assert report.ok, report.summary()


@pytest.fixture
async def postgres(postgres_url: str) -> AsyncIterator[object]:
    """A fresh schema on PostgreSQL alone, for what only PostgreSQL shows: its driver, and
    transactions that run side by side (on SQLite they take turns)."""
    from gpubridge.db import Database

    db = Database(postgres_url, pool_size=5)
    await db.drop_all()
    await db.create_all()
    yield db
    await db.dispose()


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama-style model with a chat template."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-llm"))


@pytest.fixture(scope="session")
def tiny_plain_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same kind of model, with no chat template."""
    return build_tiny_llm(tmp_path_factory.mktemp("tiny-plain-llm"), chat_template=False)


@pytest.fixture(scope="session")
def tiny_sentence_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BERT with mean pooling, as a sentence-transformers directory."""
    return build_tiny_sentence_model(tmp_path_factory.mktemp("tiny-sentence"))


@pytest.fixture(scope="session")
def s3() -> Iterator[object]:
    """A local S3 server shared by the session's tests; each test takes its own bucket."""
    from tests.support.object_store import serve_s3

    with serve_s3() as server:
        yield server
