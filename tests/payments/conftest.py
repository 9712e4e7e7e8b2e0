"""Card top-up fixtures: a local Stripe API and a gateway configured to use it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.support.gateway_app import openai_backend, running_app, settings_for, write_catalog
from tests.support.openai_upstream import Upstream, serve_openai_upstream
from tests.support.stripe_server import (
    SECRET_KEY,
    WEBHOOK_SECRET,
    StripeBehaviour,
    StripeServer,
    serve_stripe,
)


@dataclass
class CardGateway:
    app: Starlette
    client: httpx.AsyncClient
    stripe: StripeBehaviour


@pytest.fixture(scope="module")
def stripe_server() -> Iterator[StripeServer]:
    with serve_stripe() as server:
        yield server


@pytest.fixture(scope="module")
def llm_upstream() -> Iterator[Upstream]:
    with serve_openai_upstream() as server:
        yield server


def stripe_settings(url: str) -> dict[str, Any]:
    return {
        "stripe_secret_key": SECRET_KEY,
        "stripe_webhook_secret": WEBHOOK_SECRET,
        "stripe_api_base": url,
        "stripe_success_url": "https://gpubridge.test/topup/done?session={CHECKOUT_SESSION_ID}",
        "stripe_cancel_url": "https://gpubridge.test/topup/cancelled",
        "stripe_max_network_retries": 0,
        "rate_limit_per_key_per_minute": 0,
        "rate_limit_per_ip_per_second": 0,
    }


@pytest.fixture
async def card_gateway(
    database: object,
    database_url: str,
    tmp_path: Path,
    stripe_server: StripeServer,
    llm_upstream: Upstream,
) -> AsyncIterator[CardGateway]:
    """A gateway with card top-ups on the local Stripe API and llm-4090 on a local upstream."""

    def edit(data: dict[str, Any]) -> None:
        upstream = openai_backend("upstream", llm_upstream.base_url)
        data["services"]["llm-4090"]["backends"] = [upstream]

    stripe_server.behaviour.reset()
    catalog = write_catalog(tmp_path / "catalog.yaml", edit)
    settings = settings_for(database_url, tmp_path, catalog, **stripe_settings(stripe_server.url))
    async with running_app(settings) as (app, client):
        yield CardGateway(app, client, stripe_server.behaviour)
