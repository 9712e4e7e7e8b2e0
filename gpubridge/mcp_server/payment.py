"""Who pays for a tool call: the caller's credits, an x402 payment, or an answer asking for
payment.

Every paid tool goes through ``Payments.payment_for_call``. Over the x402 MCP transport a call
without an API key carrying ``_meta["x402/payment"]`` (``Caller.payment``) is paid there, with
the same verification, reservation, settlement and refund rules as over HTTP: the payment
creates the job (``Payer.submitted``) and its settlement receipt goes in
``Payer.result_meta["x402/payment-response"]``. A payment that does not pay is answered like
an unpaid call, with the reason in the PaymentRequired object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult

from gpubridge.catalog import Service
from gpubridge.catalog.portable import portable_schema
from gpubridge.errors import PaymentRequired
from gpubridge.gateway import Gateway, Submitted
from gpubridge.gateway.discovery import accepted_job_example, example_input
from gpubridge.gateway.paid_intake import PaidSubmission
from gpubridge.mcp_server.caller import X402_PAYMENT_RESPONSE_META_KEY, Caller
from gpubridge.mcp_server.errors import error_result
from gpubridge.mcp_server.schemas import job_result_schema
from gpubridge.payments.accounts import Account
from gpubridge.payments.x402 import X402Required
from gpubridge.payments.x402.bazaar import mcp_extension
from gpubridge.payments.x402.errors import MalformedPayment

INVALID_PAYLOAD = "invalid_payload"
"""The x402 reason for a payment that is not a payment payload at all."""


@dataclass(frozen=True)
class Payer:
    account: Account
    result_meta: dict[str, Any] = field(default_factory=dict)
    """Merged into the tool result's ``_meta`` (where a payment receipt goes)."""
    submitted: Submitted | None = None
    """The job an x402 payment already created; None when the tool call still submits it."""
    paid: PaidSubmission | None = None
    """The x402 submission (a metered payment settles once the job has ended)."""


def tool_resource(tool: str) -> str:
    """The resource an x402 payment for a call of ``tool`` pays for."""
    return f"mcp://tool/{tool}"


def tool_extension(service: Service, public_url: str) -> Mapping[str, Any]:
    """The Bazaar description of a service's tool: its arguments with an example, and the job
    it answers."""
    return mcp_extension(
        tool=service.key,
        description=service.description.strip(),
        input_schema=portable_schema(service.input_schema),
        example=example_input(service),
        output_example=accepted_job_example(service, public_url),
        output_schema=job_result_schema(service.output_schema),
    )


class Payments:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def _describe(self, service: Service) -> Mapping[str, Any]:
        return tool_extension(service, self.gateway.settings.public_url)

    async def payment_for_call(
        self, caller: Caller, tool: str, arguments: dict[str, Any], estimate: dict[str, Any]
    ) -> Payer | CallToolResult:
        """Who pays for this call, or the ``isError`` result an unpaid (or not paying) call
        gets. An API key wins over a payment sent alongside it."""
        if caller.api_key is not None:
            return Payer(await self.gateway.accounts.authenticate(caller.api_key))
        if caller.payment is not None and self.gateway.x402 is not None:
            return await self.paid(caller.payment, tool, arguments)
        return await self.unpaid(caller, tool, arguments, estimate)

    async def paid(
        self, payment: Any, tool: str, arguments: dict[str, Any]
    ) -> Payer | CallToolResult:
        """Submit the call's job paid with ``payment`` (the v2 PaymentPayload object).

        A payment that does not pay (bad signature, wrong amount, a used nonce, ...) or is not
        a payment payload at all is refused with the PaymentRequired object and its reason;
        nothing is charged and no job exists.
        """
        resource = tool_resource(tool)
        if not isinstance(payment, dict):
            return await self._refused(tool, arguments, "the x402 payment must be a JSON object")
        try:
            paid = await self.gateway.submit_paid(
                payment, tool, arguments, resource=resource, describe=self._describe
            )
        except X402Required as exc:
            return error_result(exc)
        except MalformedPayment as exc:
            return await self._refused(tool, arguments, exc.message)
        receipt = (
            {} if paid.payment is None else {X402_PAYMENT_RESPONSE_META_KEY: paid.payment.receipt}
        )
        return Payer(paid.account, receipt, paid.submitted, paid)

    async def result_meta(self, payer: Payer, ended: bool) -> dict[str, Any]:
        """The tool result's ``_meta`` for ``payer``: a metered payment's receipt says what
        it settled for once the job has ``ended`` (until then, that nothing moved yet)."""
        paid = payer.paid
        if not ended or paid is None or paid.payment is None or not paid.payment.metered:
            return payer.result_meta
        settled = await self.gateway.finish_metered(paid)
        assert settled.payment is not None
        return {**payer.result_meta, X402_PAYMENT_RESPONSE_META_KEY: settled.payment.receipt}

    async def unpaid(
        self, caller: Caller, tool: str, arguments: dict[str, Any], estimate: dict[str, Any]
    ) -> CallToolResult:
        """``payment_required``: with x402 on, the x402 PaymentRequired object for this call,
        priced as over HTTP (the gateway answers a submission without payment with it). With
        x402 off, an error saying how to get and send an API key, and no PaymentRequired
        object: there is nothing to pay to."""
        if self.gateway.x402 is not None:
            return error_result(await self._required(tool, arguments))
        message = (
            f"{tool} costs about ${estimate['estimated_cost_usd']} and this call carries no "
            "API key: send 'Authorization: Bearer gpub_...' over HTTP, or set "
            "GPUBRIDGE_API_KEY for `gpubridge mcp` (get a key with POST "
            f"{caller.base_url}/account/register); x402 payments are off on this server"
        )
        return error_result(
            PaymentRequired(
                message,
                code="payment_required",
                service=tool,
                estimated_cost_usd=estimate["estimated_cost_usd"],
            )
        )

    async def _required(self, tool: str, arguments: dict[str, Any]) -> X402Required:
        """The gateway's challenge for this call (it asks for payment when given none)."""
        try:
            await self.gateway.submit_paid(
                None, tool, arguments, resource=tool_resource(tool), describe=self._describe
            )
        except X402Required as exc:
            return exc
        raise AssertionError("an unpaid x402 submission must ask for payment")

    async def _refused(self, tool: str, arguments: dict[str, Any], message: str) -> CallToolResult:
        """The challenge again for a ``_meta["x402/payment"]`` that is not a payment payload."""
        challenge = await self._required(tool, arguments)
        required = {**challenge.payment_required, "error": INVALID_PAYLOAD}
        return error_result(
            X402Required(
                f"invalid x402 payment: {message}",
                reason=INVALID_PAYLOAD,
                payment_required=required,
                body={**challenge.body, "error": INVALID_PAYLOAD, "paymentRequired": required},
            )
        )
