"""An app whose LLM and embedding services are served by a loopback OpenAI-compatible upstream."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway_app import openai_backend, running_app, settings_for, write_catalog
from tests.support.hf_cache import use_hub
from tests.support.local_chain import LocalChain
from tests.support.openai_upstream import serve_openai_upstream
from tests.support.x402_app import paid_app


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    with serve_openai_upstream() as server:
        yield server


def use_upstream(base_url: str, *, async_llm: bool = False):
    def edit(data: dict[str, Any]) -> None:
        services = data["services"]
        # Only these two services run here: the others keep no backend (503, nothing claimed).
        for service in services.values():
            service["backends"] = []
        services["llm-4090"]["backends"] = [openai_backend("upstream", base_url)]
        services["embedding-l4"]["backends"] = [openai_backend("upstream-embed", base_url)]
        if async_llm:
            services["llm-4090"]["mode"] = "async"

    return edit


@pytest.fixture
async def gateway(database, database_url: str, tmp_path: Path, upstream) -> AsyncIterator[Any]:
    """(app, client) with a fresh database and the upstream behind llm-4090 and embedding-l4."""
    catalog = write_catalog(tmp_path / "catalog.yaml", use_upstream(upstream.base_url))
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


@pytest.fixture
async def packaged(
    database, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    """(app, client) on the packaged catalog (every service has a backend) with x402 on, and
    the hub in reach, so that every model can run (none is downloaded: no test gets as far as
    running one)."""
    use_hub(monkeypatch, tmp_path / "hub", offline=False)
    catalog = write_catalog(tmp_path / "catalog.yaml")
    async with running_app(settings_for(database_url, tmp_path, catalog)) as pair:
        yield pair


@pytest.fixture(scope="module")
def chain() -> Iterator[LocalChain]:
    """A local chain with the token, Permit2 and the oracle, shared by a module's tests."""
    yield LocalChain()


@pytest.fixture
async def paid(database, database_url: str, tmp_path: Path, upstream, chain) -> AsyncIterator[Any]:
    """(app, client) taking x402 payments on ``chain``, the upstream behind llm-4090."""
    async with paid_app(chain, database_url, tmp_path, upstream.base_url) as pair:
        yield pair
    upstream.behaviour.reset()
