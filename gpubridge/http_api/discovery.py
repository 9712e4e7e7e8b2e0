"""Discovery for agents and directories: ``GET /llms.txt`` and ``GET /.well-known/x402``.

``/.well-known/x402`` serves two readers at once. Directory crawlers that fan out from the
well-known document (x402scan and the like) read ``version``, ``resources`` (the URLs that
answer 402) and ``instructions``; readers of the x402 SDK's Bazaar discovery list read
``x402Version``, ``items`` (one ``DiscoveryResource`` per service: its requirements, Bazaar
extension and prices) and ``pagination``.

With x402 off there are no paid resources and no recipient to name, so the well-known document
does not exist: 404 with the code ``x402_disabled``, which crawlers read as "not an x402
server" (RFC 8615), rather than an empty list that would register the server with nothing.
``/llms.txt`` is always served.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from gpubridge.errors import NotFound
from gpubridge.gateway.discovery import RUN_PATH, run_resources
from gpubridge.http_api.llms_txt import llms_txt
from gpubridge.http_api.requests import gateway_of
from gpubridge.http_api.x402 import server_url

WELL_KNOWN_X402 = "/.well-known/x402"
LLMS_TXT = "/llms.txt"
CACHE = {"Cache-Control": "public, max-age=300"}


async def llms(request: Request) -> Response:
    text = llms_txt(gateway_of(request), server_url(request))
    return PlainTextResponse(text, headers=CACHE)


async def well_known_x402(request: Request) -> Response:
    gateway = gateway_of(request)
    if gateway.x402 is None:
        raise NotFound(
            "x402 payments are off on this server, so it lists no paid resources; "
            f"pay with an API key instead ({LLMS_TXT} says how)",
            code="x402_disabled",
        )
    base_url = server_url(request)
    await gateway.x402.prepare()
    items = run_resources(gateway.catalog, gateway.x402, base_url, gateway.started_at)
    document: dict[str, Any] = {
        "version": 1,
        "resources": [f"{base_url}{RUN_PATH}"],
        "instructions": instructions(base_url),
        "x402Version": 2,
        "items": items,
        "pagination": {"limit": len(items), "offset": 0, "total": len(items)},
    }
    return JSONResponse(document, headers=CACHE)


def instructions(base_url: str) -> str:
    return (
        f"Every service is called with POST {base_url}{RUN_PATH} and the JSON body "
        '{"service": "<key>", "input": {...}}; each item below is one service, with its '
        "input schema and an example in extensions.bazaar. The amount in an item's accepts "
        "is what its example costs; a 402 names the exact amount for the input sent (the "
        "most the job can cost; what it does not use stays with the paying wallet). MCP "
        f"tools: {base_url}/mcp. For agents: {base_url}{LLMS_TXT}."
    )
