"""The served OpenAPI document says what the server does: schemathesis fuzzes every operation
of a real ``gpubridge`` on loopback (SQLite, a seeded account with credits, the LLM and
embedding services behind a loopback OpenAI upstream) with all its checks, as a keyed caller
and as callers without a key (x402 on, and x402 off). Any response the document does not
describe fails, and so does any 5xx but a 503 for something this server leaves unconfigured.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from gpubridge.app import create_app
from gpubridge.catalog import Catalog
from gpubridge.cli import server_config
from gpubridge.http_api.openapi import openapi_document
from tests.http_api.conftest import use_upstream
from tests.support.gateway_app import UNSET, running_app, settings_for, write_catalog
from tests.support.openai_upstream import serve_openai_upstream

schemathesis = pytest.importorskip(
    "schemathesis",
    reason="schemathesis is not installed: run ./scripts/bootstrap.sh test",
)
from hypothesis import HealthCheck, Phase, settings  # noqa: E402  (installed with schemathesis)
from schemathesis.checks import CHECKS  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402

pytestmark = pytest.mark.slow

EMAIL = "fuzz@example.com"
CREDIT_MICROS = 1_000_000_000
"""$1,000: enough that paid calls succeed for the whole run."""
MAX_EXAMPLES = 25
UNCONFIGURED = {
    "service_unavailable",  # a service this server gives no backend
    "stripe_not_configured",
    "crypto_topups_not_configured",
    "x402_disabled",
    "chain_unavailable",  # USDC top-ups with no chain node to ask
}
"""The codes of the 503s this server may answer: the things it leaves unconfigured."""
REFUSED_ON_THE_FACTS = {
    "invalid_recovery_token",  # a token nobody was mailed
    "invalid_claim",  # a wallet claim nobody signed
    "claim_expired",
    "unresolvable_host",  # a webhook URL whose host does not resolve
}
"""Well-formed requests refused for what no schema can know."""

CONFIG = SchemathesisConfig.from_dict(
    {
        "checks": {
            # A 5xx is judged by ``no_server_error_but_unconfigured`` below.
            "not_a_server_error": {"enabled": False},
            # A valid request may still have to be paid for (x402, credits, daily limit).
            "positive_data_acceptance": {
                "expected-statuses": [
                    *["2xx", "3xx", "401", "402", "403", "404", "409", "429", "503"]
                ]
            },
        },
    }
)


@dataclass
class Served:
    """A gateway on loopback, the API key of its seeded account, and what the fuzzer saw."""

    base_url: str
    api_key: str
    x402: bool
    statuses: Counter[str] = field(default_factory=Counter)
    operations: set[str] = field(default_factory=set)
    server_errors: list[str] = field(default_factory=list)


async def _seed(settings: Any) -> str:
    """The same account, the same credits, every run."""
    async with running_app(settings) as (app, client):
        response = await client.post("/account/register", json={"email": EMAIL})
        assert response.status_code == 201, response.text
        await app.state.gateway.grant(EMAIL, CREDIT_MICROS)
        key: str = response.json()["api_key"]
        return key


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    with serve_openai_upstream() as server:
        yield server


def _serve(tmp: Path, upstream: Any, figures: list[Served], *, x402: bool) -> Iterator[Served]:
    catalog = write_catalog(tmp / "catalog.yaml", use_upstream(upstream.base_url))
    values: dict[str, Any] = {"auto_migrate": True}
    if not x402:
        values["x402_pay_to"] = UNSET
    settings = settings_for(f"sqlite+aiosqlite:///{tmp / 'gpubridge.db'}", tmp, catalog, **values)
    api_key = asyncio.run(_seed(settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    port = sock.getsockname()[1]
    server = uvicorn.Server(server_config(create_app(settings), "127.0.0.1", port))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    served = Served(f"http://127.0.0.1:{port}", api_key, x402)
    figures.append(served)
    try:
        served_document = httpx.get(f"{served.base_url}/openapi.json", timeout=30).json()
        assert served_document == openapi_document(Catalog.load(), x402=x402)
        yield served
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


@pytest.fixture(scope="module")
def with_x402(
    tmp_path_factory: pytest.TempPathFactory, upstream: Any, figures: list[Served]
) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("fuzz-x402"), upstream, figures, x402=True)


@pytest.fixture(scope="module")
def without_x402(
    tmp_path_factory: pytest.TempPathFactory, upstream: Any, figures: list[Served]
) -> Iterator[Served]:
    yield from _serve(tmp_path_factory.mktemp("fuzz-keys-only"), upstream, figures, x402=False)


@pytest.fixture(scope="module")
def figures(request: pytest.FixtureRequest) -> Iterator[list[Served]]:
    """Print what the fuzzer sent and got, per server, when the module ends."""
    seen: list[Served] = []
    yield seen
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    for served in seen:
        classes = Counter(f"{status[0]}xx" for status in served.statuses.elements())
        line = (
            f"fuzz {'x402 on' if served.x402 else 'x402 off'}: "
            f"{len(served.operations)} operations, {sum(served.statuses.values())} calls, "
            f"by class {dict(sorted(classes.items()))}, by status "
            f"{dict(sorted(served.statuses.items()))}, 5xx {sum(classes[c] for c in ['5xx'])}"
        )
        if reporter is not None:
            reporter.write_line(line)


def _document(*, x402: bool) -> Any:
    """The document a server of the packaged catalog serves (checked against the served one
    when each server starts)."""
    return schemathesis.openapi.from_dict(
        openapi_document(Catalog.load(), x402=x402), config=CONFIG
    )


KEYED = _document(x402=True)
WITH_X402 = _document(x402=True)
KEYS_ONLY = _document(x402=False)
API_KEY: dict[str, str] = {}
"""The seeded account's current key (``POST /account/regenerate-key`` replaces it)."""
SEEDED = "Bearer <seeded account>"
"""What a keyed case carries until it is sent: some cases are made before the server starts."""


