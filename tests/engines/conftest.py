"""Fixtures for engine tests: a loopback media server, the app for a catalog edit, a loopback
upstream."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from tests.support.media_server import MediaServer, serve_media
from tests.support.openai_upstream import Upstream, serve_openai_upstream
from tests.support.service_runs import StartServices, service_runs


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """Engine tests exercise runtimes, not databases: their end-to-end runs use SQLite only
    (the gateway's database paths run on SQLite and PostgreSQL in the other test folders)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'gpubridge.db'}"


@pytest.fixture(scope="module")
def media() -> Iterator[MediaServer]:
    """A loopback media server for the module's inputs (``media.add(name, data, type)``)."""
    with serve_media() as server:
        yield server


@pytest.fixture
def services(database: object, database_url: str, tmp_path: Path) -> StartServices:
    """Start the app on a fresh database for a catalog edit, with a funded key:
    ``async with services(edit) as runs`` (see ``tests.support.service_runs``)."""
    return functools.partial(service_runs, database_url, tmp_path)


@pytest.fixture(scope="module")
def _upstream_server() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


@pytest.fixture
def upstream(_upstream_server: Upstream) -> Upstream:
    """An OpenAI-compatible upstream on loopback, reset to its defaults for each test; change
    ``upstream.behaviour`` freely."""
    _upstream_server.behaviour.reset()
    return _upstream_server
