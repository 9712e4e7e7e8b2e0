"""Build a real gpubridge app for tests: a catalog variant, a database, an HTTP client."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from starlette.applications import Starlette

from gpubridge.app import create_app
from gpubridge.catalog.loader import packaged_catalog_text
from gpubridge.settings import Settings

CatalogEdit = Callable[[dict[str, Any]], None]

TEST_RECIPIENT = "0x" + "5e" * 20
"""The x402 and USDC recipient the test gateways are configured with: x402 and USDC top-ups are
off until the operator names a wallet, and most tests exercise them on."""
UNSET: Any = object()
"""A ``settings_for`` override that leaves the setting unset, at gpubridge's own default."""


def packaged_catalog() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(packaged_catalog_text())
    return data


def write_catalog(path: Path, edit: CatalogEdit | None = None) -> Path:
    data = copy.deepcopy(packaged_catalog())
    if edit is not None:
        edit(data)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def openai_backend(name: str, base_url: str, **extra: Any) -> dict[str, Any]:
    options = {"base_url": base_url, "model": "test-model", "timeout_s": 10}
    return {"name": name, "type": "openai", "options": options, **extra}


def settings_for(database_url: str, tmp_path: Path, catalog: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": tmp_path / "data",
        "catalog": catalog,
        "allow_private_urls": True,
        "auto_migrate": False,
        "dispatcher_poll_s": 0.05,
        "api_key_cache_s": 0.0,
        "webhook_backoff_s": 0.01,
        # Tests make many requests quickly; rate-limit tests set the limits they check.
        "rate_limit_per_key_per_minute": 0,
        "rate_limit_per_ip_per_second": 0,
        "x402_pay_to": TEST_RECIPIENT,
        # Engines run in this process unless a test asks for worker processes: the worker tests
        # cover that path, and a process per app would slow every other test.
        "worker_mode": "inline",
        # The catalog as written: tests of the starter profile turn it on.
        "starter": False,
    }
    values.update(overrides)
    return Settings(**{name: value for name, value in values.items() if value is not UNSET})


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[Starlette, httpx.AsyncClient]]:
    """The app with its lifespan running, and an in-process client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gpubridge.test"
        ) as client:
            yield app, client


async def register(client: httpx.AsyncClient, email: str = "you@example.com") -> str:
    response = await client.post("/account/register", json={"email": email})
    assert response.status_code == 201, response.text
    key: str = response.json()["api_key"]
    return key


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}