@KEYED.auth(refresh_interval=None)
class SeededAccount:
    """The keyed caller: the seeded account's API key as the bearer (schemathesis still
    sends cases without it, or with a broken one, to check that those are refused)."""

    def get(self, case: Any, context: Any) -> str:
        return SEEDED

    def set(self, case: Any, data: str, context: Any) -> None:
        case.headers = {**(case.headers or {}), "Authorization": data}


def no_server_error_but_unconfigured(ctx: Any, response: Any, case: Any) -> bool | None:
    """A 5xx only as a 503 for something this server leaves unconfigured."""
    if response.status_code < 500:
        return None
    code = None
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        code = json.loads(response.content)["error"].get("code")
    if response.status_code != 503 or code not in UNCONFIGURED:
        raise AssertionError(f"server error {response.status_code} ({code})")
    return None


ALL_CHECKS = [check for check in CHECKS.get_all() if check.__name__ != "not_a_server_error"]
FUZZ = settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


STRICT_INTEGER = re.compile(r"^-?[0-9.e+]+ is not of type 'integer'$")


def refused_only_integral_floats(response: Any) -> bool:
    """A 422 whose every violation is a whole number written as a float (``37.0``) where an
    integer is asked: refused on purpose (see the document's description), while JSON Schema,
    and so the fuzzer, counts it as an integer."""
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        error = json.loads(response.content)["error"]
        if response.status_code != 422 or error["code"] != "invalid_input":
            return False
        messages = [v["message"] for v in error.get("violations", [])] or [
            error["message"].rpartition(": ")[2]
        ]
        return all(STRICT_INTEGER.match(message) for message in messages)
    return False


def fuzz(case: Any, served: Served) -> None:
    if (case.headers or {}).get("Authorization") == SEEDED:
        case.headers["Authorization"] = f"Bearer {API_KEY['current']}"
    response = case.call(base_url=served.base_url)
    served.operations.add(case.operation.label)
    served.statuses[str(response.status_code)] += 1
    if case.path == "/account/regenerate-key" and response.status_code == 200:
        API_KEY["current"] = response.json()["api_key"]  # the old key stops working
    excluded = []
    with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
        if json.loads(response.content)["error"]["code"] in REFUSED_ON_THE_FACTS:
            excluded = [CHECKS.get_one("positive_data_acceptance")]
    if refused_only_integral_floats(response):
        excluded = [CHECKS.get_one("positive_data_acceptance")]
    case.validate_response(
        response,
        checks=ALL_CHECKS,
        additional_checks=[no_server_error_but_unconfigured],
        excluded_checks=excluded,
        transport_kwargs={"base_url": served.base_url},
    )


@KEYED.parametrize()
@FUZZ
def test_a_keyed_caller_gets_only_documented_answers(case: Any, with_x402: Served) -> None:
    API_KEY.setdefault("current", with_x402.api_key)
    fuzz(case, with_x402)


@WITH_X402.parametrize()
@FUZZ
def test_callers_without_a_key_get_only_documented_answers_when_x402_is_on(
    case: Any, with_x402: Served
) -> None:
    fuzz(case, with_x402)


@KEYS_ONLY.parametrize()
@FUZZ
def test_callers_without_a_key_get_only_documented_answers_when_x402_is_off(
    case: Any, without_x402: Served
) -> None:
    fuzz(case, without_x402)
