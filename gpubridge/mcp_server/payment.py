"""Who pays for a tool call: the caller's credits, or an answer asking for payment.

Every paid tool goes through ``Payments.payment_for_call``; it is the seam where x402 over MCP
plugs in: a call carrying ``_meta["x402/payment"]`` (``Caller.payment``) is paid there, and the
settlement receipt goes in ``Payer.result_meta["x402/payment-response"]``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, TextContent

from gpubridge.errors import PaymentRequired
from gpubridge.gateway import Gateway
from gpubridge.mcp_server.caller import Caller
from gpubridge.mcp_server.errors import error_result
from gpubridge.payments.accounts import Account
from gpubridge.payments.x402 import X402Required


@dataclass(frozen=True)
class Payer:
    account: Account
    result_meta: dict[str, Any] = field(default_factory=dict)
    """Merged into the tool result's ``_meta`` (where a payment receipt goes)."""


def tool_resource(tool: str) -> str:
    """The resource an x402 payment for a call of ``tool`` pays for."""
    return f"mcp://tool/{tool}"


class Payments:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def payment_for_call(
        self, caller: Caller, tool: str, arguments: dict[str, Any], estimate: dict[str, Any]
    ) -> Payer | CallToolResult:
        """The account that pays for this call, or the ``isError`` result an unpaid call gets."""
        if caller.api_key is not None:
            return Payer(await self.gateway.accounts.authenticate(caller.api_key))
        return await self.unpaid(caller, tool, arguments, estimate)

    async def unpaid(
        self, caller: Caller, tool: str, arguments: dict[str, Any], estimate: dict[str, Any]
    ) -> CallToolResult:
        """``payment_required``: with x402 on, the x402 PaymentRequired object for this call,
        priced as over HTTP (the gateway answers a submission without payment with it)."""
        if self.gateway.x402 is not None:
            try:
                await self.gateway.submit_paid(None, tool, arguments, resource=tool_resource(tool))
            except X402Required as exc:
                result = error_result(exc)
                if caller.payment is not None:
                    note = "x402 payments over MCP are not accepted by this server yet"
                    result.content.append(TextContent(text=f"payment_required: {note}"))
                return result
        message = (
            f"{tool} costs about ${estimate['estimated_cost_usd']} and this call carries no "
            "API key: send 'Authorization: Bearer gpub_...' over HTTP, or set "
            "GPUBRIDGE_API_KEY for `gpubridge mcp`"
        )
        if caller.payment is not None:
            message += "; x402 payments are off on this server"
        return error_result(
            PaymentRequired(
                message,
                code="payment_required",
                service=tool,
                estimated_cost_usd=estimate["estimated_cost_usd"],
            )
        )
