"""``/llms.txt``: the API described for LLM agents, in the llms.txt convention (an H1 title, a
blockquote summary, prose, then sections of links). Generated from the catalog and the payment
settings on every request, so it says what this server offers as configured."""

from __future__ import annotations

import json

from starlette.routing import Route

from gpubridge.catalog import Service
from gpubridge.gateway import Gateway
from gpubridge.gateway.discovery import RUN_PATH, example_input
from gpubridge.gateway.views import price_text
from gpubridge.http_api.openai_compat import openai_routes

CATEGORIES = {
    "text": "Text services",
    "image": "Image and video services",
    "audio": "Audio services",
    "utility": "Utility services",
}
MCP_HELPERS = "`get_job`, `cancel_job` and `estimate_cost`"


def llms_txt(gateway: Gateway, base_url: str) -> str:
    """The document for a server answering at ``base_url``."""
    services = list(gateway.catalog.services.values())
    lines = [
        "# gpubridge",
        "",
        f"> {len(services)} AI services on GPUs behind one HTTP API: "
        f"{_kinds(services)}. Call any of them with `POST {base_url}{RUN_PATH}`, as MCP "
        f"tools at `{base_url}/mcp`, or through OpenAI-compatible routes; pay with the "
        f"prepaid credits of an API key{_x402_summary(gateway)}.",
        "",
        "## How to call",
        "",
        *_how_to_call(gateway, base_url),
    ]
    for category, title in CATEGORIES.items():
        entries = [_service_line(s, base_url) for s in services if s.category == category]
        if entries:
            lines += ["", f"## {title}", "", *entries]
    lines += ["", "## Docs", "", *_docs(gateway, base_url)]
    lines += [
        "",
        "## Optional",
        "",
        f"- [Health]({base_url}/healthz): liveness",
        f"- [Metrics]({base_url}/metrics): Prometheus metrics",
    ]
    return "\n".join(lines) + "\n"


def _kinds(services: list[Service]) -> str:
    counts = {c: sum(s.category == c for s in services) for c in CATEGORIES}
    return ", ".join(
        f"{count} {CATEGORIES[c].removesuffix(' services').lower()}"
        for c, count in counts.items()
        if count
    )


def _x402_summary(gateway: Gateway) -> str:
    if gateway.x402 is None:
        return ""
    return f", or per request with x402 (USDC on {gateway.x402.config.network})"


def _how_to_call(gateway: Gateway, base_url: str) -> list[str]:
    openai = [
        f"`{'POST' if 'POST' in (route.methods or ()) else 'GET'} {route.path}`"
        for route in openai_routes()
        if isinstance(route, Route) and "{" not in route.path
    ]
    lines = [
        f'- `POST {base_url}{RUN_PATH}` with `{{"service": "<key>", "input": {{...}}}}` (and '
        'optionally `"webhook_url"`): `input` follows the service\'s input schema. A quick '
        "service answers 200 with the finished job and its `output`; a longer one answers 202 "
        f"with `job_id` and `status_url` (`GET {base_url}/status/<job_id>`, or server-sent "
        "events at `/status/<job_id>/stream`). Results are kept 24 hours.",
        f"- Prices: `GET {base_url}/catalog/estimate?service=<key>&input=<JSON>` gives the "
        "typical and the highest cost of a call. A job holds the highest and is charged what "
        "it uses; a failed or cancelled job is refunded.",
        f'- API key: `POST {base_url}/account/register` with `{{"email": "..."}}` answers '
        "a `gpub_...` key (shown once); send it as `Authorization: Bearer gpub_...`.",
    ]
    x402 = gateway.x402
    if x402 is None:
        lines.append("- x402: payments per request are off on this server; use an API key.")
    else:
        config = x402.config
        lines.append(
            "- x402: without an API key a paid request answers 402 with the payment "
            "requirements (x402 v2 in the `PAYMENT-REQUIRED` header, v1 in the body) and a "
            "Bazaar description of the call. Retry with `PAYMENT-SIGNATURE` (v2) or "
            f"`X-PAYMENT` (v1): scheme `exact`, an EIP-3009 authorization for USDC "
            f"(`{config.asset}`) on `{config.network}` paid to `{config.pay_to}`. The "
            "answer carries the receipt in `PAYMENT-RESPONSE`; what the job does not use "
            "stays with the paying wallet, which `POST /account/wallet/claim` turns into an "
            "API key, or which the wallet spends by answering a later 402's `sign-in-with-x` "
            "challenge in the `SIGN-IN-WITH-X` header. Name a payment with the "
            "`payment-identifier` extension to retry it safely: the retry gets the first "
            "result and is not charged. A settlement not confirmed in time answers 202 "
            "`settlement_pending` with the job id that runs once it lands."
        )
        if x402.metering is not None:
            lines.append(
                "- x402 `upto`: jobs priced per token or per second are also offered with "
                "scheme `upto` (x402 v2): authorize the ceiling with a Permit2 signature "
                "(approve Permit2 for USDC once); the server settles what the job used after "
                "it ends, and nothing when it fails."
            )
    mcp_x402 = (
        " Without an API key, a call answers with the x402 PaymentRequired object and the "
        'paid retry carries the payment in `_meta["x402/payment"]`.'
        if x402 is not None
        else ""
    )
    lines += [
        f"- MCP: streamable HTTP at `{base_url}/mcp`, one tool per service (named by its "
        f"key, with its input schema) plus {MCP_HELPERS}.{mcp_x402}",
        f"- OpenAI-compatible routes on the same credits: {', '.join(openai)}.",
    ]
    return lines


def _service_line(service: Service, base_url: str) -> str:
    description = " ".join(service.description.split())
    models = ", ".join(
        f"`{m.id}`" + (" (default)" if m is service.default_model else "") for m in service.models
    )
    example = json.dumps({"service": service.key, "input": example_input(service)})
    timing = "answers inline" if service.mode == "sync" else "runs as a job (202, then poll)"
    text = (
        f"- [{service.name} (`{service.key}`)]({base_url}/catalog/estimate?service="
        f"{service.key}): {description} Price: {price_text(service.price)}. Models: "
        f"{models}. Usually {timing}, about {service.estimated_seconds:g} s. "
        f"Example: `{example}`"
    )
    if not service.backends:
        text += " Not available on this server right now (no backend configured)."
    return text


def _docs(gateway: Gateway, base_url: str) -> list[str]:
    lines = [
        f"- [Service catalog]({base_url}/catalog): every service with its models, prices, "
        "input and output JSON Schemas, and the payment methods offered",
        f"- [OpenAPI document]({base_url}/openapi.json): every route, with each service's "
        "input schema",
    ]
    if gateway.x402 is not None:
        lines.append(
            f"- [x402 discovery]({base_url}/.well-known/x402): the paid resources with their "
            "payment requirements, input schemas and examples"
        )
    lines.append(f"- [MCP endpoint]({base_url}/mcp): streamable HTTP, for MCP clients")
    return lines
